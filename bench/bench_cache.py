"""Speed of Cacheable updates, spread.pb against twisted.spread.pb and a raw fan-out (issue 4).

    .venv/bin/python bench/bench_cache.py [--observers N] [--updates N] [--rounds N]
    .venv/bin/python bench/bench_cache.py --only spread,raw [--json]
    .venv/bin/python bench/bench_cache.py --payload record --only spread,spread-broadcast,twisted

For each implementation it starts a server process holding one ``Cacheable`` master and a client
process that opens 50 connections, each receiving the master as a ``RemoteCache`` (50 observers).
The client then asks the master for 2,000 updates; the master sends each one to every observer
(``observer.callRemote("update", i)``), and the client counts ``observe_update`` calls until all
100,000 have arrived. The figure is updates delivered per second, from the request to the last
delivery. The implementations take turns for several rounds in fresh processes and each reports
the median of its rounds, so a burst of load elsewhere moves one sample, not a whole column. Run
by hand, never by the test suite.

The third implementation, ``raw``, is no PB at all: the server holds 50 Twisted
``Int32StringReceiver`` connections (each subscribes with one small round trip) and, asked for
2,000 updates, sends one small string to every connection per reactor turn through the same
``task.coiterate`` loop; the client counts the strings until all 100,000 have arrived. That is
the ceiling of this reactor and machine. It does less than PB does: a PB observer answers each
update (``callRemote`` asks for an answer), the raw client answers none.

``--payload record`` sends a ten-field dict in each update instead of its number, and
``spread-broadcast`` is spread sending each update with ``pb.broadcast`` (serialized once for
all 50 observers) rather than one ``callRemote`` per observer.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import RawClient, RawOpening, read_port, stop

PB_MODULES = {
    "spread": "spread.pb", "twisted": "twisted.spread.pb", "spread-broadcast": "spread.pb",
}
IMPLEMENTATIONS = ("spread", "twisted", "raw", "spread-broadcast")
DEFAULT_ONLY = "spread,twisted,raw"
PAYLOADS = ("int", "record")


def payload(kind: str, value: int) -> Any:
    """What one update carries: the update's number, or a ten-field record holding it."""
    if kind == "int":
        return value
    return {
        "id": value, "name": "sensor-17", "site": "north", "reading": 21.5,
        "limits": [10.0, 30.0], "ok": True, "unit": "C", "seq": value * 2,
        "tags": ["a", "b", "c"], "note": None,
    }  # fmt: skip
WIRE_NAME = "bench_cache.Master"
PROCESS_TIMEOUT = 300.0
TARGET = 3.0  # issue 4: spread delivers at least 3x as many updates per second as Twisted


# ---------------------------------------------------------------------------------------------
# Server process:  bench_cache.py --serve IMPL


def pb_factory(implementation: str, kind: str) -> Any:
    """A PB server whose root hands out one master and sends it updates on request
    (``spread-broadcast``: through ``pb.broadcast``, serializing each update once)."""
    from twisted.internet import task

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
                    update = payload(kind, value)
                    if implementation == "spread-broadcast":
                        for call in pb.broadcast(observers, "update", update):
                            call.addErrback(lambda failure: None)
                    else:
                        for observer in observers:
                            # A replica that has gone away fails its update; expected here.
                            observer.callRemote("update", update).addErrback(lambda f: None)
                    yield None

            return task.coiterate(updates()).addCallback(lambda _: len(observers))

    return pb.PBServerFactory(BenchRoot())


def raw_factory() -> Any:
    """Int32StringReceiver connections: ``subscribe`` (answered ``subscribed``) makes one an
    observer; ``update N`` sends N updates to every observer, one round of them per reactor
    turn, then answers ``sent <observers>``."""
    from twisted.internet import task
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import Int32StringReceiver

    observers: list[Int32StringReceiver] = []

    class Observed(Int32StringReceiver):
        def stringReceived(self, string: bytes) -> None:
            if string == b"subscribe":
                observers.append(self)
                self.sendString(b"subscribed")
            elif string.startswith(b"update "):
                self.fan_out(int(string.split()[1]))

        def fan_out(self, count: int) -> None:
            def updates() -> Any:  # the same loop as the PB master's
                for value in range(count):
                    for observer in observers:
                        # One message made per observer, as each PB callRemote makes its own.
                        observer.sendString(b"update %d" % value)
                    yield None

            task.coiterate(updates()).addCallback(
                lambda _: self.sendString(b"sent %d" % len(observers))
            )

        def connectionLost(self, reason: Any = None) -> None:
            observers[:] = [known for known in observers if known is not self]

    return Factory.forProtocol(Observed)


def serve(implementation: str, kind: str) -> None:
    """Hold one master; print ``PORT n``; send updates on request; stop when stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Protocol

    factory = raw_factory() if implementation == "raw" else pb_factory(implementation, kind)

    class StopOnStdinClose(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()  # type: ignore[attr-defined]

    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"PORT {port.getHost().port}", flush=True)
    stdio.StandardIO(StopOnStdinClose())
    reactor.run()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Client process:  bench_cache.py --client IMPL PORT OBSERVERS UPDATES


def client(implementation: str, port: int, observers: int, updates: int) -> None:
    """Open ``observers`` connections, each caching the master; time ``updates`` updates."""
    from twisted.internet import defer, task

    if implementation == "raw":
        raw_client(port, observers, updates)
        return
    pb: Any = importlib.import_module(PB_MODULES[implementation])
    expected = observers * updates
    state = {"received": 0}
    done: defer.Deferred[None] = defer.Deferred()

    class Replica(pb.RemoteCache):  # type: ignore[misc, name-defined]
        def setCopyableState(self, state: Any) -> None:
            self.value = 0

        def observe_update(self, value: Any) -> None:
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


def raw_client(port: int, observers: int, updates: int) -> None:
    """The raw fan-out's client: ``observers`` subscribed connections counting update strings."""

    from twisted.internet import defer, task

    expected = observers * updates
    state = {"received": 0}
    done: defer.Deferred[None] = defer.Deferred()

    class Replica(RawClient):
        value = b""

        def stringReceived(self, string: bytes) -> None:
            if string.startswith(b"update "):
                self.value = string
                state["received"] += 1
                if state["received"] == expected:
                    done.callback(None)
            else:
                super().stringReceived(string)

    class Opening(RawOpening):
        protocol = Replica

    async def run(reactor: Any) -> None:
        replicas: list[Replica] = []
        for _ in range(observers):
            opening = Opening()
            reactor.connectTCP("127.0.0.1", port, opening)
            replicas.append(await opening.ready)
        for replica in replicas:
            assert await replica.request(b"subscribe") == b"subscribed"
        started = time.perf_counter()
        watching = replicas[0].request(b"update %d" % updates)
        await done
        answer = await watching
        assert answer == b"sent %d" % observers, f"{answer!r}, expected {observers} observers"
        elapsed = time.perf_counter() - started
        print(f"RESULT {expected / elapsed:.1f}", flush=True)
        for replica in replicas:
            assert replica.transport is not None
            replica.transport.loseConnection()

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


# ---------------------------------------------------------------------------------------------
# The run: one server process and one client process per implementation and round


def measure(implementation: str, observers: int, updates: int, kind: str = "int") -> float:
    """One fresh server and client; updates delivered per second."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", implementation, "--payload", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = read_port(server, PROCESS_TIMEOUT)
        done = subprocess.run(
            [sys.executable, __file__, "--client", implementation, str(port),
             str(observers), str(updates)],
            capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1:] or done.returncode)
        line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
        return float(line.split()[1])
    finally:
        stop(server, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observers", type=int, default=50)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", default=DEFAULT_ONLY, help=f"comma-separated, of {','.join(IMPLEMENTATIONS)}"
    )
    parser.add_argument(
        "--payload", choices=PAYLOADS, default="int",
        help="what each update carries: its number, or a ten-field record (PB only)",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--serve", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.payload)
        return
    if args.client:
        implementation, port, observers, updates = args.client
        client(implementation, int(port), int(observers), int(updates))
        return
    only = args.only.split(",")
    unknown = set(only) - set(IMPLEMENTATIONS)
    if unknown:
        parser.error(f"--only takes some of {','.join(IMPLEMENTATIONS)}, not {unknown}")
    samples: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    for _ in range(args.rounds):
        for name in only:
            if name in errors:
                continue
            try:
                figure = measure(name, args.observers, args.updates, args.payload)
            except Exception as problem:
                errors[name] = str(problem) or type(problem).__name__
                continue
            samples.setdefault(name, []).append(figure)
    best = {name: statistics.median(figures) for name, figures in samples.items()}
    print(
        f"{args.observers} observers x {args.updates} updates ({args.payload}), "
        f"median of {args.rounds} rounds"
    )
    print(f"{'':18} {'updates/s':>12}")
    for name in only:
        print(f"{name:18} {best[name]:12,.0f}" if name in best else f"{name:18} {'n/a':>12}")
    if "spread" in best and "twisted" in best:
        ratio = best["spread"] / best["twisted"]
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"spread / twisted: {ratio:.2f}x (target >= {TARGET}x: {verdict})")
    if "spread-broadcast" in best and "twisted" in best:
        print(f"spread-broadcast / twisted: {best['spread-broadcast'] / best['twisted']:.2f}x")
    if "spread" in best and "raw" in best:
        print(f"spread / raw: {best['spread'] / best['raw']:.2f}x")
    for name, message in errors.items():
        print(f"{name} could not be measured: {message}")
    if args.json:
        settings = {"observers": args.observers, "updates": args.updates, "rounds": args.rounds,
                    "payload": args.payload}  # fmt: skip
        print(json.dumps({"settings": settings, "results": best, "errors": errors}, indent=2))


if __name__ == "__main__":
    main()
