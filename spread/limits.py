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

from spread._banana_codec import MAX_DEPTH, MAX_MESSAGE_SIZE, SIZE_LIMIT
from spread._broker import MAX_BROKER_REFS

__all__ = [
    "MAX_BROKER_REFS",
    "MAX_CACHED_OBJECTS",
    "MAX_DEPTH",
    "MAX_MESSAGE_SIZE",
    "MAX_PENDING_CALLS",
    "SIZE_LIMIT",
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

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {value!r}")

    def replace(self, **changes: int) -> Limits:
        """Return a copy with some limits changed, e.g. ``limits.replace(maxDepth=50)``."""
        return replace(self, **changes)


def withBrokerRefs(limits: Limits | None, maxBrokerRefs: int | None) -> Limits:
    """``limits`` (``Limits()`` if None) with Twisted's older ``maxBrokerRefs`` knob, if given."""
    chosen = Limits() if limits is None else limits
    return chosen if maxBrokerRefs is None else chosen.replace(maxBrokerRefs=maxBrokerRefs)
