"""The classes the Twisted interop peers send and receive, written against twisted.spread.

tests/test_interop.py's spread side has the mirror image in spread_types.py. Jelly names a
copied object by its sender's module and class, so each side registers the *other* side's name
for its RemoteCopy: "spread_types.Pond" arrives here as a PondCopy, and "twisted_types.Pond"
arrives there as theirs. Stranger is registered nowhere, so every receiver must refuse it.
"""

from __future__ import annotations

from typing import Any

from twisted.spread import pb


class PeerError(pb.Error):
    """The pb.Error the peers raise on request; the caller should see its name and message."""


class Pond(pb.Copyable):
    """A pond that sends a reduced state (the total only), as in the seed's pb-copy2 example."""

    def __init__(self, frogs: int, toads: int) -> None:
        self.frogs = frogs
        self.toads = toads

    def getStateToCopy(self) -> dict[str, Any]:
        return {"frogsAndToads": self.frogs + self.toads, "origin": "twisted"}


class PondCopy(pb.RemoteCopy):
    """What a Pond from the other side becomes here."""

    frogsAndToads: int
    origin: str

    def setCopyableState(self, state: dict[str, Any]) -> None:
        self.frogsAndToads = state["frogsAndToads"]
        self.origin = state["origin"]

    def count(self) -> int:
        return self.frogsAndToads

    def __repr__(self) -> str:
        return f"PondCopy(count={self.frogsAndToads}, origin={self.origin!r})"


class Stranger(pb.Copyable):
    """A Copyable no receiver has allowed: sending it must fail with InsecureJelly."""


class Counter(pb.Referenceable):
    """A remote-callable object whose state the caller can observe through its answers."""

    def __init__(self) -> None:
        self.value = 0

    def remote_increment(self, by: int = 1) -> int:
        self.value += by
        return self.value


class StateCopy(pb.RemoteCopy):
    """Keeps whatever state arrives, as Twisted's RemoteCopy does by default."""


pb.setUnjellyableForClass("spread_types.Pond", PondCopy)
pb.setUnjellyableForClass("spread_types.State", StateCopy)


def type_name(value: object) -> str:
    """The dotted name of value's type, as the interop tests compare it."""
    return f"{type(value).__module__}.{type(value).__qualname__}"
