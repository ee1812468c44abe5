"""The DuckPond example written against real twisted.spread, run by tests/test_cache_example.py
to show that spread's examples/cache_*.py talk to Twisted in both directions.

    python twisted_duckpond.py receive                 # prints "listening on port N"
    python twisted_duckpond.py send PORT [hold]

The wire names are the example's ("cache_classes.MasterDuckPond"), so either half pairs with
the spread half. ``hold`` keeps the sender connected and watching until the receiver goes away.
Both print the same lines as the spread programs. A safety timeout ends an abandoned peer.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, reactor, task
from twisted.spread import pb

SAFETY_TIMEOUT = 120.0
WIRE_NAME = "cache_classes.MasterDuckPond"


class MasterDuckPond(pb.Cacheable):
    def __init__(self, ducks: list[str]) -> None:
        self.observers: list[Any] = []
        self.ducks = ducks
        self.unwatched: defer.Deferred[None] = defer.Deferred()

    def getTypeToCopyFor(self, perspective: Any) -> bytes:
        return WIRE_NAME.encode()  # Twisted's banana sends bytes, not str

    def count(self) -> None:
        print(f"I have [{len(self.ducks)}] ducks", flush=True)

    def change(self, method: str, duck: str) -> None:
        getattr(self.ducks, {"addDuck": "append", "removeDuck": "remove"}[method])(duck)
        for observer in self.observers:
            observer.callRemote(method, duck)

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> list[str]:
        self.observers.append(observer)
        return self.ducks

    def stoppedObserving(self, perspective: Any, observer: Any) -> None:
        self.observers.remove(observer)
        print("a replica stopped watching", flush=True)
        if not self.observers and not self.unwatched.called:
            self.unwatched.callback(None)


class SlaveDuckPond(pb.RemoteCache):
    def setCopyableState(self, state: list[str]) -> None:
        print(" cache - sitting, er, setting ducks", flush=True)
        self.cacheducks = state

    def observe_addDuck(self, newDuck: str) -> None:
        print(" cache - addDuck", flush=True)
        self.cacheducks.append(newDuck)

    def observe_removeDuck(self, deadDuck: str) -> None:
        print(" cache - removeDuck", flush=True)
        self.cacheducks.remove(deadDuck)


pb.setUnjellyableForClass(WIRE_NAME, SlaveDuckPond)


class Receiver(pb.Root):
    pond: Any = None

    def remote_takePond(self, pond: SlaveDuckPond) -> None:
        self.pond = pond
        print(f"got pond: {type(pond).__name__}", flush=True)
        self.remote_checkDucks()

    def remote_checkDucks(self) -> None:
        print(f"[{len(self.pond.cacheducks)}] ducks: {self.pond.cacheducks}", flush=True)

    def remote_ignorePond(self) -> None:
        print("dropping pond", flush=True)
        self.pond = None


async def send(port: str, hold: bool) -> None:
    master = MasterDuckPond(["one duck", "two duck"])
    master.count()
    factory = pb.PBClientFactory()
    reactor.connectTCP("127.0.0.1", int(port), factory)
    remote = await factory.getRootObject()
    await remote.callRemote("takePond", master)
    master.change("addDuck", "ugly duckling")
    master.count()
    await remote.callRemote("checkDucks")
    if hold:
        print("holding", flush=True)
        await master.unwatched
        return
    master.change("removeDuck", "one duck")
    master.count()
    await remote.callRemote("checkDucks")
    await remote.callRemote("ignorePond")
    await master.unwatched
    factory.disconnect()


async def receive() -> None:
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    listening = await endpoint.listen(pb.PBServerFactory(Receiver()))
    print(f"twisted receiver listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()


def main(reactor: Any, mode: str, *args: str) -> defer.Deferred[None]:
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)
    if mode == "receive":
        return defer.ensureDeferred(receive())
    return defer.ensureDeferred(send(args[0], args[1:] == ("hold",)))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
