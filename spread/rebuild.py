"""Live code reload: running objects take new code without a restart (as Twisted's ``rebuild``).

``rebuild(module)`` re-executes the module's source and moves what already
exists onto the new code: live instances of its classes take the new classes
(so objects exported over open PB connections answer their next call with the
new methods), subclasses defined elsewhere inherit from the new classes, and
other modules' names for its classes and functions are rebound.

A module takes part through two module-level names:

* ``__reloadable__ = False`` refuses every rebuild (``NotReloadableError``), for
  modules whose state cannot be migrated or that must not change while
  running. Twisted's ``ALLOW_TWISTED_REBUILD = False`` is honoured as well.
* ``def __rebuild__(old_module, new_module)``, defined in the new source, runs
  after the new source is executed and before anything live is moved to it:
  it copies state from ``old_module`` (a snapshot of the namespace as it was)
  into ``new_module``.

If the new source or the hook raises, the module's namespace is put back and
nothing live is touched: the old code keeps running and ``RebuildError`` (with
the original error as its ``__cause__``) tells the caller.

Code that holds callables outside any module (callback tables, say) can catch
up by itself: ``lastRebuild`` is when code last changed, ``Sensitive`` objects
compare it with when they last refreshed, and ``latestClass``,
``latestFunction`` and ``updateInstance`` find the newest code for an object.
"""

from __future__ import annotations

import gc
import importlib
import linecache
import sys
import time
from collections.abc import Mapping
from types import FunctionType, MethodType, ModuleType
from typing import Any

from twisted.logger import Logger

__all__ = [
    "NotReloadableError",
    "RebuildError",
    "Sensitive",
    "lastRebuild",
    "latestClass",
    "latestFunction",
    "rebuild",
    "updateInstance",
]

_log = Logger()

# When a rebuild last put new code in place (time.time()); import time until then.
lastRebuild: float = time.time()


class RebuildError(RuntimeError):
    """A rebuild did not happen; the module's old code is still the one running.

    A ``RuntimeError``, as Twisted raises for a module that refuses rebuilds.
    """


class NotReloadableError(RebuildError):
    """The module says it must not be reloaded (``__reloadable__ = False``)."""


def rebuild(module: ModuleType, doLog: bool = True) -> ModuleType:
    """Reload ``module`` from its source and move live objects onto the new code.

    Names the new source no longer defines keep their old values, as with
    ``importlib.reload``; the ``__rebuild__`` hook may delete them. Classes are
    matched by name at module level. Call it from the reactor thread, so no
    other code runs while objects change class. Returns ``module``.

    ``lastRebuild`` is set once the new source has run; a refused or failed
    rebuild changes no code, so (unlike Twisted) it leaves it alone.
    """
    name = module.__name__
    if not getattr(module, "__reloadable__", True) or not getattr(
        module, "ALLOW_TWISTED_REBUILD", True
    ):
        raise NotReloadableError(
            f"module {name!r} is marked as not reloadable; restart the program to run "
            "its new code, or remove the marker (__reloadable__ = False) from its source"
        )
    namespace = module.__dict__
    before = dict(namespace)
    _reexecute(module, before)
    global lastRebuild
    lastRebuild = time.time()
    classes = _replaced(before, namespace, name, type)
    functions = _replaced(before, namespace, name, FunctionType)
    stale: set[type] = set()  # old classes some live object could not leave
    instances = _moveInstances(classes, stale)
    subclasses = _rebaseSubclasses(classes, stale)
    for old_class, new_class in classes.items():
        if old_class not in stale:  # else its objects would run new code on the old layout
            functions.update(_replaced(vars(old_class), vars(new_class), name, FunctionType))
    for old_function, new_function in functions.items():
        _retarget(old_function, new_function)
    _rebindElsewhere(module, {**classes, **functions})
    if doLog:
        _log.info(
            "rebuilt {module}: {instances} instances and {subclasses} subclasses "
            "moved to the new classes",
            module=name,
            instances=instances,
            subclasses=subclasses,
        )
    return module


def _reexecute(module: ModuleType, before: dict[str, Any]) -> None:
    """Run the new source and the module's hook; on any failure restore ``before``."""
    try:
        importlib.reload(module)
        hook = module.__dict__.get("__rebuild__")
        if hook is not None and hook is not before.get("__rebuild__"):
            old_module = ModuleType(module.__name__, module.__doc__)
            old_module.__dict__.update(before)
            hook(old_module, module)
    except BaseException as error:
        # Old functions read their globals from this very dict: restore it in place.
        module.__dict__.clear()
        module.__dict__.update(before)
        sys.modules[module.__name__] = module
        if not isinstance(error, Exception):
            raise
        raise RebuildError(
            f"rebuilding {module.__name__!r} failed, so its old code keeps running: "
            f"{type(error).__name__}: {error}; fix the source and rebuild again"
        ) from error
    finally:
        linecache.checkcache()


def _replaced(
    before: Mapping[str, Any], after: Mapping[str, Any], module_name: str, kind: type
) -> dict[Any, Any]:
    """Map each ``kind`` object the module defined under ``before`` to its
    successor of the same name in ``after``, when the new source redefined it."""
    pairs: dict[Any, Any] = {}
    for key, old in before.items():
        new = after.get(key)
        if (
            isinstance(old, kind)
            and isinstance(new, kind)
            and new is not old
            and getattr(old, "__module__", None) == module_name
            and getattr(old, "__name__", None) == key
        ):
            pairs[old] = new
    return pairs


def _moveInstances(classes: dict[type, type], stale: set[type]) -> int:
    """Give every live instance of an old class its new class; return how many moved.

    Classes some instance could not leave are added to ``stale``.
    """
    if not classes:
        return 0
    moved = 0
    for obj in gc.get_referrers(*classes):
        new_class = classes.get(type(obj))
        if new_class is None or (
            isinstance(obj, type) and obj in classes
        ):  # an old class whose metaclass also changed
            continue
        try:
            obj.__class__ = new_class
        except TypeError as error:
            if type(obj) not in stale:
                stale.add(type(obj))
                _warnStale(type(obj), error)
        else:
            moved += 1
    return moved


def _rebaseSubclasses(classes: dict[type, type], stale: set[type]) -> int:
    """Make subclasses of old classes (defined in other modules) inherit from the new ones.

    Old classes some subclass could not leave are added to ``stale``.
    """
    rebased = 0
    for old_class in classes:
        subclasses: list[type] = old_class.__subclasses__()
        for subclass in subclasses:
            if subclass in classes:
                continue  # redefined by the new source, with the new bases already
            try:
                subclass.__bases__ = tuple(classes.get(base, base) for base in subclass.__bases__)
            except TypeError as error:
                stale.add(old_class)
                _warnStale(subclass, error)
            else:
                rebased += 1
    return rebased


def _retarget(old: FunctionType, new: FunctionType) -> None:
    """Make the old function object run the new code.

    That reaches references no namespace scan finds: callbacks in lists, bound
    methods held by Deferreds. Functions with closures are left alone: their
    cells (including the ``__class__`` cell of zero-argument ``super()``)
    belong to the old definition.
    """
    if old.__code__.co_freevars or new.__code__.co_freevars:
        return
    old.__code__ = new.__code__
    old.__defaults__ = new.__defaults__
    old.__kwdefaults__ = new.__kwdefaults__


def _rebindElsewhere(module: ModuleType, successors: dict[Any, Any]) -> None:
    """Rebind other modules' names (``from module import Thing``) to the new objects."""
    by_id = {id(old): (old, new) for old, new in successors.items()}
    if not by_id:
        return
    for other in list(sys.modules.values()):
        if other is module or not isinstance(other, ModuleType):
            continue
        namespace = vars(other)
        for key, value in list(namespace.items()):
            pair = by_id.get(id(value))
            if pair is not None and pair[0] is value:
                namespace[key] = pair[1]


def _warnStale(cls: type, error: TypeError) -> None:
    _log.warn(
        "rebuild could not move {cls} onto the new code ({error}); its instances keep "
        "the old methods until the program restarts",
        cls=f"{cls.__module__}.{cls.__qualname__}",
        error=error,
    )


class Sensitive:
    """Mixin for objects that keep callables and want to run their newest code.

    ``rebuild`` already moves instances, functions and other modules' names to
    the new code; what it cannot see is a callable kept somewhere else (a
    closure, a method bound before its class was replaced). Before running
    such callables, check ``needRebuildUpdate()``; if it is true, refresh them
    with ``latestVersionOf`` and call ``rebuildUpToDate()``.
    """

    # Until the first rebuildUpToDate(), an object counts as current at import time.
    lastRebuild: float = lastRebuild

    def needRebuildUpdate(self) -> bool:
        """Whether a rebuild has happened since this object last refreshed."""
        return self.lastRebuild < _lastRebuild()

    def rebuildUpToDate(self) -> None:
        """Record that this object now holds the newest code."""
        self.lastRebuild = time.time()

    def latestVersionOf(self, anObject: Any) -> Any:
        """The newest version of a function or bound method; anything else unchanged.

        A bound method is looked up again on its object, which ``rebuild``
        has already moved to the new class.
        """
        if isinstance(anObject, FunctionType):
            return latestFunction(anObject)
        if isinstance(anObject, MethodType):
            return getattr(anObject.__self__, anObject.__name__)
        return anObject


def _lastRebuild() -> float:
    # Read at call time: rebuild() rebinds the module global.
    return lastRebuild


def latestFunction(oldFunc: FunctionType) -> FunctionType:
    """The function that ``oldFunc``'s module now binds under ``oldFunc``'s name.

    That is the new version after a rebuild. Functions the module cannot name
    (nested functions, lambdas) or whose name now means something else come
    back unchanged. Unlike Twisted's, methods are found through their class
    (by qualified name), and the module need not have been rebuilt by this
    process.
    """
    current = _currentBinding(oldFunc)
    return current if isinstance(current, FunctionType) else oldFunc


def latestClass(oldClass: type) -> type:
    """The newest version of ``oldClass``, with the newest versions of its bases.

    The newest version is what its module now binds under its qualified name
    (``oldClass`` itself if that is not a class, or its module is not loaded).
    If a base was replaced (by a reload that did not rebase subclasses, for
    example), the class is rebased onto the new base in place; when its
    layout forbids that, a fresh class with the same namespace and the new
    bases is returned instead, as Twisted does. Builtin classes come back as
    they are.
    """
    current = _currentBinding(oldClass)
    if not isinstance(current, type):
        current = oldClass
    if current.__module__ == "builtins":
        return current
    bases = tuple(latestClass(base) for base in current.__bases__)
    if bases == current.__bases__:
        return current
    try:
        current.__bases__ = bases
    except TypeError:
        namespace = {
            key: value
            for key, value in vars(current).items()
            if key not in ("__dict__", "__weakref__")  # the old class's own slots
        }
        return type(current)(current.__name__, bases, namespace)
    return current


def updateInstance(self: object) -> None:
    """Move ``self`` to the newest version of its class (see ``latestClass``)."""
    self.__class__ = latestClass(self.__class__)


def _currentBinding(obj: Any) -> Any:
    """What ``obj``'s module binds now under ``obj``'s qualified name, or ``None``.

    Only modules already loaded are looked at: a module nobody imported has
    no newer version of anything.
    """
    found: Any = sys.modules.get(getattr(obj, "__module__", None) or "")
    for part in getattr(obj, "__qualname__", "").split("."):
        found = getattr(found, part, None)  # "<locals>" parts end here, with None
    return found
