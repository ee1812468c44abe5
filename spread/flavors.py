"""The kinds of object PB can pass, and how each travels (``twisted.spread.flavors``).

* ``Referenceable``: passed by reference; the peer calls its ``remote_*`` methods.
* ``Viewable``: passed by reference; ``view_*`` methods also receive the caller's perspective.
* ``Copyable`` / ``RemoteCopy``: passed by value; the receiver builds its own class from the state.
* ``Cacheable`` / ``RemoteCache``: passed by value once, then kept in sync through
  ``observe_*`` calls the master makes on a ``RemoteCacheObserver``.

This module does not import ``spread.pb``: the broker it talks to arrives as
``jellier.invoker`` / ``unjellier.invoker``, or as the ``broker`` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.python.reflect import qual
from zope.interface import Interface, implementer  # type: ignore[import-untyped]

from spread._calls import CallSender, quietFailure
from spread._errors import DeadReferenceError
from spread.jelly import (
    InsecureJelly,
    Jellyable,
    Unjellyable,
    getInstanceState,
    setInstanceState,
    setUnjellyableFactoryForClass,
    setUnjellyableForClass,
    setUnjellyableForClassTree,
    unjellyableRegistry,
)
from spread.styles import Versioned, VersionError, hasVersions, upgradeState, versionedState

# Names Twisted code imports from here.
setCopierForClass = setUnjellyableForClass
setCopierForClassTree = setUnjellyableForClassTree
setFactoryForClass = setUnjellyableFactoryForClass
copyTags = unjellyableRegistry

copy_atom = b"copy"
cache_atom = b"cache"
cached_atom = b"cached"
remote_atom = b"remote"
local_atom = b"local"
lcache_atom = b"lcache"


class NoSuchMethod(AttributeError):
    """The peer called a method the object does not offer (no ``remote_<name>`` method)."""


class IPBRoot(Interface):  # type: ignore[misc]
    """What a PB server offers each new connection as the object named ``root``."""

    def rootObject(broker: Any) -> Any:  # noqa: N805
        """Return the ``Referenceable`` this connection (``broker``) sees as ``root``."""


def findMethod(obj: object, prefix: str, message: str) -> Callable[..., Any]:
    """The method a peer may call as ``message``: only ``prefix + message`` is ever looked up.

    The fixed prefix is the whole access control: nothing without it (no
    dunder, no attribute chain) is reachable from the wire.
    """
    name = prefix + message
    method = getattr(obj, name, None)
    if method is None or not callable(method):
        if prefix == "remote_":
            raise NoSuchMethod(f"No such method: {name} (on {type(obj).__name__})")
        # Twisted answers a missing perspective_/view_/observe_ method with the
        # AttributeError of a plain getattr; a peer may check for that type.
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")
    return method  # type: ignore[no-any-return]


def callArguments(broker: Any, args: Any, kw: Any, perspective: Any) -> tuple[Any, dict[str, Any]]:
    """Unjelly a call's positional and keyword arguments and check their shape."""
    args = broker.unserialize(args, perspective)
    kw = broker.unserialize(kw, perspective)
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"remote call arguments must be a tuple, not {type(args).__name__}")
    if not isinstance(kw, dict):
        raise TypeError(f"remote keyword arguments must be a dict, not {type(kw).__name__}")
    if kw and any(type(key) is not str for key in kw):
        # Python 2 peers send keyword names as bytes.
        kw = {key.decode("utf-8") if isinstance(key, bytes) else key: v for key, v in kw.items()}
    return args, kw


def _unpersistable(what: str) -> list[Any]:
    return [b"unpersistable", f"{what} can only be sent over a PB connection".encode()]


class Serializable(Jellyable):
    """Base of everything PB knows how to pass other than plain data."""

    def processUniqueID(self) -> Any:
        """Identify this object within the process (two proxies may claim the same id)."""
        return id(self)


class Referenceable(Serializable):
    """Passed by reference: the peer gets a ``RemoteReference`` and calls ``remote_*`` methods.

    A method may return a value, a ``Deferred``, or be ``async def``.
    """

    perspective: Any = None

    def remoteMessageReceived(self, broker: Any, message: str, args: Any, kw: Any) -> Any:
        """Run ``remote_<message>`` with the unjellied arguments and jelly what it returns."""
        method = findMethod(self, "remote_", message)
        args, kw = callArguments(broker, args, kw, None)
        return broker.serialize(method(*args, **kw), self.perspective)

    def jellyFor(self, jellier: Any) -> Any:
        """Travel as ``[remote, id]``, the id the peer will call us by."""
        if jellier.invoker is None:
            return _unpersistable("a Referenceable")
        return [remote_atom, jellier.invoker.registerReference(self)]


@implementer(IPBRoot)
class Root(Referenceable):
    """A ``Referenceable`` that is the same root object for every connection."""

    def rootObject(self, broker: Any) -> Any:
        """Return myself; override to give each connection its own root."""
        return self


class ViewPoint(Referenceable):
    """A reference to ``object`` as seen by ``perspective``: calls go to ``view_*`` methods.

    Each ``view_<name>(perspective, *args)`` learns who is calling.
    """

    def __init__(self, perspective: Any, object: Any) -> None:
        self.perspective = perspective
        self.object = object

    def processUniqueID(self) -> Any:
        """One id per (perspective, object) pair, so the peer sees one reference for it."""
        return (id(self.perspective), id(self.object))

    def remoteMessageReceived(self, broker: Any, message: str, args: Any, kw: Any) -> Any:
        """Run ``view_<message>(perspective, *args)`` on the viewed object."""
        method = findMethod(self.object, "view_", message)
        args, kw = callArguments(broker, args, kw, self.perspective)
        result = method(self.perspective, *args, **kw)
        return broker.serialize(result, self.perspective, method, args, kw)


class Viewable(Serializable):
    """Passed as a ``ViewPoint`` for the perspective it is being sent to."""

    def jellyFor(self, jellier: Any) -> Any:
        """Travel as a reference to a ``ViewPoint`` on myself."""
        if jellier.invoker is None:
            return _unpersistable("a Viewable")
        perspective = jellier.invoker.serializingPerspective
        return ViewPoint(perspective, self).jellyFor(jellier)


class Copyable(Serializable):
    """Passed by value: the peer builds the class it registered for my type name.

    Override ``getStateToCopy`` (or ``getStateToCopyFor(perspective)``) to
    choose what is sent; the default is my ``__dict__``.
    """

    def getStateToCopy(self) -> Any:
        """The state to send; by default my attribute dictionary."""
        return self.__dict__

    def getStateToCopyFor(self, perspective: Any) -> Any:
        """The state to send to ``perspective``; by default ``getStateToCopy()``."""
        return self.getStateToCopy()

    def getTypeToCopy(self) -> bytes:
        """The type name the receiver looks up; by default ``module.Class``."""
        return qual(self.__class__).encode("utf-8")

    def getTypeToCopyFor(self, perspective: Any) -> bytes:
        """The type name to send to ``perspective``; by default ``getTypeToCopy()``."""
        return self.getTypeToCopy()

    def jellyFor(self, jellier: Any) -> Any:
        """Travel as ``[type name, state]``."""
        if jellier.invoker is None:
            return getInstanceState(self, jellier)
        kind = type(self)
        if (
            kind.getTypeToCopyFor is Copyable.getTypeToCopyFor
            and kind.getStateToCopyFor is Copyable.getStateToCopyFor
        ):
            # The same copy for every perspective (so ``broadcast`` may share it).
            type_name, state = self.getTypeToCopy(), self.getStateToCopy()
        else:
            perspective = jellier.invoker.serializingPerspective
            type_name = self.getTypeToCopyFor(perspective)
            state = self.getStateToCopyFor(perspective)
        state = _withVersions(jellier.invoker, self, state, type_name)
        sexp = jellier.prepare(self)
        sexp.extend([type_name, jellier.jelly(state)])
        return jellier.preserve(self, sexp)

    # What it makes depends on the object, the dialect and (read through the broker,
    # which counts the reads) the perspective: nothing else of the connection.
    jellyFor.sameForEveryConnection = True  # type: ignore[attr-defined]


class Cacheable(Copyable):
    """Passed by value once per connection, then updated through its observers.

    The first time a connection receives me, ``getStateToCacheAndObserveFor``
    gives the state and an observer (the sender's handle on that connection's
    ``RemoteCache``): call ``observer.callRemote("name", ...)`` to run
    ``observe_name`` there. When the peer lets its last replica go, or the
    connection closes, ``stoppedObserving`` is called with the same observer.
    """

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: RemoteCacheObserver) -> Any:
        """Remember ``observer`` and return the state to send; by default the copy state."""
        return self.getStateToCopyFor(perspective)

    def stoppedObserving(self, perspective: Any, observer: RemoteCacheObserver) -> None:
        """The observer's connection no longer holds a replica; stop calling it."""

    def jellyFor(self, jellier: Any) -> Any:
        """Travel as ``[type, cache id, state]`` the first time, ``[cached, id]`` after."""
        broker = jellier.invoker
        if broker is None:
            return getInstanceState(self, jellier)
        luid = broker.cachedRemotelyAs(self, 1)
        if luid is not None:
            return [cached_atom, luid]
        luid = broker.cacheRemotely(self)
        perspective = broker.serializingPerspective
        observer = broker.remotelyCachedObserver(luid)
        # If anything below raises, the broker undoes this registration.
        type_name = self.getTypeToCopyFor(perspective)
        state = self.getStateToCacheAndObserveFor(perspective, observer)
        state = _withVersions(broker, self, state, type_name)
        sexp = jellier.prepare(self)
        sexp.extend([type_name, luid, jellier.jelly(state)])
        return jellier.preserve(self, sexp)


class RemoteCopy(Unjellyable):
    """Base for classes that receive a ``Copyable``'s state (register with
    ``setUnjellyableForClass``). Instances are made without calling ``__init__``."""

    def setCopyableState(self, state: Any) -> None:
        """Take the received state; by default it becomes my ``__dict__``."""
        if not state:
            state = {}
        if not isinstance(state, dict):
            raise InsecureJelly(
                f"{qual(type(self))} received a {type(state).__name__} as its state; "
                "override setCopyableState to accept it"
            )
        self.__dict__ = {
            key.decode("utf-8") if isinstance(key, bytes) else key: value
            for key, value in state.items()
        }

    def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
        """Rebuild from ``[type name, state]``."""
        if unjellier.invoker is None:
            return setInstanceState(self, unjellier, jellyList)
        if len(jellyList) != 2:
            raise InsecureJelly(f"malformed copy of {jellyList[0]!r}: expected [type, state]")
        state = unjellier.unjelly(jellyList[1])
        self.setCopyableState(_upgraded(unjellier.invoker, self, state, jellyList[0]))
        return self


def _withVersions(broker: Any, sender: object, state: Any, typeName: Any) -> Any:
    """A ``Versioned`` sender's dict state, stamped with its class versions for a spread
    receiver (in the spread dialect); a Twisted peer gets exactly what Twisted sends."""
    if (
        isinstance(sender, Versioned)
        and isinstance(state, dict)
        and getattr(broker, "spreadDialect", False)
    ):
        return versionedState(sender, state, _text(typeName))
    return state


def _upgraded(broker: Any, receiver: object, state: Any, typeName: Any) -> Any:
    """Received dict state brought up to a ``Versioned`` receiver's versions.

    From a spread peer (the spread dialect) unstamped state is at version 0 (the
    sender's class has no versions yet). A Twisted peer stamps nothing, whatever its
    version: as in Twisted, its state is taken as it is, at the receiver's version
    (upgrading it would re-run upgrades on current data). State from newer code cannot
    be downgraded: it is refused, and the refusal reaches the sender as its call's failure.
    """
    if not (isinstance(receiver, Versioned) and isinstance(state, dict)):
        return state
    if not getattr(broker, "spreadDialect", False) and not hasVersions(state):
        return state
    try:
        return upgradeState(type(receiver), state, _text(typeName))
    except VersionError as error:
        raise InsecureJelly(f"refused a copy: {error}") from None


def _text(name: Any) -> str:
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else str(name)


class RemoteCache(RemoteCopy, Serializable):
    """A replica of a peer's ``Cacheable``: ``setCopyableState`` fills it, ``observe_*``
    methods apply the master's updates.

    One replica object per master per connection: receiving the same master
    again gives the same object. When the last local reference goes, the
    master's side is told (``decache``) from the reactor, never from a
    finalizer. Instances are made by calling ``__init__()`` with no arguments.
    """

    broker: Any = None
    luid: Any = None

    def remoteMessageReceived(self, broker: Any, message: str, args: Any, kw: Any) -> Any:
        """Run ``observe_<message>`` with the master's arguments."""
        method = findMethod(self, "observe_", message)
        args, kw = callArguments(broker, args, kw, None)
        return broker.serialize(method(*args, **kw), None, method, args, kw)

    def jellyFor(self, jellier: Any) -> Any:
        """Travel back to the master's side as ``[lcache, id]``: it gets its master."""
        if jellier.invoker is None:
            return getInstanceState(self, jellier)
        if jellier.invoker is not self.broker:
            raise InsecureJelly(
                f"a {type(self).__name__} can only be sent back over the connection it came from"
            )
        return [lcache_atom, self.luid]

    def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
        """Build the replica from ``[type name, cache id, state]`` and register it."""
        broker = unjellier.invoker
        if broker is None:
            return setInstanceState(self, unjellier, jellyList)
        if len(jellyList) != 3 or type(jellyList[1]) is not int:
            raise InsecureJelly(f"malformed cache of {jellyList[0]!r}: expected [type, id, state]")
        luid = jellyList[1]
        self.__init__()  # type: ignore[misc]
        self.broker, self.luid = broker, luid
        broker.cacheLocally(luid, self)
        state = unjellier.unjelly(jellyList[2])
        self.setCopyableState(_upgraded(broker, self, state, jellyList[0]))
        # setCopyableState may have replaced __dict__: track the final one.
        self.broker, self.luid = broker, luid
        broker.cacheLocally(luid, self)
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RemoteCache):
            return self.__dict__ is other.__dict__
        return NotImplemented

    def __hash__(self) -> int:
        return id(self.__dict__)


def _quietDeadReference(message: str) -> defer.Deferred[Any]:
    return quietFailure(DeadReferenceError(message))


class RemoteCacheObserver:
    """The master's handle on one connection's replica of it.

    ``callRemote("name", ...)`` runs ``observe_name`` on that replica. Once the
    replica is gone (released or disconnected) it fails with
    ``DeadReferenceError``, an errback that is never logged as unhandled: a
    master may simply ignore the results of its updates.
    """

    def __init__(self, broker: CallSender, cached: Cacheable, perspective: Any) -> None:
        self.broker = broker
        self.cached = cached
        self.perspective = perspective

    def __repr__(self) -> str:
        return f"<RemoteCacheObserver of {self.cached!r} for {self.perspective!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteCacheObserver):
            return NotImplemented
        return (
            self.broker is other.broker
            and self.perspective is other.perspective
            and self.cached is other.cached
        )

    def __hash__(self) -> int:
        return hash((id(self.broker), id(self.perspective), id(self.cached)))

    def callRemote(self, _name: str | bytes, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        """Call ``observe_<_name>`` on the replica; always returns a Deferred."""
        name = _name.encode("utf-8") if isinstance(_name, str) else _name
        return self._callShared(name, args, kw, None)

    def _callShared(
        self, name: bytes, args: tuple[Any, ...], kw: dict[str, Any],
        shared: dict[Any, Any] | None,
    ) -> defer.Deferred[Any]:
        broker = self.broker
        if broker.disconnected:
            return _quietDeadReference("the connection to this cache's replica has closed")
        cache_id = broker.cachedRemotelyAs(self.cached)
        if cache_id is None:
            return _quietDeadReference("the peer no longer holds a replica of this object")
        return broker.sendRemoteCall(
            b"cache", self.perspective, cache_id, name, args, kw, True, shared
        )

    def remoteMethod(self, key: str) -> RemoteCacheMethod:
        """A callable that does ``callRemote(key, ...)``."""
        return RemoteCacheMethod(key, self.broker, self.cached, self.perspective)


def broadcast(
    targets: Iterable[Any], _name: str | bytes, *args: Any, **kw: Any
) -> list[defer.Deferred[Any]]:
    """Make the same call on many peers: ``[t.callRemote(_name, *args, **kw) for t in targets]``,
    with the arguments serialized once rather than once per target.

    ``targets`` are a ``Cacheable``'s observers (``observe_<_name>`` runs on each replica)
    or ``RemoteReference``s (``remote_<_name>``), on any number of connections. The
    arguments are jellied once for all connections that can share the result (the same
    broker class, security options and dialect) unless jelly made something specific to
    one connection: a reference, a replica, or a copy whose ``getStateToCopyFor`` or
    ``getTypeToCopyFor`` looks at the perspective. Those are jellied per target, exactly as
    ``callRemote`` does. Every target sees the arguments as they were when ``broadcast``
    began; a loop of ``callRemote`` would show it changes made between two targets.

    Returns one Deferred per target, in order. A target whose connection has closed gets
    a failed one (``DeadReferenceError``) instead of raising, so one gone peer does not
    stop the others' calls; an observer's failures, as from ``callRemote``, are never
    logged as unhandled.
    """
    name = _name.encode("utf-8") if isinstance(_name, str) else _name
    shared: dict[Any, Any] = {}
    calls: list[defer.Deferred[Any]] = []
    for target in targets:
        callShared = getattr(target, "_callShared", None)
        try:
            if callShared is None:  # someone else's proxy: its own callRemote
                calls.append(target.callRemote(_name, *args, **kw))
            else:
                calls.append(callShared(name, args, kw, shared))
        except Exception:
            calls.append(defer.fail())
    return calls


class RemoteCacheMethod:
    """``observer.remoteMethod(name)``: a callable remote method on a replica."""

    def __init__(self, name: str, broker: Any, cached: Cacheable, perspective: Any) -> None:
        self.name = name
        self.broker = broker
        self.cached = cached
        self.perspective = perspective

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteCacheMethod):
            return NotImplemented
        return (self.name, self.broker, self.perspective, self.cached) == (
            other.name,
            other.broker,
            other.perspective,
            other.cached,
        )

    def __hash__(self) -> int:
        return hash((self.name, id(self.broker), id(self.perspective), id(self.cached)))

    def __call__(self, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        return RemoteCacheObserver(self.broker, self.cached, self.perspective).callRemote(
            self.name, *args, **kw
        )


def _brokerForm(tag: bytes) -> Callable[[Any, list[Any]], Any]:
    def unjellyForm(unjellier: Any, unjellyList: list[Any]) -> Any:
        invoker = unjellier.invoker
        if invoker is None:
            raise InsecureJelly(f"a {tag.decode()!r} form means something only on a PB connection")
        return invoker.protocolUnjellyables[tag](unjellier, unjellyList)

    return unjellyForm


# Twisted's readers of the broker's own forms. A spread broker reads these tags itself
# (``Broker.protocolUnjellyables``), so they are not registered globally: a plain
# ``unjelly`` refuses them. Code that calls them directly gets the broker's reading.
unjellyCached = _brokerForm(cached_atom)
"""``[b"cached", id]``: our replica of the peer's ``Cacheable`` number ``id``."""
unjellyLCache = _brokerForm(lcache_atom)
"""``[b"lcache", id]``: our own ``Cacheable`` that the peer knows as cache ``id``."""
unjellyLocal = _brokerForm(local_atom)
"""``[b"local", id]``: our own object that the peer holds as reference ``id``."""


__all__ = [
    "Cacheable",
    "Copyable",
    "IPBRoot",
    "Jellyable",
    "NoSuchMethod",
    "Referenceable",
    "RemoteCache",
    "RemoteCacheMethod",
    "RemoteCacheObserver",
    "RemoteCopy",
    "Root",
    "Serializable",
    "Unjellyable",
    "ViewPoint",
    "Viewable",
    "broadcast",
    "copyTags",
    "setCopierForClass",
    "setCopierForClassTree",
    "setFactoryForClass",
    "setUnjellyableFactoryForClass",
    "setUnjellyableForClass",
    "setUnjellyableForClassTree",
    "unjellyCached",
    "unjellyLCache",
    "unjellyLocal",
]
