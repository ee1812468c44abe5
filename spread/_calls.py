"""What a proxy needs from the connection it speaks through, as a typed interface.

``RemoteReference`` (``spread._remote``) and ``RemoteCacheObserver``
(``spread.flavors``) sit below the PB session that creates them, so they name
it only through ``CallSender``: the session (and so every ``Broker``) is one.
This module imports nothing of spread's, which is what keeps the proxies and
the session out of each other's imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer


class CallSender(Protocol):
    """One PB conversation, as seen by the proxies of the peer's objects."""

    @property
    def disconnected(self) -> int:
        """1 once the connection has closed (Twisted's flag), else 0."""

    def sendRemoteCall(
        self, prefix: bytes, perspective: Any, objectID: Any, message: bytes,
        args: tuple[Any, ...], kw: dict[str, Any], quiet: bool = False,
        shared: dict[Any, Any] | None = None,
    ) -> defer.Deferred[Any]:
        """Send ``[prefix + message, ...]`` and return the Deferred of its answer.

        Raises ``DeadReferenceError`` on a closed connection and ``BananaError`` for a
        message too large to send, as Twisted's broker does; ``quiet`` calls never raise.
        """

    def cachedRemotelyAs(self, instance: Any, incref: Any = 0) -> int | None:
        """The id the peer knows our ``Cacheable`` ``instance`` by, or None."""

    def notifyOnDisconnect(self, notifier: Callable[[], object]) -> None:
        """Call ``notifier()`` once when the connection closes."""

    def dontNotifyOnDisconnect(self, notifier: Callable[[], object]) -> None:
        """Forget a ``notifyOnDisconnect`` callback."""


def quietFailure(error: BaseException) -> defer.Deferred[Any]:
    """A failed Deferred that is not reported if nobody looks at it.

    For calls whose callers may rightly ignore failure, such as a
    ``Cacheable`` updating an observer whose peer has just left.
    """
    d: defer.Deferred[Any] = defer.fail(error)
    silence(d)
    return d


def silence(d: defer.Deferred[Any]) -> None:
    """Mark ``d``'s failure as consumed, so it is not logged as unhandled when collected."""
    # Deferred reports a failure left at the end of its chain when collected; clearing the
    # record is how Twisted itself marks one as consumed.
    info = getattr(d, "_debugInfo", None)
    if info is not None:
        info.failResult = None
