"""The seed's DuckPond: a master pond and the read-only replicas that watch it. See
docs/howto-cacheable.md.

Both programs import this module: the sender owns a MasterDuckPond, and each receiver gets a
SlaveDuckPond, a replica that the master keeps up to date by calling its ``observe_`` methods.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from spread import pb


class MasterDuckPond(pb.Cacheable):
    """The one true pond. Every change is sent to each replica currently watching it."""

    def __init__(self, ducks: list[str]) -> None:
        self.observers: list[pb.RemoteCacheObserver] = []
        self.ducks = ducks
        self.unwatched: defer.Deferred[None] = defer.Deferred()

    def count(self) -> None:
        print(f"I have [{len(self.ducks)}] ducks", flush=True)

    def addDuck(self, duck: str) -> None:
        self.ducks.append(duck)
        # observer.callRemote("addDuck", duck) for each observer, serialized once for all.
        pb.broadcast(self.observers, "addDuck", duck)

    def removeDuck(self, duck: str) -> None:
        self.ducks.remove(duck)
        pb.broadcast(self.observers, "removeDuck", duck)

    def getStateToCacheAndObserveFor(
        self, perspective: Any, observer: pb.RemoteCacheObserver
    ) -> list[str]:
        # Called once per connection that receives the pond: remember who to tell about
        # changes, and send only the ducks, never bookkeeping such as self.observers.
        self.observers.append(observer)
        return self.ducks

    def stoppedObserving(self, perspective: Any, observer: pb.RemoteCacheObserver) -> None:
        # The replica on that connection was dropped (or the connection closed).
        self.observers.remove(observer)
        print("a replica stopped watching", flush=True)
        if not self.observers and not self.unwatched.called:
            self.unwatched.callback(None)


class SlaveDuckPond(pb.RemoteCache):
    """A replica of a MasterDuckPond in another process; the master calls observe_*."""

    cacheducks: list[str]

    def count(self) -> int:
        return len(self.cacheducks)

    def getDucks(self) -> list[str]:
        return self.cacheducks

    def setCopyableState(self, state: list[str]) -> None:
        print(" cache - sitting, er, setting ducks", flush=True)
        self.cacheducks = state

    def observe_addDuck(self, newDuck: str) -> None:
        print(" cache - addDuck", flush=True)
        self.cacheducks.append(newDuck)

    def observe_removeDuck(self, deadDuck: str) -> None:
        print(" cache - removeDuck", flush=True)
        self.cacheducks.remove(deadDuck)


# Receivers accept "cache_classes.MasterDuckPond" and build a SlaveDuckPond for it.
pb.setUnjellyableForClass(MasterDuckPond, SlaveDuckPond)
