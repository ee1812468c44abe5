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

from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from spread._paging import PagingMixin
from spread._session import PROTOCOL_VERSION, PBSession, SessionState
from spread.banana import Banana
from spread.jelly import globalSecurity
from spread.limits import Limits

__all__ = ["PROTOCOL_VERSION", "Broker", "ReadThrottle", "SessionState"]


class ReadThrottle:
    """Stops reading from a peer while our answers to it are piling up unsent.

    A peer that sends calls but never reads the answers would otherwise make us
    buffer answers without bound. Registered as the transport's streaming
    producer, the transport tells us when its write buffer is full; we then stop
    reading that peer's calls until the buffer drains. Other connections are not
    affected. (Paging takes the transport's producer slot while it runs.)
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.reader = _reader(transport)
        self.attached = False
        self.paused = False

    def attach(self) -> None:
        # On the socket itself, below any TLS layer: TLS would otherwise hold its close
        # back until we unregister, and a producer never needs to see decrypted bytes.
        reader = self.reader
        if reader is None or self.attached or not hasattr(reader, "registerProducer"):
            return
        try:
            reader.registerProducer(self, True)
        except RuntimeError:  # another producer holds the slot; go without
            return
        self.attached = True

    def detach(self) -> None:
        if not self.attached:
            return
        self.attached = False
        self.reader.unregisterProducer()
        if self.paused:
            self.paused = False
            self.reader.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        self.reader.pauseProducing()

    def resumeProducing(self) -> None:
        if getattr(self.reader, "disconnecting", False):
            # Closing: the socket finishes its close only once no producer is registered.
            self.paused = False
            self.detach()
            return
        self.paused = False
        self.reader.resumeProducing()

    def stopProducing(self) -> None:
        """The connection is closing; nothing of ours to stop."""


def _reader(transport: Any) -> Any:
    """The socket under ``transport`` (itself, or what a TLS wrapper sits on), if it can pause."""
    for _ in range(8):
        below = getattr(transport, "transport", None)
        if below is None:
            break
        transport = below
    return transport if hasattr(transport, "pauseProducing") else None


class Broker(PBSession, PagingMixin, Banana):
    """One PB connection: references, calls, copies and caches in both directions."""

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
        PagingMixin.__init__(self)
        self._throttle = ReadThrottle(None)
        self._reactor = reactor

    # -- the session's hooks, on Twisted ----------------------------------------------------

    sendEncoded = Banana.sendEncoded

    def _scheduleFlush(self, flush: Callable[[], None]) -> None:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
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
        self._throttle.detach()

    def _pagingEnded(self) -> None:
        self._throttle.attach()

    def connectionReady(self) -> None:
        """Banana chose a dialect: say our version and tell whoever waits for us."""
        # Watch our outgoing buffer from now on, not before: bytes have crossed both ways, so
        # a TLS handshake (which holds writes back while it reads) is over.
        self._throttle = ReadThrottle(self.transport)
        if not self.pageProducers:
            self._throttle.attach()
        PBSession.connectionReady(self)
        if self.factory is not None:
            self.factory.clientConnectionMade(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail every pending call, stop every observer, notify, and free every table."""
        if self.state is SessionState.CLOSED:
            return
        PBSession.connectionLost(self, reason)
        self.stopPaging()
        Banana.connectionLost(self, reason)
        lost = getattr(self.factory, "brokerDisconnected", None)
        if lost is not None:
            lost(self, reason)
