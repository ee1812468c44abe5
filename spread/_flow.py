"""Backpressure for one PB connection on Twisted: stop acting on a peer that does not read.

A peer can send calls whose answers are much larger than the calls (67 KB of calls, 1 GB of
answers) and never read them. Pausing the socket's reading is not enough: every call already
decoded from the last read would still run and queue its answer. So ``FlowControl``, registered
as the socket's streaming producer, tells the broker when the transport's buffer passes
``Limits.maxQueuedOutput``. From then on, the first message from the peer that may make output
(a call, a ping, anything but answers, errors and releases) stops *dispatching* (it and
everything decoded after it wait in a backlog, in order) as well as reading, and both resume
when the peer has read enough. Until such a message comes, reading goes on: answers make no
output, and a peer that is itself waiting for us to read (a client that sent large calls, whose
answers fill our queue) must not wait for ever for us while we wait for it.

The broker makes and registers its ``FlowControl`` just before the first of its writes that has
to wait in Twisted's queue (``Broker._queueing``). Twisted pauses a producer only on such a
write, and until then everything went straight to the socket: a connection that is never
behind (most of a busy server's) costs no producer at all.

A peer that stays behind is dropped: after ``Limits.writeTimeout`` seconds without draining,
or once more than ``Limits.maxBufferedOutput`` bytes have been written while it was behind
(writes that do not come from its own calls, such as a ``Cacheable`` master's updates; counted
from the reactor turn after the one that filled the queue, so that a burst our own code fires
at once is sent, as by Twisted).
"""

from __future__ import annotations

from typing import Any, Protocol

from spread.limits import Limits


class FlowOwner(Protocol):
    """What flow control tells the broker (see ``spread._protocol.Broker``)."""

    def _drainBacklog(self) -> None:
        """The peer read enough: dispatch what waited."""

    def _abandon(self, why: str) -> None:
        """The peer stays behind: drop it."""

    def _watchOutput(self, on: bool) -> None:
        """While True, report every write's size to ``FlowControl.wrote``."""


class FlowControl:
    """The socket's producer: pauses reading and dispatch while our output piles up unsent.

    It holds its broker rather than three of its bound methods: one object per connection
    instead of four, for the garbage collector to walk (see ``spread._serialize``).
    """

    __slots__ = (
        "_timer", "attached", "bufferedWhilePaused", "clock", "holding", "limits", "owner",
        "paused", "reader", "settling",
    )

    def __init__(self, transport: Any, limits: Limits, clock: Any, owner: FlowOwner) -> None:
        self.reader = _reader(transport)
        self.limits = limits
        self.clock = clock
        self.owner: FlowOwner = owner
        self.attached = False
        self.paused = False
        self.holding = False  # whether the socket's reading is paused (see holdInput)
        self.settling = False  # paused in this reactor turn: writes do not count yet
        self.bufferedWhilePaused = 0
        self._timer: Any = None

    def attach(self) -> None:
        """Watch the socket's outgoing buffer (a no-op where the transport cannot tell us)."""
        # On the socket itself, below any TLS layer: TLS would otherwise hold its close
        # back until we unregister, and a producer never needs to see decrypted bytes.
        reader = self.reader
        if reader is None or self.attached or not hasattr(reader, "registerProducer"):
            return
        if hasattr(reader, "bufferSize"):  # FileDescriptor's threshold for pausing us
            reader.bufferSize = self.limits.maxQueuedOutput
        try:
            reader.registerProducer(self, True)
        except RuntimeError:  # another producer holds the slot; go without
            return
        self.attached = True

    def detach(self) -> None:
        """Stop watching (paging takes the producer slot, or the connection closes)."""
        self._cancelTimer()
        if not self.attached:
            return
        self.attached = False
        self.reader.unregisterProducer()
        if self.paused:
            self.paused = False
            self.owner._watchOutput(False)
            self._release()
            self.owner._drainBacklog()

    def close(self) -> None:
        """Detach and forget the broker (it would keep it in a cycle)."""
        self.detach()
        self.owner = NO_OWNER
        self.clock = None

    def pauseProducing(self) -> None:
        """The transport's buffer is full: hold what would make output and start the write timeout.

        Twisted says so again at every write past its threshold; only the first time counts.
        What is written in the turn that filled the buffer (a burst our own code fired at
        once, which the peer had no chance to read yet) does not count toward
        ``maxBufferedOutput``: what is written on later turns, while the peer has not read
        the buffer down, does.
        """
        if self.paused:
            return
        self.paused = True
        self.bufferedWhilePaused = 0
        self.owner._watchOutput(True)
        if self.clock is not None:
            self.settling = True
            self.clock.callLater(0, self._settled)
            if self._timer is None:
                self._timer = self.clock.callLater(self.limits.writeTimeout, self._timedOut)

    def _settled(self) -> None:
        self.settling = False

    def holdInput(self) -> None:
        """A message that may make output waits for the peer to read: read nothing more
        until then."""
        if self.paused and not self.holding:
            self.holding = True
            self.reader.pauseProducing()

    def _release(self) -> None:
        if self.holding:
            self.holding = False
            self.reader.resumeProducing()

    def resumeProducing(self) -> None:
        """The peer read enough: run what waited, then read again (unless that filled us up)."""
        self._cancelTimer()
        if getattr(self.reader, "disconnecting", False):
            # Closing: the socket finishes its close only once no producer is registered.
            self.paused = False
            self.owner._watchOutput(False)
            self.detach()
            return
        self.paused = False
        self.owner._watchOutput(False)
        self._release()  # reads come on later turns; a message left waiting holds them again
        self.owner._drainBacklog()

    def stopProducing(self) -> None:
        """The connection is closing."""
        self._cancelTimer()

    def wrote(self, size: int) -> None:
        """Count bytes written while paused; too many means the peer is not reading at all."""
        if self.settling:
            return
        self.bufferedWhilePaused += size
        if self.bufferedWhilePaused > self.limits.maxBufferedOutput:
            self.owner._abandon(
                f"more than {self.limits.maxBufferedOutput} bytes are waiting for a peer that "
                "does not read them (Limits.maxBufferedOutput)"
            )

    def _timedOut(self) -> None:
        self._timer = None
        if self.paused:
            self.owner._abandon(
                f"the peer read none of our output for {self.limits.writeTimeout} s "
                "(Limits.writeTimeout)"
            )

    def _cancelTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None


class _NoOwner:
    """The owner of a closed connection's flow control: hears nothing."""

    def _drainBacklog(self) -> None:
        pass

    def _abandon(self, why: str) -> None:
        pass

    def _watchOutput(self, on: bool) -> None:
        pass


NO_OWNER = _NoOwner()


def _reader(transport: Any) -> Any:
    """The socket under ``transport`` (itself, or what a TLS wrapper sits on), if it can pause."""
    for _ in range(8):
        below = getattr(transport, "transport", None)
        if below is None:
            break
        transport = below
    return transport if hasattr(transport, "pauseProducing") else None
