"""The caller's side of a remote object: ``RemoteReference`` and ``RemoteMethod``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from spread._calls import CallSender
from spread._errors import ProtocolError
from spread._lazy import perConnection
from spread.flavors import Serializable, local_atom

_log = Logger()


class RemoteReference(Serializable):
    """A proxy for an object in the peer: ``callRemote`` runs its ``remote_*`` methods.

    The same remote object received several times over one connection is the
    same ``RemoteReference``. When the last local reference to it goes, the
    peer is told (``decref``) from the reactor, and may then free the object.
    """

    def __init__(
        self, perspective: Any, broker: CallSender, luid: Any, doRefCount: Any
    ) -> None:
        self.luid = luid
        self.broker = broker
        self.doRefCount = doRefCount
        self.perspective = perspective

    @perConnection
    def disconnectCallbacks(self) -> list[Callable[[RemoteReference], object]]:
        """What ``notifyOnDisconnect`` was given (made on first use: most references never
        are; see ``spread._lazy``)."""
        return []

    def callRemote(self, _name: str | bytes, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        """Call ``remote_<_name>(*args, **kw)`` in the peer; returns a Deferred.

        As in Twisted, the call itself raises ``DeadReferenceError`` if the
        connection has already closed, and ``BananaError`` if the message is
        too large to send (nothing is sent then). The Deferred fires with the
        result, or fails with a ``CopiedFailure`` (the remote exception),
        ``PBConnectionLost`` (the connection closed while waiting), or the
        serializer's refusal of an argument (``InsecureJelly``). The Deferred
        can be ``await``-ed.
        """
        name = _name.encode("utf-8") if isinstance(_name, str) else _name
        return self.broker.sendRemoteCall(b"", self.perspective, self.luid, name, args, kw)

    def _callShared(
        self, name: bytes, args: tuple[Any, ...], kw: dict[str, Any], shared: dict[Any, Any]
    ) -> defer.Deferred[Any]:
        """``callRemote`` for ``flavors.broadcast``: arguments serialized once for many."""
        return self.broker.sendRemoteCall(
            b"", self.perspective, self.luid, name, args, kw, False, shared
        )

    def unjellyFor(self, unjellier: Any, unjellyList: list[Any]) -> RemoteReference:
        """Become the reference ``[b"remote", id]`` names on ``unjellier``'s connection.

        Twisted's hook for a class registered for the ``remote`` tag; a spread
        broker reads that tag itself (one proxy per id), so only such code calls it.
        """
        invoker = unjellier.invoker
        self.__init__(invoker.unserializingPerspective, invoker, unjellyList[1], 1)  # type: ignore[misc]
        return self

    def remoteMethod(self, key: str) -> RemoteMethod:
        """A callable that does ``callRemote(key, ...)``."""
        return RemoteMethod(self, key)

    def notifyOnDisconnect(self, callback: Callable[[RemoteReference], object]) -> None:
        """Call ``callback(self)`` once when this reference's connection closes.

        If it has already closed, the callback runs at once.
        """
        if not callable(callback):
            raise TypeError(f"notifyOnDisconnect needs a callable, not {callback!r}")
        if self.broker.disconnected:
            self._run(callback)
            return
        self.disconnectCallbacks.append(callback)
        if len(self.disconnectCallbacks) == 1:
            self.broker.notifyOnDisconnect(self._disconnected)

    def dontNotifyOnDisconnect(self, callback: Callable[[RemoteReference], object]) -> None:
        """Forget a callback given to ``notifyOnDisconnect`` (unknown callbacks are ignored)."""
        try:
            self.disconnectCallbacks.remove(callback)
        except ValueError:
            return
        if not self.disconnectCallbacks:
            self.broker.dontNotifyOnDisconnect(self._disconnected)

    def _disconnected(self) -> None:
        for callback in self.__dict__.pop("disconnectCallbacks", ()):
            self._run(callback)

    def _run(self, callback: Callable[[RemoteReference], object]) -> None:
        try:
            callback(self)
        except Exception:
            _log.failure("a notifyOnDisconnect callback raised")

    def jellyFor(self, jellier: Any) -> Any:
        """Travel back to its own peer as ``[local, id]``: the peer gets its own object."""
        if jellier.invoker is None:
            return [b"unpersistable", b"References cannot be serialized"]
        if jellier.invoker is not self.broker:
            raise ProtocolError(
                "a RemoteReference can only be sent over the connection it came from; "
                "to introduce two peers, pass an object of your own that forwards calls"
            )
        return [local_atom, self.luid]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RemoteReference):
            return other.broker is self.broker and other.luid == self.luid
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.luid)

    def __repr__(self) -> str:
        state = " (disconnected)" if self.broker.disconnected else ""
        return f"<RemoteReference {self.luid!r}{state}>"


class RemoteMethod:
    """``ref.remoteMethod(name)``: a callable that calls ``name`` on the remote object."""

    def __init__(self, obj: RemoteReference, name: str) -> None:
        self.obj = obj
        self.name = name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RemoteMethod):
            return (self.obj, self.name) == (other.obj, other.name)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.obj, self.name))

    def __call__(self, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        return self.obj.callRemote(self.name, *args, **kw)


for _cls in (RemoteReference, RemoteMethod):
    _cls.__module__ = "spread.pb"
del _cls
