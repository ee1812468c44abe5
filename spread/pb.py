"""Perspective Broker: call objects in another process (``twisted.spread.pb``, same names).

A server publishes a root object::

    class Echo(pb.Root):
        def remote_echo(self, value):
            return value

    endpoint.listen(pb.PBServerFactory(Echo()))

and a client calls it::

    factory = pb.PBClientFactory()
    await endpoint.connect(factory)
    root = await factory.getRootObject()
    print(await root.callRemote("echo", "hello"))

``Referenceable`` objects travel by reference, ``Copyable`` ones by value,
``Cacheable`` ones as live replicas. The wire is Twisted's PB: either end may
be ``twisted.spread``. The connection's ``SecurityOptions`` (``security=``)
decide which classes may arrive; by default only basic types and classes
registered with ``setUnjellyableForClass``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol
from twisted.python.failure import Failure
from zope.interface import Interface, implementer  # type: ignore[import-untyped]

from spread._broker import MAX_BROKER_REFS, Local
from spread._credentials import IUsernameMD5Password, challenge, respond
from spread._errors import DeadReferenceError, Error, PBConnectionLost, ProtocolError, RemoteError
from spread._failures import CopiedFailure, CopyableFailure, failure2Copyable
from spread._protocol import Broker
from spread._remote import RemoteMethod, RemoteReference
from spread.flavors import (
    Cacheable,
    Copyable,
    IPBRoot,
    Jellyable,
    NoSuchMethod,
    Referenceable,
    RemoteCache,
    RemoteCacheObserver,
    RemoteCopy,
    Root,
    Serializable,
    Viewable,
    ViewPoint,
    callArguments,
    copyTags,
    findMethod,
    setCopierForClass,
    setCopierForClassTree,
    setFactoryForClass,
    setUnjellyableFactoryForClass,
    setUnjellyableForClass,
    setUnjellyableForClassTree,
)
from spread.interfaces import IJellyable, IUnjellyable
from spread.jelly import globalSecurity, jelly, unjelly
from spread.limits import Limits, withBrokerRefs

portno = 8787
"""The port PB examples traditionally use."""


class IPerspective(Interface):  # type: ignore[misc]
    """A user's view of a service, reached after logging in (an avatar)."""

    def perspectiveMessageReceived(
        broker: Any,  # noqa: N805
        message: str,
        args: Any,
        kwargs: Any,
    ) -> Any:
        """Handle a call from the peer; return its jellied result (see ``Avatar``)."""


@implementer(IPerspective)
class Avatar:
    """A logged-in user's object: the peer's calls run its ``perspective_*`` methods."""

    def perspectiveMessageReceived(self, broker: Any, message: str, args: Any, kw: Any) -> Any:
        """Run ``perspective_<message>`` with the unjellied arguments."""
        method = findMethod(self, "perspective_", message)
        args, kw = callArguments(broker, args, kw, self)
        return broker.serialize(method(*args, **kw), self, method, args, kw)


class AsReferenceable(Referenceable):
    """Pass ``object`` by reference, sending calls to its ``<messageType>MessageReceived``."""

    def __init__(self, object: Any, messageType: str = "remote") -> None:
        self.remoteMessageReceived = getattr(  # type: ignore[method-assign]
            object, messageType + "MessageReceived"
        )


class PBClientFactory(protocol.ClientFactory):
    """Connects to a PB server; ``getRootObject()`` gives the server's root reference.

    Use it with any client endpoint (``endpoint.connect(factory)``) or
    ``reactor.connectTCP``. ``getRootObject`` may be called before or after
    the connection is made.
    """

    protocol = Broker
    unsafeTracebacks: Any = False

    def __init__(
        self, unsafeTracebacks: Any = False, security: Any = globalSecurity,
        maxBrokerRefs: int | None = None, limits: Limits | None = None,
    ) -> None:
        self.unsafeTracebacks = unsafeTracebacks
        self.security = security
        self.limits = withBrokerRefs(limits, maxBrokerRefs)
        self.maxBrokerRefs = self.limits.maxBrokerRefs
        self._reset()

    def buildProtocol(self, addr: Any) -> Broker:
        """A client-side broker using this factory's security options and limits."""
        broker: Broker = self.protocol(isClient=True, security=self.security, limits=self.limits)
        broker.factory = self
        return broker

    def _reset(self) -> None:
        self.rootObjectRequests: list[defer.Deferred[RemoteReference]] = []
        self._broker: Broker | None = None
        self._root: RemoteReference | None = None

    def _failAll(self, reason: Failure) -> None:
        waiting = self.rootObjectRequests
        self._reset()
        for d in waiting:
            d.errback(reason)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """The connection attempt failed: so does every ``getRootObject`` waiting for it."""
        self._failAll(reason)

    def clientConnectionLost(self, connector: Any, reason: Failure, reconnecting: int = 0) -> None:
        """Reconnecting subclasses pass ``reconnecting=1`` to keep waiting requests."""
        if reconnecting:
            self._broker = None
            self._root = None
        else:
            self._failAll(reason)

    def brokerDisconnected(self, broker: Broker, reason: Failure) -> None:
        """A broker of ours closed (however it was connected): forget it."""
        if broker is self._broker:
            self._broker = None
            self._root = None
        elif self._broker is None and self.rootObjectRequests:
            # Closed before it was ready (endpoint connections get no clientConnectionLost).
            self._failAll(reason)

    def clientConnectionMade(self, broker: Broker) -> None:
        """The broker is ready: hand the root reference to everyone waiting."""
        self._broker = broker
        self._root = broker.remoteForName("root")
        waiting, self.rootObjectRequests = self.rootObjectRequests, []
        for d in waiting:
            d.callback(self._root)

    def getRootObject(self) -> defer.Deferred[RemoteReference]:
        """A Deferred firing with a reference to the server's root object."""
        if self._broker is not None and not self._broker.disconnected and self._root is not None:
            return defer.succeed(self._root)
        d: defer.Deferred[RemoteReference] = defer.Deferred()
        self.rootObjectRequests.append(d)
        return d

    def disconnect(self) -> None:
        """Close the connection, if there is one."""
        if self._broker is not None:
            self._broker.transport.loseConnection()

    def login(self, credentials: Any, client: Any = None) -> defer.Deferred[RemoteReference]:
        """Log in to a portal server and fire with the avatar reference (see ``spread._login``)."""
        from spread import _login

        return _login.login(self, credentials, client)


class PBServerFactory(protocol.ServerFactory):
    """Serves ``root`` (anything providing or adaptable to ``IPBRoot``, such as a
    ``Root`` or, with login, a ``twisted.cred`` portal) on every connection."""

    protocol = Broker
    unsafeTracebacks: Any = False

    def __init__(
        self, root: Any, unsafeTracebacks: Any = False, security: Any = globalSecurity,
        maxBrokerRefs: int | None = None, limits: Limits | None = None,
    ) -> None:
        if not IPBRoot.providedBy(root):
            from spread import _login  # noqa: F401  (registers the portal -> IPBRoot adapter)
        self.root: Any = IPBRoot(root)
        self.unsafeTracebacks = unsafeTracebacks
        self.security = security
        self.limits = withBrokerRefs(limits, maxBrokerRefs)
        self.maxBrokerRefs = self.limits.maxBrokerRefs

    def buildProtocol(self, addr: Any) -> Broker:
        """A server-side broker with this connection's root object published as ``root``."""
        broker: Broker = self.protocol(isClient=False, security=self.security, limits=self.limits)
        broker.factory = self
        broker.setNameForLocal("root", self.root.rootObject(broker))
        return broker

    def clientConnectionMade(self, protocol: Broker) -> None:
        """Nothing to do when a connection is ready (kept for Twisted compatibility)."""


__all__ = [
    "MAX_BROKER_REFS",
    "AsReferenceable",
    "Avatar",
    "Broker",
    "Cacheable",
    "CopiedFailure",
    "Copyable",
    "CopyableFailure",
    "DeadReferenceError",
    "Error",
    "IJellyable",
    "IPBRoot",
    "IPerspective",
    "IUnjellyable",
    "IUsernameMD5Password",
    "Jellyable",
    "Limits",
    "Local",
    "NoSuchMethod",
    "PBClientFactory",
    "PBConnectionLost",
    "PBServerFactory",
    "ProtocolError",
    "Referenceable",
    "RemoteCache",
    "RemoteCacheObserver",
    "RemoteCopy",
    "RemoteError",
    "RemoteMethod",
    "RemoteReference",
    "Root",
    "Serializable",
    "ViewPoint",
    "Viewable",
    "challenge",
    "copyTags",
    "failure2Copyable",
    "globalSecurity",
    "jelly",
    "portno",
    "respond",
    "setCopierForClass",
    "setCopierForClassTree",
    "setFactoryForClass",
    "setUnjellyableFactoryForClass",
    "setUnjellyableForClass",
    "setUnjellyableForClassTree",
    "unjelly",
]
