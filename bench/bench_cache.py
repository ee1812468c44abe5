"""Speed of Cacheable updates, spread.pb against twisted.spread.pb (issue 4).

    .venv/bin/python bench/bench_cache.py [--observers N] [--updates N] [--rounds N]

For each implementation it starts a server process holding one ``Cacheable`` master and a client
process that opens 50 connections, each receiving the master as a ``RemoteCache`` (50 observers).
The client then asks the master for 2,000 updates; the master sends each one to every observer
(``observer.callRemote("update", i)``), and the client counts ``observe_update`` calls until all
100,000 have arrived. The figure is updates delivered per second, from the request to the last
delivery. The implementations take turns for several rounds in fresh processes and each keeps its
best figure, so a burst of load elsewhere spoils a sample rather than a column. Run by hand, never
by the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from typing import Any

PB_MODULES = {"spread": "spread.pb", "twisted": "twisted.spread.pb"}
IMPLEMENTATIONS = tuple(PB_MODULES)
WIRE_NAME = "bench_cache.Master"
PROCESS_TIMEOUT = 300.0
TARGET = 3.0  # issue 4: spread delivers at least 3x as many updates per second as Twisted


def serve(implementation: str) -> None:
    """Hold one master; print ``PORT n``; send updates on request; stop when stdin closes."""
    from twisted.internet import reactor, stdio, task
    from twisted.internet.protocol import Protocol

    pb: Any = importlib.import_module(PB_MODULES[implementation])

    class Master(pb.Cacheable):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.observers: list[Any] = []

        def getTypeToCopyFor(self, perspective: Any) -> bytes:
            return WIRE_NAME.encode()

        def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> dict[str, int]:
            self.observers.append(observer)
            return {"value": 0}

        def stoppedObserving(self, perspective: Any, observer: Any) -> None:
            # By identity: Twisted's observers cannot be compared with == across connections.
            self.observers = [known for known in self.observers if known is not observer]

    class BenchRoot(pb.Root):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.master = Master()

        def remote_subscribe(self) -> Any:
            return self.master

        def remote_update(self, count: int) -> Any:
            # One update to every observer per reactor turn, as a live master would: the
            # writes go out while the next update is prepared, and answers come back meanwhile.
            observers = self.master.observers

            def updates() -> Any:
                for value in range(count):
                    for observer in observers:
                        # A replica that has gone away fails its update; expected here.
                        observer.callRemote("update", value).addErrback(lambda failure: None)
                    yield None

            return task.coiterate(updates()).addCallback(lambda _: len(observers))

    class StopOnStdinClose(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()  # type: ignore[attr-defined]

    port = reactor.listenTCP(0, pb.PBServerFactory(BenchRoot()), interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"PORT {port.getHost().port}", flush=True)
    stdio.StandardIO(StopOnStdinClose())
    reactor.run()  # type: ignore[attr-defined]


def client(implementation: str, port: int, observers: int, updates: int) -> None:
    """Open ``observers`` connections, each caching the master; time ``updates`` updates."""
    from twisted.internet import defer, task

    pb: Any = importlib.import_module(PB_MODULES[implementation])
    expected = observers * updates
    state = {"received": 0}
    done: defer.Deferred[None] = defer.Deferred()

    class Replica(pb.RemoteCache):  # type: ignore[misc, name-defined]
        def setCopyableState(self, state: Any) -> None:
            self.value = 0

        def observe_update(self, value: int) -> None:
            self.value = value
            state["received"] += 1
            if state["received"] == expected:
                done.callback(None)

    pb.setUnjellyableForClass(WIRE_NAME, Replica)

    async def run(reactor: Any) -> None:
        roots: list[Any] = []
        replicas: list[Any] = []
        factories: list[Any] = []
        for _ in range(observers):
            factory = pb.PBClientFactory()
            reactor.connectTCP("127.0.0.1", port, factory)
            factories.append(factory)
            roots.append(await factory.getRootObject())
        for root in roots:
            replicas.append(await root.callRemote("subscribe"))
        started = time.perf_counter()
        watching = roots[0].callRemote("update", updates)
        await done
        assert await watching == observers, f"{watching} observers, expected {observers}"
        elapsed = time.perf_counter() - started
        print(f"RESULT {expected / elapsed:.1f}", flush=True)
        for factory in factories:
            factory.disconnect()

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


def measure(implementation: str, observers: int, updates: int) -> float:
    """One fresh server and client; updates delivered per second."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", implementation],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        done = subprocess.run(
            [sys.executable, __file__, "--client", implementation, str(port),
             str(observers), str(updates)],
            capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=True,
        )
        line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
        return float(line.split()[1])
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=50)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", metavar="IMPL", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.client:
        implementation, port, observers, updates = args.client
        client(implementation, int(port), int(observers), int(updates))
        return
    best = {name: 0.0 for name in IMPLEMENTATIONS}
    for _ in range(args.rounds):
        for name in IMPLEMENTATIONS:
            best[name] = max(best[name], measure(name, args.observers, args.updates))
    ratio = best["spread"] / best["twisted"]
    print(f"{args.observers} observers x {args.updates} updates, best of {args.rounds} rounds")
    print(f"{'':10} {'updates/s':>12}")
    for name in IMPLEMENTATIONS:
        print(f"{name:10} {best[name]:12,.0f}")
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"spread / twisted: {ratio:.2f}x (target >= {TARGET}x: {verdict})")


if __name__ == "__main__":
    main()
