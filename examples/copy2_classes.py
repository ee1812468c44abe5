"""The seed's pb-copy2 classes: a sender and a receiver class that share nothing but a name.

SenderPond sends a reduced state (frogs and toads added up); ReceiverPond keeps that total and
answers count() from it. The setUnjellyableForClass line at the bottom binds them: importing
this module is all a receiver needs to do. See docs/howto-copyable.md.
"""

from __future__ import annotations

from typing import Any

from spread import pb


class FrogPond:
    def __init__(self, numFrogs: int, numToads: int) -> None:
        self.numFrogs = numFrogs
        self.numToads = numToads

    def count(self) -> int:
        return self.numFrogs + self.numToads


class SenderPond(FrogPond, pb.Copyable):
    def getStateToCopy(self) -> dict[str, Any]:
        """Send the total instead of the raw counts: what crosses the wire is our choice."""
        state = self.__dict__.copy()
        state["frogsAndToads"] = state.pop("numFrogs") + state.pop("numToads")
        return state


class ReceiverPond(pb.RemoteCopy):
    frogsAndToads: int

    def setCopyableState(self, state: dict[str, Any]) -> None:
        self.__dict__ = state

    def count(self) -> int:
        return self.frogsAndToads


pb.setUnjellyableForClass(SenderPond, ReceiverPond)
