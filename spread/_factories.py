"""The client and server factories: PB connections made by endpoints or ``reactor.connect*``."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread import _login  # also registers the adapter that serves a cred portal as a root
from spread._failures import failureOf
from spread._protocol import Broker, reactorOr
from spread._remote import RemoteReference
from spread.flavors import IPBRoot
from spread.jelly import globalSecurity
from spread.limits import Limits, withBrokerRefs

_log = Logger()


class _BrokerMaker:
    """What both factories give each broker they build: security, limits and a reactor."""

    protocol: Any = Broker
    unsafeTracebacks: Any = False
    keepaliveInterval: float | None = None
    keepaliveTimeout: float | None = None
    callTimeout: float | None = None

    def _configure(
        self, unsafeTracebacks: Any, security: Any, maxBrokerRefs: int | None,
        limits: Limits | None, reactor: Any,
    ) -> None:
        self.unsafeTracebacks = unsafeTracebacks
        self.security = security
        self.limits = withBrokerRefs(limits, maxBrokerRefs)
        self.maxBrokerRefs = self.limits.maxBrokerRefs
        self.reactor = reactor  # what the brokers schedule on; None: the global one, found late

    def _timings(
        self, interval: float | None, timeout: float | None, callTimeout: float | None
    ) -> None:
        for name, value in (
            ("keepaliveInterval", interval), ("keepaliveTimeout", timeout),
            ("callTimeout", callTimeout),
        ):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds or None, "
                                 f"not {value!r}")  # fmt: skip
        self.keepaliveInterval, self.keepaliveTimeout = interval, timeout
        self.callTimeout = callTimeout

    def _newBroker(self, isClient: bool) -> Broker:
        broker: Broker = self.protocol(
            isClient=isClient, security=self.security, limits=self.limits, reactor=self.reactor
        )
        broker.factory = self
        if self.keepaliveInterval is not None:
            broker.keepaliveInterval = self.keepaliveInterval
            broker.keepaliveTimeout = self.keepaliveTimeout
        if self.callTimeout is not None:
            broker.callTimeout = self.callTimeout
        return broker


HANDSHAKE_TIMEOUT = 30.0
"""Seconds from the start of a connection attempt to a ready PB connection, by default.

The TCP connect itself has the same default in Twisted (``connectTCP(timeout=30)``); a server
that accepts and then never speaks PB would otherwise leave ``getRootObject()`` waiting for
ever."""


class PBClientFactory(_BrokerMaker, protocol.ClientFactory):
    """Connects to a PB server; ``getRootObject()`` gives the server's root reference.

    Use it with any client endpoint (``endpoint.connect(factory)``) or
    ``reactor.connectTCP``. ``getRootObject`` may be called before or after
    the connection is made, and its Deferred always fires: with the root, or
    with why there is none (the connection was refused or lost, or no PB
    answer came within ``handshakeTimeout`` seconds; None waits for ever).
    After a failed attempt, ``getRootObject`` fails at once with the same
    reason until a new attempt starts. ``reactor=`` is what its brokers and
    timers use (the global reactor if not given; a ``task.Clock`` in tests).
    """

    _connecting: Broker | None = None  # built, not ready yet
    _attempts = 0  # connection attempts under way (doStart without doStop yet)
    _built = False  # whether the latest attempt got as far as a connection

    def __init__(
        self, unsafeTracebacks: Any = False, security: Any = globalSecurity,
        maxBrokerRefs: int | None = None, limits: Limits | None = None, *, reactor: Any = None,
        handshakeTimeout: float | None = HANDSHAKE_TIMEOUT,
        keepaliveInterval: float | None = None, keepaliveTimeout: float | None = None,
        callTimeout: float | None = None,
    ) -> None:
        self._configure(unsafeTracebacks, security, maxBrokerRefs, limits, reactor)
        self._timings(keepaliveInterval, keepaliveTimeout, callTimeout)
        self.handshakeTimeout = handshakeTimeout
        self._failure: Failure | None = None  # how the last attempt ended, until a new one
        self._timer: Any = None
        self._destination: Any = None
        self._reset()

    def buildProtocol(self, addr: Any) -> Broker:
        """A client-side broker using this factory's security options, limits and reactor."""
        if addr is not None:
            self._destination = addr
        self._built = True
        broker = self._connecting = self._newBroker(isClient=True)
        return broker

    def _reset(self) -> None:
        self.rootObjectRequests: list[defer.Deferred[RemoteReference]] = []
        self._broker: Broker | None = None
        self._root: RemoteReference | None = None
        self._connecting = None

    def _failAll(self, reason: Failure) -> None:
        waiting = self.rootObjectRequests
        self._reset()
        for d in waiting:
            d.errback(reason)

    # -- the attempt: started, then ready or ended ---------------------------------------

    def doStart(self) -> None:
        """A connection attempt starts (``connectTCP``, an endpoint, ``ClientService``)."""
        super().doStart()  # type: ignore[no-untyped-call]
        self._attempts += 1
        self._built = False
        self._failure = None
        if self.handshakeTimeout is not None and self._timer is None:
            clock = reactorOr(self.reactor)
            self._timer = clock.callLater(self.handshakeTimeout, self._timedOut)

    def doStop(self) -> None:
        """An attempt ended; if it never made a PB connection, say so to everyone waiting."""
        super().doStop()  # type: ignore[no-untyped-call]
        self._attempts -= 1
        if self._attempts == 0 and not self._built and self._failure is None:
            # Endpoints tell a factory nothing else when their connection fails: the
            # reason went to the endpoint's own Deferred.
            refused = error.ConnectError(  # type: ignore[no-untyped-call]
                string="the connection attempt failed before PB connected "
                "(the endpoint's Deferred has the reason)"
            )
            self._ended(failureOf(refused))

    def startedConnecting(self, connector: Any) -> None:
        """``reactor.connect*`` started: remember where to, for error messages."""
        self._destination = connector.getDestination()

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """The connection attempt failed: so does every ``getRootObject`` waiting for it."""
        self._ended(reason)

    def clientConnectionLost(self, connector: Any, reason: Failure, reconnecting: int = 0) -> None:
        """Reconnecting subclasses pass ``reconnecting=1`` to keep waiting requests."""
        self._lost(reason, bool(reconnecting))

    def brokerDisconnected(self, broker: Broker, reason: Failure) -> None:
        """A broker of ours closed (however it was connected; endpoint connections get no
        ``clientConnectionLost``, so this is how we learn)."""
        if broker is self._broker or broker is self._connecting:
            self._lost(reason, False)

    def _lost(self, reason: Failure, reconnecting: bool) -> None:
        if self._connecting is not None and not reconnecting:
            self._ended(reason)  # it closed before PB was ready: that attempt failed
            return
        # A ready connection ended: later calls wait for the next one (a ClientService or a
        # reconnecting factory makes it); calls already waiting, if any, fail.
        self._broker = self._connecting = None
        self._root = None
        if not reconnecting:
            self._failAll(reason)

    def clientConnectionMade(self, broker: Broker) -> None:
        """The broker is ready: hand the root reference to everyone waiting."""
        self._cancelTimer()
        self._broker = broker
        self._connecting = None
        self._root = broker.remoteForName("root")
        waiting, self.rootObjectRequests = self.rootObjectRequests, []
        for d in waiting:
            d.callback(self._root)

    def _ended(self, reason: Failure) -> None:
        self._cancelTimer()
        if not getattr(self, "continueTrying", False):  # a ReconnectingClientFactory tries again
            self._failure = reason
            self._failAll(reason)
        else:
            self._broker = self._connecting = None
            self._root = None

    def _timedOut(self) -> None:
        self._timer = None
        where = _describe(self._destination)
        silent = error.TimeoutError(  # type: ignore[no-untyped-call]
            string=f"no PB answer from {where} within {self.handshakeTimeout} s"
        )
        reason = failureOf(silent)
        broker = self._connecting
        self._ended(reason)
        if broker is not None and broker.transport is not None:
            broker.transport.abortConnection()

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # -- what users call ------------------------------------------------------------------

    def getRootObject(self) -> defer.Deferred[RemoteReference]:
        """A Deferred firing with a reference to the server's root object (or why not)."""
        if self._broker is not None and not self._broker.disconnected and self._root is not None:
            return defer.succeed(self._root)
        if self._failure is not None:
            return defer.fail(self._failure)
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


def _describe(destination: Any) -> str:
    host, port = getattr(destination, "host", None), getattr(destination, "port", None)
    if host is not None and port is not None:
        return f"{host}:{port}"
    name = getattr(destination, "name", None)  # a UNIX socket's path
    return str(name) if name is not None else "the server"


class PBServerFactory(_BrokerMaker, protocol.ServerFactory):
    """Serves ``root`` (anything providing or adaptable to ``IPBRoot``, such as a
    ``Root`` or, with login, a ``twisted.cred`` portal) on every connection.

    ``reactor=`` is what its brokers schedule work on (the global reactor if not given).
    """

    def __init__(
        self, root: Any, unsafeTracebacks: Any = False, security: Any = globalSecurity,
        maxBrokerRefs: int | None = None, limits: Limits | None = None, *, reactor: Any = None,
        keepaliveInterval: float | None = None, keepaliveTimeout: float | None = None,
        callTimeout: float | None = None,
    ) -> None:
        self.root: Any = IPBRoot(root)
        self._configure(unsafeTracebacks, security, maxBrokerRefs, limits, reactor)
        self._timings(keepaliveInterval, keepaliveTimeout, callTimeout)
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
        root = self.root.rootObject(broker)
        if type(broker).setNameForLocal is _SET_NAME:
            broker._names = {b"root": root}  # what it would do, on a broker with no names yet
        else:
            broker.setNameForLocal("root", root)  # a subclass watching its names sees this one
        return broker

    def clientConnectionMade(self, protocol: Broker) -> None:
        """Nothing to do when a connection is ready (kept for Twisted compatibility)."""

    def brokerDisconnected(self, broker: Broker, reason: Failure) -> None:
        """One of our connections closed: it no longer counts toward the limit."""
        self.connections -= 1


_SET_NAME = Broker.setNameForLocal


for _cls in (PBClientFactory, PBServerFactory):
    _cls.__module__ = "spread.pb"
del _cls
