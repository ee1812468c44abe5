"""How much one peer may make a PB server hold: named limits, per connection, set on the factory.

Twisted PB has one global string limit and one global reference limit. A server facing the
network needs each resource a peer can make it spend to be bounded on its own, per connection,
so one misbehaving client costs at most these amounts and never affects the others::

    from spread import pb
    from spread.limits import Limits

    factory = pb.PBServerFactory(root, limits=Limits(maxPendingCalls=50))

Every field has a default that suits an ordinary service; raise one only when you know why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from spread._banana_codec import MAX_DEPTH, MAX_MESSAGE_SIZE, SIZE_LIMIT
from spread._broker import MAX_BROKER_REFS

__all__ = [
    "DEFAULT_LIMITS",
    "LOGIN_TIMEOUT",
    "MAX_BROKER_REFS",
    "MAX_BUFFERED_OUTPUT",
    "MAX_CACHED_OBJECTS",
    "MAX_CONNECTIONS",
    "MAX_DEPTH",
    "MAX_IMPORTED_CACHES",
    "MAX_MESSAGE_SIZE",
    "MAX_MESSAGE_SIZE_BEFORE_LOGIN",
    "MAX_PENDING_CALLS",
    "MAX_QUEUED_OUTPUT",
    "MESSAGE_TIMEOUT",
    "SIZE_LIMIT",
    "WRITE_TIMEOUT",
    "Limits",
    "withBrokerRefs",
]

MAX_PENDING_CALLS = 1000
"""Calls from one peer that may be running at once before new ones are refused.

A peer that floods calls faster than they finish would otherwise queue unbounded work; past the
limit each further call fails at its caller with an error saying so, and the connection stays up.
"""

MAX_CACHED_OBJECTS = MAX_BROKER_REFS
"""Cacheable masters one peer may observe at once (each costs an observer and its state)."""

MAX_QUEUED_OUTPUT = 64 * 1024
"""Unsent bytes at which we stop reading a peer's calls and running them, until it reads.

Twisted's own write-buffer threshold (``FileDescriptor.bufferSize``), kept: node's streams
default to 16 KiB, asyncio's transports to 64 KiB."""

MAX_BUFFERED_OUTPUT = 16 * 1024 * 1024
"""Bytes we may write to a peer that has stopped reading before we drop it (one large answer
fits; a master's updates to an observer that never reads do not pile up without end)."""

WRITE_TIMEOUT = 60.0
"""Seconds a peer may leave our output unread before we drop it (nginx's send_timeout is 60 s)."""

MESSAGE_TIMEOUT = 120.0
"""Seconds a message may stay half received: 16 MiB at 140 KB/s, and no longer."""

MAX_MESSAGE_SIZE_BEFORE_LOGIN = 64 * 1024
"""Bytes in one message on a login server before the peer has logged in (a login takes a few
hundred; nginx's default request-header buffers total 32 KiB)."""

LOGIN_TIMEOUT = 30.0
"""Seconds a connection to a login server may stay without logging in (OpenSSH's
LoginGraceTime is 120 s for a human typing a password; PB logs in programmatically)."""

MAX_IMPORTED_CACHES = MAX_BROKER_REFS
"""Replicas of the peer's ``Cacheable`` masters we keep at once (each holds its state)."""

MAX_CONNECTIONS = 10_000
"""Connections one server factory serves at once; more are closed as they arrive."""


@dataclass(frozen=True)
class Limits:
    """The bounds one connection lives within. Immutable; derive variants with ``replace``."""

    maxMessageSize: int = MAX_MESSAGE_SIZE
    """Bytes in one top-level message; more drops the connection."""

    maxStringSize: int = SIZE_LIMIT
    """Bytes in one string and items in one list (banana's limit; Twisted peers use 640 KiB)."""

    maxDepth: int = MAX_DEPTH
    """Nesting depth of one message; deeper drops the connection."""

    maxPendingCalls: int = MAX_PENDING_CALLS
    """Incoming calls running at once; more are answered with an error."""

    maxBrokerRefs: int = MAX_BROKER_REFS
    """Local objects the peer may hold references to; more fail the call that exports them."""

    maxCachedObjects: int = MAX_CACHED_OBJECTS
    """Cacheable masters the peer may observe; more fail the call that sends them."""

    maxImportedCaches: int = MAX_IMPORTED_CACHES
    """Replicas of the peer's masters we hold; a message bringing one more is refused."""

    maxQueuedOutput: int = MAX_QUEUED_OUTPUT
    """Unsent bytes at which we stop reading and running the peer's calls until it reads."""

    maxBufferedOutput: int = MAX_BUFFERED_OUTPUT
    """Bytes written to a peer that is not reading before it is dropped (counted from the
    reactor turn after the one that filled the queue, so a burst fired at once is not)."""

    writeTimeout: float = WRITE_TIMEOUT
    """Seconds a peer may leave our output unread before it is dropped."""

    messageTimeout: float = MESSAGE_TIMEOUT
    """Seconds a message may stay half received before the peer is dropped."""

    maxMessageSizeBeforeLogin: int = MAX_MESSAGE_SIZE_BEFORE_LOGIN
    """``maxMessageSize`` on a login server until the peer has logged in."""

    loginTimeout: float = LOGIN_TIMEOUT
    """Seconds a peer of a login server may stay connected without logging in."""

    maxConnections: int = MAX_CONNECTIONS
    """Connections one server factory serves at once (a per-factory limit)."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            kinds = (int, float) if isinstance(getattr(Limits, name), float) else (int,)
            if not isinstance(value, kinds) or isinstance(value, bool) or not value > 0:
                kind = "number" if float in kinds else "int"
                raise ValueError(f"Limits.{name} must be a positive {kind}, not {value!r}")

    def replace(self, **changes: Any) -> Limits:
        """Return a copy with some limits changed, e.g. ``limits.replace(maxDepth=50)``."""
        return replace(self, **changes)

    def beforeLogin(self) -> Limits:
        """These limits as they apply until the peer logs in (``maxMessageSizeBeforeLogin``).

        Worked out once per distinct ``Limits``, not per connection: every connection to a
        login server needs them.
        """
        return _beforeLogin(self)


@lru_cache(maxsize=64)
def _beforeLogin(limits: Limits) -> Limits:
    return limits.replace(
        maxMessageSize=min(limits.maxMessageSize, limits.maxMessageSizeBeforeLogin)
    )


DEFAULT_LIMITS = Limits()
"""The defaults, shared: a ``Limits`` never changes, so every connection may hold this one."""


def withBrokerRefs(limits: Limits | None, maxBrokerRefs: int | None) -> Limits:
    """``limits`` (the defaults if None) with Twisted's older ``maxBrokerRefs`` knob, if given."""
    chosen = DEFAULT_LIMITS if limits is None else limits
    return chosen if maxBrokerRefs is None else chosen.replace(maxBrokerRefs=maxBrokerRefs)
