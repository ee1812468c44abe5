"""The classes tests/test_interop.py's spread side sends and receives: twisted_types.py's mirror.

It lives beside the Twisted peers so that its module name, which jelly puts on the wire
("spread_types.Pond"), is the same however pytest imports the test module.
"""

from __future__ import annotations

from typing import Any

from spread import pb


class SpreadError(pb.Error):
    """The pb.Error the spread side raises on request."""


class Pond(pb.Copyable):
    """A pond that sends a reduced state (the total only), as in the seed's pb-copy2 example."""

    def __init__(self, frogs: int, toads: int) -> None:
        self.frogs = frogs
        self.toads = toads

    def getStateToCopy(self) -> dict[str, Any]:
        return {"frogsAndToads": self.frogs + self.toads, "origin": "spread"}


class PondCopy(pb.RemoteCopy):
    """What a Pond from the Twisted side becomes here."""

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
    """A remote-callable object whose state the test can check after the peer called it."""

    def __init__(self) -> None:
        self.value = 0

    def remote_increment(self, by: int = 1) -> int:
        self.value += by
        return self.value


pb.setUnjellyableForClass("twisted_types.Pond", PondCopy)


def type_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"
