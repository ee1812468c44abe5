"""The client and server factories: PB connections made by endpoints or ``reactor.connect*``."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread import _login  # also registers the adapter that serves a cred portal as a root
from spread._protocol import Broker
from spread._remote import RemoteReference
from spread.flavors import IPBRoot
from spread.jelly import globalSecurity
from spread.limits import Limits, withBrokerRefs

_log = Logger()


class _BrokerMaker:
    """What both factories give each broker they build: security, limits and a reactor."""

    protocol: Any = Broker
    unsafeTracebacks: Any = False

    def _configure(
        self, unsafeTracebacks: Any, security: Any, maxBrokerRefs: int | None,
        limits: Limits | None, reactor: Any,
    ) -> None:
        self.unsafeTracebacks = unsafeTracebacks
        self.security = security
        self.limits = withBrokerRefs(limits, maxBrokerRefs)
        self.maxBrokerRefs = self.limits.maxBrokerRefs
        self.reactor = reactor  # what the brokers schedule on; None: the global one, found late

    def _newBroker(self, isClient: bool) -> Broker:
        broker: Broker = self.protocol(
            isClient=isClient, security=self.security, limits=self.limits, reactor=self.reactor
        )
        broker.factory = self
        return broker


class PBClientFactory(_BrokerMaker, protocol.ClientFactory):
    """Connects to a PB server; ``getRootObject()`` gives the server's root reference.

    Use it with any client endpoint (``endpoint.connect(factory)``) or
    ``reactor.connectTCP``. ``getRootObject`` may be called before or after
    the connection is made. ``reactor=`` is what its brokers schedule work on
    (the global reactor if not given; a ``task.Clock`` in tests).
    """

    def __init__(
        self, unsafeTracebacks: Any = False, security: Any = globalSecurity,
        maxBrokerRefs: int | None = None, limits: Limits | None = None, *, reactor: Any = None,
    ) -> None:
        self._configure(unsafeTracebacks, security, maxBrokerRefs, limits, reactor)
        self._reset()

    def buildProtocol(self, addr: Any) -> Broker:
        """A client-side broker using this factory's security options, limits and reactor."""
        return self._newBroker(isClient=True)

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
        return _login.login(self, credentials, client)


class PBServerFactory(_BrokerMaker, protocol.ServerFactory):
    """Serves ``root`` (anything providing or adaptable to ``IPBRoot``, such as a
    ``Root`` or, with login, a ``twisted.cred`` portal) on every connection.

    ``reactor=`` is what its brokers schedule work on (the global reactor if not given).
    """

    def __init__(
        self, root: Any, unsafeTracebacks: Any = False, security: Any = globalSecurity,
        maxBrokerRefs: int | None = None, limits: Limits | None = None, *, reactor: Any = None,
    ) -> None:
        self.root: Any = IPBRoot(root)
        self._configure(unsafeTracebacks, security, maxBrokerRefs, limits, reactor)
        self.connections = 0
        """Connections open now (at most ``limits.maxConnections``)."""

    def buildProtocol(self, addr: Any) -> Broker | None:
        """A server-side broker with this connection's root object published as ``root``;
        None (Twisted then closes the connection) past ``Limits.maxConnections``."""
        if self.connections >= self.limits.maxConnections:
            _log.warn(
                "refused a connection from {addr}: {n} are open (Limits.maxConnections)",
                addr=addr, n=self.connections,
            )
            return None
        broker = self._newBroker(isClient=False)
        self.connections += 1
        broker.setNameForLocal("root", self.root.rootObject(broker))
        return broker

    def clientConnectionMade(self, protocol: Broker) -> None:
        """Nothing to do when a connection is ready (kept for Twisted compatibility)."""

    def brokerDisconnected(self, broker: Broker, reason: Failure) -> None:
        """One of our connections closed: it no longer counts toward the limit."""
        self.connections -= 1


for _cls in (PBClientFactory, PBServerFactory):
    _cls.__module__ = "spread.pb"
del _cls
