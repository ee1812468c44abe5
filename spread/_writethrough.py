"""Send at once on an idle plain TCP socket, instead of on the reactor's next turn.

Twisted's TCP transport queues every ``write`` and sends it only when a later
reactor turn reports the socket writable: per message that is an extra turn of
the reactor loop and two ``epoll_ctl`` calls to switch write interest on and off.
For request/response traffic this is most of the latency PB adds over the
network itself. So when nothing is queued, we hand the bytes straight to the
transport's own ``writeSomeData`` (what its next turn would have called) and
queue only what the kernel did not take. asyncio's transports work the same way.

It applies only where it is certain to be equivalent: a Twisted release it was verified on
(``VERIFIED_TWISTED``), and the transport is Twisted's
plain TCP connection (not TLS, not a subclass with its own writing), connected,
not closing, with an empty queue and no pull producer waiting on it. Anything
else takes ``transport.write``.
"""

from __future__ import annotations

from typing import Any

import twisted
from twisted.internet import tcp

_ATTRIBUTES = ("TLS", "connected", "disconnecting", "_writeDisconnecting", "_tempDataBuffer",
               "dataBuffer", "offset", "producer", "streamingProducer")  # fmt: skip
_INSTANCE = tuple(name for name in _ATTRIBUTES if not hasattr(tcp.Connection, name))
# (those that Twisted's class does not provide itself: checked on each transport)


VERIFIED_TWISTED = ((26, 10), (26, 10))
"""The Twisted releases (first and last, year and month) whose private TCP fields
``writeThrough`` was checked against; on any other, messages take ``transport.write``."""


def _release(version: str) -> tuple[int, int]:
    try:
        year, month = version.split(".")[:2]
        return int(year), int(month)
    except ValueError:  # a development build with another shape: not verified
        return (0, 0)


_VERIFIED = VERIFIED_TWISTED[0] <= _release(twisted.__version__) <= VERIFIED_TWISTED[1]


def canWriteThrough(transport: object) -> bool:
    """Whether ``transport`` is a plain Twisted TCP connection that ``writeThrough`` may use."""
    kind: Any = type(transport)
    plain = _PLAIN.get(kind)
    if plain is None:
        plain = _PLAIN[kind] = (
            issubclass(kind, tcp.Connection)
            and kind.write is tcp.Connection.write
            and kind.writeSomeData is tcp.Connection.writeSomeData
        )
    if not (_VERIFIED and plain):
        return False
    for name in _INSTANCE:  # noqa: SIM110 - a loop is half the cost of all(), once a connection
        if not hasattr(transport, name):
            return False
    return True


_PLAIN: dict[type, bool] = {}
"""Transport classes seen, and whether they write as Twisted's TCP connection does."""


def writeThrough(transport: Any, data: bytes) -> bytes:
    """Send ``data`` now if ``transport`` (see ``canWriteThrough``) has nothing queued; return
    what it did not send (all of it, some, or ``b""``), for the caller to ``transport.write``."""
    if (
        transport.TLS
        or transport._tempDataBuffer
        or transport.offset != len(transport.dataBuffer)
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnecting
        or (transport.producer is not None and not transport.streamingProducer)
    ):
        # (A pull producer, such as a pager, is asked for more only from the queue's drain.)
        return data
    # writeSomeData sends at most SEND_LIMIT (128 KiB) a call. A large message is offered
    # piece by piece while the kernel takes it, so it is not copied into the queue, and its
    # rest is queued (copied once) only when the socket is full.
    size = len(data)
    sent = transport.writeSomeData(data)
    if isinstance(sent, Exception):
        return data  # queued, the reactor's next turn meets the same error and closes
    if sent < size and sent:
        view = memoryview(data)
        while sent < size:
            more = transport.writeSomeData(view[sent:])
            if isinstance(more, Exception) or not more:
                break  # the queue's turn meets the same error, or waits for room
            sent += more
    return data[sent:] if sent else data
