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
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from twisted.logger import Logger

__all__ = [
    "Ephemeral",
    "VersionError",
    "Versioned",
    "doUpgrade",
    "requireUpgrade",
    "upgradeState",
    "versionKey",
    "versionedState",
]

_log = Logger()

_KEY_SUFFIX = ".persistenceVersion"

_T = TypeVar("_T")


class VersionError(ValueError):
    """State was written by a newer version of a class than this program has.

    ``Versioned`` only moves forward: there are no downgrade methods, so the
    only fixes are running the newer code here or getting older state.
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
            _schedule(self, behind)


# The objects loaded but not yet upgraded, by id(), with what each needs. It is
# module-level because doUpgrade() takes no arguments in Twisted's API. Unlike
# Twisted's, it holds objects weakly: one dropped before doUpgrade() needs no
# upgrade, and a long-running program that never calls doUpgrade() (objects
# restored by a network peer, say) must not accumulate them.
_pending: dict[int, tuple[Callable[[], Versioned | None], dict[type[Versioned], int]]] = {}


def _schedule(obj: Versioned, behind: dict[type[Versioned], int]) -> None:
    key = id(obj)

    def forget(ref: object) -> None:
        entry = _pending.get(key)
        if entry is not None and entry[0] is ref:
            del _pending[key]

    try:
        handle: Callable[[], Versioned | None] = weakref.ref(obj, forget)
    except TypeError:  # no weak references to subclasses of int, tuple, ...
        handle = lambda: obj  # noqa: E731
    _pending[key] = (handle, behind)


def doUpgrade() -> None:
    """Upgrade every ``Versioned`` object loaded since the last call and still in use.

    Call it after unpickling, once the whole graph is loaded. Objects loaded
    by an upgrade method (a nested ``pickle.load``) are upgraded too. If an
    upgrade method raises, the error propagates; objects not yet upgraded stay
    pending for the next call.
    """
    while _pending:
        # A snapshot of the keys: weak-reference callbacks and nested calls
        # may remove entries at any moment.
        for key in list(_pending):
            entry = _pending.pop(key, None)
            obj = entry[0]() if entry is not None else None
            if entry is not None and obj is not None:
                _runUpgrades(obj, entry[1])


def requireUpgrade(obj: _T) -> _T:
    """Upgrade ``obj`` now if it is waiting for ``doUpgrade()``, and return it.

    For upgrade methods that read another loaded object and need it in its
    current layout first. Calling it on an object with nothing to upgrade does
    nothing.
    """
    key = id(obj)
    entry = _pending.get(key)
    if entry is not None:
        loaded = entry[0]()
        if loaded is not None and id(loaded) == key:  # both alive: the same object
            del _pending[key]
            _runUpgrades(loaded, entry[1])
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
