"""Noticing a peer that went silent: pings in the spread dialect, TCP keepalive otherwise.

TCP alone may take hours to notice a peer whose process froze or whose network path dropped
silently, and until then every call waiting on it waits too. With ``keepaliveInterval`` set on
a factory, a connection that has heard nothing for that long sends a ping (``[b"ping"]``, which a
spread peer's reactor answers with ``[b"pong"]``); if nothing at all then arrives within
``keepaliveTimeout``, the connection is dropped, which fails the waiting calls with
``PBConnectionLost`` as any other disconnect does. Any traffic counts as life: a peer busy with
a long call still answers pings from its reactor, and one that sends anything is alive.

A Twisted peer has no ping; for it the socket's own TCP keepalive is turned on with the same
timings, where the platform lets us set them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any


class Keepalive:
    """The timer of one connection: ``heard()`` on every read; pings, then drops, a silent peer."""

    def __init__(
        self, clock: Any, interval: float, timeout: float,
        ping: Callable[[], None], drop: Callable[[str], None],
    ) -> None:
        self._clock = clock
        self.interval = interval
        self.timeout = timeout
        self._ping = ping
        self._drop = drop
        self._heard = clock.seconds()
        self._pinged: float | None = None
        self._timer: Any = clock.callLater(interval, self._check)

    def heard(self) -> None:
        """Something arrived from the peer."""
        self._heard = self._clock.seconds()

    def stop(self) -> None:
        """The connection has closed."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _check(self) -> None:
        now = self._clock.seconds()
        if self._pinged is not None and self._heard < self._pinged:
            self._timer = None
            self._drop(f"no answer to a ping within {self.timeout:g} s (keepaliveTimeout)")
            return
        self._pinged = None
        quiet = now - self._heard
        if quiet < self.interval:
            self._timer = self._clock.callLater(self.interval - quiet, self._check)
            return
        self._pinged = now
        self._ping()
        self._timer = self._clock.callLater(self.timeout, self._check)


def tcpKeepalive(transport: Any, interval: float, timeout: float) -> bool:
    """Turn on the socket's TCP keepalive with these timings; False if it is not TCP."""
    setter = getattr(transport, "setTcpKeepAlive", None)
    if setter is None:
        return False
    setter(1)
    handle = getattr(transport, "getHandle", None)
    sock = handle() if handle is not None else None
    if isinstance(sock, socket.socket):
        probes = 3
        for name, value in (
            ("TCP_KEEPIDLE", interval),
            ("TCP_KEEPINTVL", max(timeout / probes, 1.0)),
            ("TCP_KEEPCNT", probes),
        ):
            option = getattr(socket, name, None)
            if option is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, option, max(int(value), 1))
    return True
