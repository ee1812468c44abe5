"""``Broker``: a PB session on a Twisted connection (``twisted.spread.pb.Broker``'s name).

The conversation itself (dispatch, requests, answers, the object tables) is
``spread._session.PBSession``, which does no I/O. This adapter gives it what
only a Twisted connection has: banana framing and dialect negotiation
(``Banana``), the write path, read throttling while our answers pile up
unsent, paging, release scheduling on the reactor it was given, and the
factory's connect/disconnect hooks. Subclasses written for Twisted's
``pb.Broker`` (overriding ``proto_*``, ``connectionReady``, ``connectionLost``,
``expressionReceived`` ...) keep working: every method is still on the broker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread._flow import NO_OWNER, FlowControl
from spread._keepalive import Keepalive, tcpKeepalive
from spread._paging import PagingMixin
from spread._session import PROTOCOL_VERSION, PBSession, SessionState
from spread.banana import Banana
from spread.jelly import globalSecurity
from spread.limits import DEFAULT_LIMITS, Limits

_log = Logger()

__all__ = ["PROTOCOL_VERSION", "Broker", "SessionState"]


def reactorOr(reactor: Any) -> Any:
    """``reactor``, or the global one if None (imported only then: tests pass a Clock)."""
    if reactor is not None:
        return reactor
    global _globalReactor
    if _globalReactor is None:
        # Once imported it is installed for good; every connection asks, so remember it.
        from twisted.internet import reactor as global_reactor

        _globalReactor = global_reactor
    return _globalReactor


_globalReactor: Any = None


_NOT_WATCHING = FlowControl(None, DEFAULT_LIMITS, None, NO_OWNER)
"""The flow control of a broker not connected yet: never paused, watching nothing."""


class Broker(PBSession, PagingMixin, Banana):
    """One PB connection: references, calls, copies and caches in both directions."""

    # A server offers the spread dialect ahead of Twisted's: a Twisted client skips the
    # name it does not know and answers "pb"; a spread client answers "spread".
    knownDialects = [b"spread", b"pb", b"none"]
    _vocabularyDialects = frozenset({b"spread", b"pb"})

    keepaliveInterval: float | None = None
    """Seconds of silence after which we ping the peer (None: never); see spread._keepalive."""
    keepaliveTimeout: float | None = None
    """Seconds a pinged peer has to send anything before it is dropped (None: the interval)."""
    _keepalive: Keepalive | None = None
    # Where a connection starts (class attributes: set on the instance when they change).
    _flow = _NOT_WATCHING  # until our output first waits in Twisted's queue (_queueing)
    _backlog: deque[Any] | None = None  # decoded messages waiting for the peer to read
    _messageTimer: Any = None  # while a message is half received
    _loginTimer: Any = None  # while a login server waits for this peer to log in
    _limitsAfterLogin: Any = None

    def __init__(
        self,
        isClient: bool = True,
        security: Any = globalSecurity,
        *,
        maxBrokerRefs: int | None = None,
        limits: Limits | None = None,
        reactor: Any = None,
    ) -> None:
        Banana.__init__(self, isClient)
        PBSession.__init__(self, security, maxBrokerRefs=maxBrokerRefs, limits=limits)
        self._reactor = reactor

    # -- the session's hooks, on Twisted ----------------------------------------------------

    sendEncoded = Banana.sendEncoded

    def _clock(self) -> Any:
        """The reactor this broker was given, else the global one."""
        self._reactor = reactorOr(self._reactor)
        return self._reactor

    def _scheduleFlush(self, flush: Callable[[], None]) -> None:
        reactor = self._clock()
        # Finalizers may run on any thread; a reactor without threads (task.Clock) has
        # only callLater.
        schedule = getattr(reactor, "callFromThread", None)
        if schedule is not None:
            schedule(flush)
        else:
            reactor.callLater(0, flush)

    def _dropConnection(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.loseConnection()

    # -- connection lifecycle ------------------------------------------------------------

    def _pagingStarts(self) -> None:
        self._flow.detach()

    def _pagingEnded(self) -> None:
        self._flow.attach()

    def connectionReady(self) -> None:
        """Banana chose a dialect: say our version and tell whoever waits for us."""
        self.spreadDialect = self._dialect == b"spread"
        if self.keepaliveInterval:
            self._startKeepalive()
        PBSession.connectionReady(self)
        if self.factory is not None:
            self.factory.clientConnectionMade(self)

    def _queueing(self) -> None:
        # Our output starts to wait in Twisted's queue: watch it from now on (see
        # spread._flow). Only a queue can fill, and only a write fills it: until this first
        # one, everything sent went straight to the socket, so a connection that is never
        # behind (most of a busy server's) never registers a producer at all. Not before the
        # connection is ready either: bytes have crossed both ways by then, so a TLS
        # handshake (which holds writes back while it reads) is over.
        if self._flow is _NOT_WATCHING and self.state is SessionState.READY:
            flow = self._flow = FlowControl(self.transport, self.limits, self._clock(), self)
            if not self.__dict__.get("pageProducers"):
                flow.attach()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail every pending call, stop every observer, notify, and free every table."""
        if self.state is SessionState.CLOSED:
            return
        self._backlog = None
        self._flow.close()
        self._cancel("_messageTimer")
        self._cancel("_loginTimer")
        if self._keepalive is not None:
            self._keepalive.stop()
        PBSession.connectionLost(self, reason)
        self.stopPaging()
        Banana.connectionLost(self, reason)
        lost = getattr(self.factory, "brokerDisconnected", None)
        if lost is not None:
            lost(self, reason)

    def _timeoutClock(self) -> Any:
        return self._clock()

    def _startKeepalive(self) -> None:
        interval = self.keepaliveInterval
        if not interval:
            return
        timeout = self.keepaliveTimeout or interval
        if not self.spreadDialect:  # a Twisted peer has no ping: let TCP probe instead
            tcpKeepalive(self.transport, interval, timeout)
            return
        self._keepalive = Keepalive(
            self._clock(), interval, timeout, lambda: self.sendEncoded([b"ping"]),
            self._silentPeer,
        )
        # Note every read; only connections that keep alive pay for it.
        self.dataReceived = self._dataReceivedNoting  # type: ignore[method-assign]

    def _dataReceivedNoting(self, data: bytes) -> None:
        keepalive = self._keepalive
        if keepalive is not None:
            keepalive.heard()
        Banana.dataReceived(self, data)

    def _silentPeer(self, why: str) -> None:
        _log.warn("dropping a silent peer: {why}", why=why)
        transport: Any = self.transport
        if transport is not None:
            # A frozen peer reads nothing: a graceful close would wait for it for ever.
            abort = getattr(transport, "abortConnection", None)
            (abort or transport.loseConnection)()

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        setattr(self, name, None)
        if timer is not None and timer.active():
            timer.cancel()

    # -- backpressure (see spread._flow) -------------------------------------------------

    def _deliver(self, expressions: list[Any]) -> None:
        """Dispatch what one read decoded, but nothing that may make output (nor what follows
        it) while the peer is not reading; then watch for a message left half received."""
        if self._backlog:
            self._backlog.extend(expressions)
            self._drainBacklog()
        elif len(expressions) == 1 and not self._flow.paused:
            self.expressionReceived(expressions[0])  # the common case: nothing to batch
        elif expressions:
            self._dispatchBatch(expressions)
        if self._decoder.pending:
            if self._messageTimer is None and not self._dropped:
                self._messageTimer = self._clock().callLater(
                    self.limits.messageTimeout, self._messageTimedOut
                )
        elif self._messageTimer is not None:
            self._cancel("_messageTimer")

    def _dispatchBatch(self, expressions: list[Any]) -> None:
        batch = self._beginBatch()
        try:
            for index, expression in enumerate(expressions):
                flow = self._flow  # (made by the first write to wait in the queue, maybe now)
                if flow.paused and _makesOutput(expression):
                    self._backlog = deque(expressions[index:])  # waits for resumeProducing
                    flow.holdInput()
                    return
                if self._dropped or getattr(self.transport, "disconnecting", False):
                    return  # someone dropped the connection; do not act on what followed
                self.expressionReceived(expression)
        finally:
            if batch:
                self._endBatch()

    def _drainBacklog(self) -> None:
        backlog, flow = self._backlog, self._flow  # (a backlog means the flow is watched)
        batch = self._beginBatch()
        try:
            while backlog and not self._dropped:
                if getattr(self.transport, "disconnecting", False):
                    backlog.clear()  # someone dropped the connection; ignore what followed
                    return
                if flow.paused and _makesOutput(backlog[0]):
                    flow.holdInput()
                    return
                self.expressionReceived(backlog.popleft())
        finally:
            if batch:
                self._endBatch()

    def _watchOutput(self, on: bool) -> None:
        self._watchWrites = on

    def _written(self, size: int) -> None:
        self._flow.wrote(size)

    def _abandon(self, why: str) -> None:
        """Drop a peer that stopped reading, without waiting to flush what it will not read."""
        if self._dropped:
            return
        self._dropped = True
        self._backlog = None
        _log.warn("dropping a peer that does not read: {why}", why=why)
        transport: Any = self.transport
        abort = getattr(transport, "abortConnection", None)
        (abort or transport.loseConnection)()

    # -- time limits ----------------------------------------------------------------------

    def _messageTimedOut(self) -> None:
        self._messageTimer = None
        self._dropPeer(
            f"a message stayed incomplete for {self.limits.messageTimeout} s"
            " (Limits.messageTimeout)"
        )

    def awaitLogin(self) -> None:
        """This connection reaches a login desk: small messages and a deadline until login."""
        if self._limitsAfterLogin is not None:
            return
        self._limitsAfterLogin = self.limits
        self.limits = self.limits.beforeLogin()
        self._loginTimer = self._clock().callLater(
            self.limits.loginTimeout, self._loginTimedOut
        )

    def loggedIn(self) -> None:
        """The peer logged in: the factory's limits apply from now on."""
        if self._limitsAfterLogin is not None:
            self.limits, self._limitsAfterLogin = self._limitsAfterLogin, None
        self._cancel("_loginTimer")

    def _loginTimedOut(self) -> None:
        self._loginTimer = None
        self._dropPeer(
            f"the peer did not log in within {self.limits.loginTimeout} s (Limits.loginTimeout)"
        )


# Messages that make no output of their own (a decache's one small uncache aside): they are
# read and handled while our output waits. Everything else (a call, a ping, a cancel, a kind we
# do not know, which is answered didNotUnderstand) is held until the peer reads.
_QUIET = frozenset((
    b"version", b"answer", b"error", b"decref", b"decache", b"uncache", b"pong",
    b"didNotUnderstand",
))


def _makesOutput(expression: object) -> bool:
    """Whether ``expression`` may make output for the peer (a call's answer, say)."""
    if type(expression) is not list or not expression:
        return True
    kind = expression[0]
    return type(kind) is not bytes or kind not in _QUIET
