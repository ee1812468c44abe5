"""Versioned state: old data meets new code (the counterpart of Twisted's persisted ``styles``).

A ``Versioned`` class numbers the layout of its instance state with the class
attribute ``persistenceVersion``. State saved by an older layout carries the
old number; when it is loaded, ``upgradeToVersionN`` methods bring it forward
one version at a time. Every class of a hierarchy is numbered on its own, so a
library base class and the application subclass evolve independently.

State reaches new code in two ways, and both use the same rules:

* **pickle** (as in Twisted): ``pickle.load`` records what needs upgrading and
  ``doUpgrade()``, called once the whole object graph is loaded, runs the
  upgrades. They wait because an upgrade may look at other loaded objects,
  which are complete only when loading ends.
* **the network**: ``versionedState`` stamps outgoing state with the sender's
  versions, and ``upgradeState`` upgrades received state before the receiving
  object takes it, refusing state from newer code with ``VersionError``.

The version numbers travel under Twisted's keys,
``"<module>.<class name>.persistenceVersion"``, so state written by Twisted's
``Versioned`` loads here and the other way round. State without a key is
version 0: that is how data from before a class became ``Versioned``, or from
a sender that does not stamp versions, looks.

The module also keeps Twisted's pickle helpers for bound methods, modules and
string buffers (``pickleMethod`` and friends). Unlike Twisted, importing it
does not register them with ``copyreg`` for the whole process; pass them in a
pickler's ``dispatch_table`` where you want them.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from io import StringIO
from types import MethodType, ModuleType
from typing import Any, TypeVar

from twisted.logger import Logger

__all__ = [
    "Ephemeral",
    "VersionError",
    "Versioned",
    "doUpgrade",
    "hasVersions",
    "oldModules",
    "pickleMethod",
    "pickleModule",
    "pickleStringI",
    "pickleStringO",
    "requireUpgrade",
    "unpickleMethod",
    "unpickleModule",
    "unpickleStringI",
    "unpickleStringO",
    "upgradeState",
    "upgraded",
    "versionKey",
    "versionedState",
    "versionedsToUpgrade",
]

_log = Logger()

_KEY_SUFFIX = ".persistenceVersion"

_T = TypeVar("_T")


class VersionError(ValueError, AssertionError):
    """State was written by a newer version of a class than this program has.

    ``Versioned`` only moves forward: there are no downgrade methods, so the
    only fixes are running the newer code here or getting older state. It is
    also an ``AssertionError`` because that is what Twisted raises, so code
    written against Twisted (``except AssertionError``) still catches it.
    """


class Ephemeral:
    """An object that must not outlive its process, such as one holding a socket.

    Pickling an ``Ephemeral`` (or any subclass) stores only a bare
    ``Ephemeral()``: whatever referred to it gets a harmless placeholder back
    instead of a half-restored live resource.
    """

    def __reduce__(self) -> tuple[type[Ephemeral], tuple[()]]:
        return (Ephemeral, ())

    def __getstate__(self) -> None:
        """Serializers that ask for state directly (jelly) get nothing."""
        return None

    def __setstate__(self, state: object) -> None:
        """Whatever the state, what comes back is a plain ``Ephemeral``."""
        self.__class__ = Ephemeral


class Versioned:
    """Base for classes whose saved state should survive changes to the class.

    Set ``persistenceVersion`` to 1 the first time the layout of the instance
    state changes, and add ``upgradeToVersion1(self)`` turning version-0 state
    into version-1 state; bump it for every later change and add the next
    method. An upgrade method sees an instance whose ``__dict__`` is the saved
    state (``__init__`` is not called) and is only called for the versions of
    the class that defines it. A version with no method is skipped (with a log
    line), for changes that need no work, such as an attribute that now has a
    class-level default.

    Names listed in a class's ``persistenceForgets`` are left out of pickles.
    """

    persistenceVersion: int = 0
    persistenceForgets: Iterable[str] = ()

    def __getstate__(self, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return ``state`` (default: my ``__dict__``) stamped with every class's version.

        Subclasses that build their own state pass it in, as in Twisted.
        """
        saved = dict(self.__dict__ if state is None else state)
        for cls in _versionedClasses(type(self)):
            for name in vars(cls).get("persistenceForgets", ()):
                saved.pop(name, None)
            if "persistenceVersion" in vars(cls):
                saved[versionKey(cls)] = vars(cls)["persistenceVersion"]
        return saved

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        """Take loaded state; note what to upgrade when ``doUpgrade()`` runs.

        State from a newer version is refused here, before anything uses it.
        """
        own = dict(state)
        behind = _takeVersions(type(self), own)
        self.__dict__ = own
        if behind:
            versionedsToUpgrade.add(self, behind)

    def versionUpgrade(self) -> None:
        """Bring this instance up to its classes' versions now (Twisted's name for it).

        An instance ``__setstate__`` noted for ``doUpgrade()`` is upgraded as
        ``requireUpgrade`` does; one whose ``__dict__`` was set another way has its
        version keys read from it, and is upgraded from those.
        """
        entry = versionedsToUpgrade.waiting.get(id(self))
        if entry is not None and entry.handle() is self:
            versionedsToUpgrade.upgrade(id(self))
            return
        behind = _takeVersions(type(self), self.__dict__)
        if behind:
            _runUpgrades(self, behind)


_Behind = dict[type[Versioned], int]


class _Waiting:
    """One loaded object in ``versionedsToUpgrade``: how to reach it and what it needs."""

    __slots__ = ("behind", "done", "handle")

    def __init__(self, handle: Callable[[], Versioned | None], behind: _Behind) -> None:
        self.handle = handle
        self.behind = behind
        self.done = False  # its upgrades ran (or ``upgraded`` says so): listed there


class _VersionedsToUpgrade(MutableMapping[int, Versioned]):
    """Objects loaded since the last ``doUpgrade()`` that needed upgrading, by ``id()``.

    Published as Twisted's ``versionedsToUpgrade``, so code that reads or clears
    it keeps working; it is one object for the life of the process, so a name
    imported from this module never goes stale. Unlike Twisted's dict it holds
    objects weakly: one dropped before ``doUpgrade()`` needs no upgrade, and a
    program that never calls ``doUpgrade()`` (objects restored by a network
    peer, say) must not accumulate them. Objects whose state is already
    current have nothing to upgrade and are not listed.
    """

    def __init__(self) -> None:
        self.waiting: dict[int, _Waiting] = {}

    def __getitem__(self, key: int) -> Versioned:
        obj = self.waiting[key].handle()
        if obj is None:
            raise KeyError(key)
        return obj

    def __setitem__(self, key: int, obj: Versioned) -> None:
        """Queue ``obj`` by hand, as Twisted's ``__setstate__`` does: its saved
        versions are read (and removed) from its ``__dict__``."""
        if key != id(obj):
            raise KeyError(f"versionedsToUpgrade is keyed by id(obj), {id(obj)}, not {key}")
        self.add(obj, _takeVersions(type(obj), obj.__dict__))

    def __delitem__(self, key: int) -> None:
        del self.waiting[key]

    def __iter__(self) -> Iterator[int]:
        # A snapshot: weak-reference callbacks and upgrades may change the table.
        return iter(list(self.waiting))

    def __len__(self) -> int:
        return len(self.waiting)

    def clear(self) -> None:
        # The inherited clear() stops at the first entry whose object just died.
        self.waiting.clear()

    def add(self, obj: Versioned, behind: _Behind) -> None:
        """List ``obj`` (replacing any earlier entry for it) until it is upgraded."""
        key = id(obj)

        def forget(ref: object) -> None:
            entry = self.waiting.get(key)
            if entry is not None and entry.handle is ref:
                del self.waiting[key]

        try:
            handle: Callable[[], Versioned | None] = weakref.ref(obj, forget)
        except TypeError:  # no weak references to subclasses of int, tuple, ...
            handle = lambda: obj  # noqa: E731
        self.waiting[key] = _Waiting(handle, behind)

    def upgrade(self, key: int) -> None:
        """Run the upgrades of the object listed under ``key``, unless they already ran.

        It stays listed, marked as upgraded, until ``doUpgrade()`` ends, as in
        Twisted; one held strongly is let go at once instead, so it cannot leak.
        """
        entry = self.waiting.get(key)
        if entry is None or entry.done:
            return
        obj = entry.handle()
        if obj is None:  # dropped; its weak-reference callback has not run yet
            del self.waiting[key]
            return
        entry.done = True  # before running, so an upgrade that requires itself does not loop
        if not isinstance(entry.handle, weakref.ref):
            del self.waiting[key]
        _runUpgrades(obj, entry.behind)

    def notUpgraded(self) -> list[int]:
        """The keys whose upgrades have not run yet."""
        return [key for key, entry in list(self.waiting.items()) if not entry.done]


class _Upgraded(MutableMapping[int, int]):
    """The ids in ``versionedsToUpgrade`` whose upgrades already ran, each mapped to 1.

    Published as Twisted's ``upgraded``. It is a view of the same table, not a
    second record: marking an id here makes ``doUpgrade()`` skip that object,
    and deleting it lets ``requireUpgrade()`` run the upgrades again, as in
    Twisted.
    """

    def __init__(self, table: _VersionedsToUpgrade) -> None:
        self.table = table

    def __getitem__(self, key: int) -> int:
        if not self.table.waiting[key].done:
            raise KeyError(key)
        return 1

    def __setitem__(self, key: int, value: int) -> None:
        entry = self.table.waiting.get(key)
        if entry is None:
            raise KeyError(
                f"{key} is not in versionedsToUpgrade; only objects waiting for an "
                "upgrade can be marked as upgraded"
            )
        entry.done = True

    def __delitem__(self, key: int) -> None:
        entry = self.table.waiting.get(key)
        if entry is None or not entry.done:
            raise KeyError(key)
        entry.done = False

    def __iter__(self) -> Iterator[int]:
        return iter([key for key, entry in list(self.table.waiting.items()) if entry.done])

    def __len__(self) -> int:
        return sum(1 for entry in list(self.table.waiting.values()) if entry.done)


# Module-level because doUpgrade() takes no arguments in Twisted's API.
versionedsToUpgrade = _VersionedsToUpgrade()
upgraded = _Upgraded(versionedsToUpgrade)


def doUpgrade() -> None:
    """Upgrade every ``Versioned`` object loaded since the last call and still in use.

    Call it after unpickling, once the whole graph is loaded. Objects loaded
    by an upgrade method (a nested ``pickle.load``) are upgraded too. If an
    upgrade method raises, the error propagates; objects not yet upgraded stay
    pending for the next call. At the end ``versionedsToUpgrade`` (and so
    ``upgraded``) is empty.
    """
    while waiting := versionedsToUpgrade.notUpgraded():
        for key in waiting:
            versionedsToUpgrade.upgrade(key)
    versionedsToUpgrade.clear()


def requireUpgrade(obj: _T) -> _T:
    """Upgrade ``obj`` now if it is waiting for ``doUpgrade()``, and return it.

    For upgrade methods that read another loaded object and need it in its
    current layout first. Calling it on an object with nothing to upgrade,
    or already upgraded, does nothing.
    """
    entry = versionedsToUpgrade.waiting.get(id(obj))
    if entry is not None and entry.handle() is obj:
        versionedsToUpgrade.upgrade(id(obj))
    return obj


def versionKey(cls: type) -> str:
    """The state key for ``cls``'s version: ``"<module>.<name>.persistenceVersion"``.

    Twisted builds it from ``__name__``, not ``__qualname__``; so do we, to stay compatible.
    """
    return _qual(cls) + _KEY_SUFFIX


def _qual(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def versionedState(
    obj: Versioned, state: Mapping[str, Any], typeName: str | None = None
) -> dict[str, Any]:
    """Return a copy of ``state`` (what ``obj`` sends to a peer) stamped with its versions.

    Every class of ``obj`` that defines ``persistenceVersion`` adds its key.
    ``typeName`` is the name the state travels under (a ``Copyable``'s
    ``getTypeToCopy()``); the version of ``type(obj)`` is recorded under it as
    well, so a receiving class registered for that name finds it even though
    its own name differs. ``persistenceForgets`` does not apply: the sender's
    ``getStateToCopy`` already chose what to send.
    """
    stamped = dict(state)
    for cls in _levels(type(obj)):
        stamped[versionKey(cls)] = vars(cls)["persistenceVersion"]
    if typeName is not None:
        stamped[typeName + _KEY_SUFFIX] = type(obj).persistenceVersion
    return stamped


def upgradeState(
    cls: type[Versioned], state: Mapping[Any, Any], typeName: str | None = None
) -> dict[str, Any]:
    """Return received ``state`` brought up to ``cls``'s current versions.

    For a class that receives state from peers that may run older code (a
    ``RemoteCopy`` that is also ``Versioned``). Each class of ``cls`` that
    defines ``persistenceVersion`` reads its version from its own key; ``cls``
    itself falls back to the key of ``typeName``, the name the state arrived
    under. A missing key means version 0. The upgrade methods run at once, on
    a blank ``cls`` instance (``__init__`` not called) whose ``__dict__`` is
    the state, exactly as after unpickling; the result is that ``__dict__``
    without any version keys. Byte-string keys are decoded as UTF-8.

    Raises ``VersionError`` if any version is newer than this code's (or is
    not a non-negative integer); nothing has run by then.
    """
    own = {_textKey(key): value for key, value in state.items()}
    behind = _takeVersions(cls, own, typeName)
    if not behind:
        return own
    scratch = cls.__new__(cls)
    scratch.__dict__ = own
    _runUpgrades(scratch, behind)
    return scratch.__dict__


def _versionedClasses(cls: type) -> list[type[Versioned]]:
    """``cls`` and its ``Versioned`` bases, most basic first, without ``Versioned`` itself."""
    return [
        base
        for base in reversed(cls.__mro__)
        if base is not Versioned and issubclass(base, Versioned)
    ]


def _levels(cls: type) -> list[type[Versioned]]:
    """The classes of ``cls`` that number their own state, most basic first."""
    return [base for base in _versionedClasses(cls) if "persistenceVersion" in vars(base)]


def _textKey(key: Any) -> Any:
    return key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key


def hasVersions(state: Mapping[Any, Any]) -> bool:
    """Whether ``state`` carries version keys (a spread sender stamped it)."""
    return any(isinstance(key, str) and key.endswith(_KEY_SUFFIX) for key in state)


def _takeVersions(
    cls: type[Versioned], state: dict[Any, Any], typeName: str | None = None
) -> dict[type[Versioned], int]:
    """Remove every version key from ``state``; return the saved version of each
    class of ``cls`` that is behind its current version.

    Checks everything before returning, so a refusal leaves nothing half done.
    """
    received = {
        key[: -len(_KEY_SUFFIX)]: state.pop(key)
        for key in [k for k in state if isinstance(k, str) and k.endswith(_KEY_SUFFIX)]
    }
    behind: dict[type[Versioned], int] = {}
    for level in _levels(cls):
        name = _qual(level)
        saved = received.get(name)
        if saved is None and level is cls and typeName is not None:
            name = typeName
            saved = received.get(name)
        current: int = vars(level)["persistenceVersion"]
        if saved is None:
            saved = 0
        elif type(saved) is not int or saved < 0:
            raise VersionError(
                f"state for {name} has version {saved!r}; a version is an integer >= 0"
            )
        if saved > current:
            raise VersionError(
                f"state for {name} is at version {saved}, but this code's "
                f"{_qual(level)} is at version {current} "
                "and cannot downgrade it; run the newer code here, or send state "
                f"from version {current} or older"
            )
        if saved < current:
            behind[level] = saved
    return behind


def _runUpgrades(obj: Versioned, behind: Mapping[type[Versioned], int]) -> None:
    """Call each class's ``upgradeToVersionN`` in order, base classes first."""
    for level in _levels(type(obj)):
        if level not in behind:
            continue
        for version in range(behind[level] + 1, vars(level)["persistenceVersion"] + 1):
            method = vars(level).get(f"upgradeToVersion{version}")
            if method is None:
                _log.info(
                    "{cls} has no upgradeToVersion{version}; assuming that version "
                    "needed no change to saved state",
                    cls=_qual(level),
                    version=version,
                )
                continue
            method.__get__(obj, level)()


# ---------------------------------------------------------------------------------------------
# Pickle helpers for objects pickle cannot reduce on its own (Twisted's copyreg reducers)

# Old module name -> the name it moved to, for pickles that name a module by
# its old name (see unpickleModule). Applications fill it in.
oldModules: dict[str, str] = {}


def pickleMethod(
    method: MethodType,
) -> tuple[Callable[[str, object, type | None], Any], tuple[str, object, type]]:
    """Reduce a bound method to its name, instance and the instance's class.

    The method is then found again by name when loading, so a pickle survives
    changes to the method's code.
    """
    instance = method.__self__
    return unpickleMethod, (method.__name__, instance, instance.__class__)


def unpickleMethod(im_name: str, im_self: object, im_class: type | None) -> Any:
    """Rebuild what ``pickleMethod`` reduced: ``im_self``'s method called ``im_name``.

    Without an instance, the attribute of ``im_class`` itself is returned.
    When the saved class no longer has the method (the class was renamed or
    changed since the pickle was written), the instance's current class is
    searched; ``AttributeError`` if neither has it.
    """
    if im_self is None:
        return getattr(im_class, im_name)
    try:
        function = getattr(im_class, im_name)
    except AttributeError:
        current = im_self.__class__
        if current is im_class:
            raise
        _log.info(
            "method {name} is not on {saved}; using {current}'s",
            name=im_name,
            saved=im_class,
            current=current,
        )
        function = getattr(current, im_name)
    return MethodType(function, im_self)


def pickleModule(module: ModuleType) -> tuple[Callable[[str], ModuleType], tuple[str]]:
    """Reduce a module to its name; loading imports it again."""
    return unpickleModule, (module.__name__,)


def unpickleModule(name: str) -> ModuleType:
    """Import the module a pickle names, following ``oldModules`` if it moved."""
    moved = oldModules.get(name)
    if moved is not None:
        _log.info("module {old} has moved to {new}", old=name, new=moved)
        name = moved
    return importlib.import_module(name)


def pickleStringI(stringi: StringIO) -> tuple[Callable[[str, int], StringIO], tuple[str, int]]:
    """Reduce an input buffer to its text and read position."""
    return unpickleStringI, (stringi.getvalue(), stringi.tell())


def unpickleStringI(val: str, sek: int) -> StringIO:
    """A ``StringIO`` holding ``val``, positioned at ``sek``.

    Also what Python 2 pickles of ``cStringIO`` input buffers load as.
    """
    buffer = StringIO(val)
    buffer.seek(sek)
    return buffer


def pickleStringO(stringo: StringIO) -> tuple[Callable[[str, int], StringIO], tuple[str, int]]:
    """Reduce an output buffer to its text and write position."""
    return unpickleStringO, (stringo.getvalue(), stringo.tell())


def unpickleStringO(val: str, sek: int) -> StringIO:
    """A ``StringIO`` holding ``val``, positioned at ``sek``, for further writes.

    Also what Python 2 pickles of ``cStringIO`` output buffers load as.
    """
    buffer = StringIO()
    buffer.write(val)
    buffer.seek(sek)
    return buffer
