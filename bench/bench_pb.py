"""Speed of spread.pb against twisted.spread.pb and a raw Twisted Int32StringReceiver echo.

    .venv/bin/python bench/bench_pb.py [--duration S] [--rounds N] [--only spread,twisted,raw]

For each implementation it starts an echo server in one process and a client in another, both on
127.0.0.1, and measures:

- sequential: ``await root.callRemote("echo", 42)`` one after the other, calls per second;
- pipelined: the same call with 200 outstanding at all times, calls per second;
- bursts: 10, 200 and 2,000 calls fired at once and awaited together
  (``gatherResults``), again and again, calls per second;
- 1 MB: the median round trip of ``echo`` with a ~1 MiB argument (16 distinct 64 KiB byte
  strings, since PB refuses a single string over 640 KiB), in milliseconds;
- 1 MB bursts: ten such calls fired at once and awaited together, calls per second. Both
  sides' write queues fill, so this is the pattern where backpressure could stall.

``--only spread-queued,...`` adds spread with write-through off (Twisted's public write path
only), to weigh what write-through gains.

The raw echo does the same with length-prefixed byte strings: the fastest a Twisted PB could be on
this reactor and machine. The implementations take turns for several rounds (fresh processes
each time) and each figure is the median of its rounds, so a burst of load from elsewhere on
the machine hurts one sample rather than one implementation. The table ends with the targets
from issue 3. Run by hand, never by the test suite; a full run takes a minute or two.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import RawClient, read_port, stop

IMPLEMENTATIONS = ("spread", "twisted", "raw")
VARIANTS = ("spread-queued",)  # spread with write-through off: only Twisted's public write path
PB_MODULES = {"spread": "spread.pb", "spread-queued": "spread.pb", "twisted": "twisted.spread.pb"}
BURSTS = (10, 200, 2000)  # calls fired at once and awaited together
WINDOW = 200  # outstanding calls in the pipelined measurement
LARGE_CHUNKS = 16
LARGE_CHUNK_SIZE = 64 * 1024
LARGE_ROUND_TRIPS = 7
LARGE_BURST = 10  # 1 MB calls fired at once: both sides' queues fill (backpressure)
RAW_MAX_LENGTH = 64 * 1024 * 1024  # Int32StringReceiver's default (99,999) is below 1 MiB
SMALL_RAW_MESSAGE = b"\x00" * 40  # about the size of a PB echo(42) call on the wire
PROCESS_TIMEOUT = 120.0

TARGETS = [  # (label, row, compared with, minimum ratio) from issue 3
    ("sequential >= 1.8x Twisted PB", "sequential", "twisted", 1.8),
    ("sequential >= 85% of raw echo", "sequential", "raw", 0.85),
    ("pipelined >= 4x Twisted PB", "pipelined", "twisted", 4.0),
]


# ---------------------------------------------------------------------------------------------
# Server process:  bench_pb.py --serve IMPL


def serve(implementation: str) -> None:
    """Listen on 127.0.0.1 (any port), print ``PORT n``, echo until stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Factory, Protocol
    from twisted.protocols.basic import Int32StringReceiver

    if implementation == "raw":

        class Echo(Int32StringReceiver):
            MAX_LENGTH = RAW_MAX_LENGTH

            def stringReceived(self, string: bytes) -> None:
                self.sendString(string)

        factory: Any = Factory.forProtocol(Echo)
    else:
        pb: Any = importlib.import_module(PB_MODULES[implementation])

        class Echoer(pb.Root):  # type: ignore[misc, name-defined]
            def remote_echo(self, value: object) -> object:
                return value

        factory = pb.PBServerFactory(Echoer())
        if implementation == "spread-queued":
            pb.Broker.writeThrough = False

    class StopOnStdinClose(Protocol):
        def connectionLost(self, reason: object = None) -> None:
            reactor.stop()  # type: ignore[attr-defined]

    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"PORT {port.getHost().port}", flush=True)
    stdio.StandardIO(StopOnStdinClose())
    reactor.run()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Client process:  bench_pb.py --client IMPL PORT DURATION


Call = Callable[[], Any]  # starts one round trip, returns a Deferred


async def sequential(call: Call, duration: float) -> float:
    """Round trips per second, one at a time."""
    count = 0
    start = now = time.perf_counter()
    deadline = start + duration
    while now < deadline:
        await call()
        count += 1
        now = time.perf_counter()
    return count / (now - start)


async def pipelined(call: Call, duration: float, window: int = WINDOW) -> float:
    """Round trips per second with ``window`` of them in flight at all times."""
    from twisted.internet import defer

    finished: defer.Deferred[float] = defer.Deferred()
    start = time.perf_counter()
    deadline = start + duration
    state = {"done": 0, "in_flight": 0}

    def launch() -> None:
        state["in_flight"] += 1
        call().addCallbacks(completed, finished.errback)

    def completed(_answer: object) -> None:
        state["done"] += 1
        state["in_flight"] -= 1
        if time.perf_counter() < deadline:
            launch()
        elif state["in_flight"] == 0 and not finished.called:
            finished.callback(time.perf_counter())

    for _ in range(window):
        launch()
    end = await finished
    return state["done"] / (end - start)


async def bursts(call: Call, duration: float, size: int) -> float:
    """Round trips per second, ``size`` fired at once and awaited together, repeatedly."""
    from twisted.internet import defer

    count = 0
    start = now = time.perf_counter()
    deadline = start + duration
    while now < deadline:
        await defer.gatherResults([call() for _ in range(size)])
        count += size
        now = time.perf_counter()
    return count / (now - start)


async def median_ms(call: Call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class RawEchoClient:
    """An Int32StringReceiver client whose request() returns a Deferred for the echo."""

    @staticmethod
    def protocol() -> Any:

        class Client(RawClient):
            MAX_LENGTH = RAW_MAX_LENGTH

        return Client()


async def connect(reactor: Any, implementation: str, port: int) -> tuple[Call, Call]:
    """(small call, large call) for one implementation, connected to its server."""
    from twisted.internet import endpoints, protocol

    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    if implementation == "raw":
        client = await endpoint.connect(protocol.Factory.forProtocol(RawEchoClient.protocol))
        large = os.urandom(LARGE_CHUNKS * LARGE_CHUNK_SIZE)
        return (lambda: client.request(SMALL_RAW_MESSAGE)), (lambda: client.request(large))
    pb: Any = importlib.import_module(PB_MODULES[implementation])
    if implementation == "spread-queued":
        pb.Broker.writeThrough = False
    factory = pb.PBClientFactory()
    await endpoint.connect(factory)
    root = await factory.getRootObject()
    chunks = [os.urandom(LARGE_CHUNK_SIZE) for _ in range(LARGE_CHUNKS)]
    return (lambda: root.callRemote("echo", 42)), (lambda: root.callRemote("echo", chunks))


async def measure(reactor: Any, implementation: str, port: int, duration: float) -> None:
    small, large = await connect(reactor, implementation, port)
    await sequential(small, duration / 5)  # warm up
    results = {
        "sequential": await sequential(small, duration),
        "pipelined": await pipelined(small, duration),
        **{f"burst{size}": await bursts(small, duration, size) for size in BURSTS},
        "large_ms": await median_ms(large, LARGE_ROUND_TRIPS),
        "large_burst": await bursts(large, duration, LARGE_BURST),
    }
    print(json.dumps(results), flush=True)


def run_client(implementation: str, port: int, duration: float) -> None:
    from twisted.internet import defer, task

    task.react(
        lambda reactor: defer.ensureDeferred(measure(reactor, implementation, port, duration))
    )


# ---------------------------------------------------------------------------------------------
# The run: one server process and one client process per implementation


def bench(implementation: str, duration: float) -> dict[str, float]:
    script = os.path.abspath(__file__)
    server = subprocess.Popen(
        [sys.executable, script, "--serve", implementation],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = read_port(server, PROCESS_TIMEOUT)
        client = subprocess.run(
            [sys.executable, script, "--client", implementation, str(port), str(duration)],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
        )
        if client.returncode != 0:
            raise RuntimeError(client.stderr.strip().splitlines()[-1:] or client.returncode)
        results: dict[str, float] = json.loads(client.stdout.splitlines()[-1])
        return results
    finally:
        stop(server, PROCESS_TIMEOUT)


def ratio(
    results: dict[str, dict[str, float]], row: str, other: str, ours: str = "spread"
) -> float | None:
    """How many times better ``ours`` is than ``other`` on ``row`` (higher is better)."""
    if ours not in results or other not in results:
        return None
    mine, theirs = results[ours][row], results[other][row]
    return theirs / mine if row == "large_ms" else mine / theirs


def print_table(results: dict[str, dict[str, float]], errors: dict[str, str]) -> None:
    rows = [
        ("sequential calls/s", "sequential", "{:,.0f}"),
        (f"pipelined calls/s ({WINDOW} out)", "pipelined", "{:,.0f}"),
        *[(f"burst of {size:,} calls/s", f"burst{size}", "{:,.0f}") for size in BURSTS],
        ("1 MB round trip, ms", "large_ms", "{:,.1f}"),
        (f"burst of {LARGE_BURST} x 1 MB, calls/s", "large_burst", "{:,.0f}"),
    ]
    names = {"spread": "spread.pb", "twisted": "twisted PB", "raw": "raw Int32",
             "spread-queued": "queued"}  # fmt: skip
    shown_impls = [i for i in (*IMPLEMENTATIONS, *VARIANTS) if i in results or i in IMPLEMENTATIONS]
    header = f"{'':<28}" + "".join(f"{names[i]:>12}" for i in shown_impls)
    print(header + f"{'spread/PB':>12}{'spread/raw':>12}" + (
        f"{'wt/queued':>12}" if "spread-queued" in results else ""))
    for label, row, number in rows:
        cells = [number.format(results[i][row]) if i in results else "n/a" for i in shown_impls]
        ratios = [ratio(results, row, other) for other in ("twisted", "raw")]
        if "spread-queued" in results:
            ratios.append(ratio(results, row, "spread-queued"))
        shown = [f"{r:.2f}x" if r is not None else "n/a" for r in ratios]
        print(f"{label:<28}" + "".join(f"{c:>12}" for c in cells + shown))
    print("(ratios: how many times faster spread is; for the 1 MB row, time taken, inverted)")
    for label, row, other, minimum in TARGETS:
        found = ratio(results, row, other)
        verdict = "n/a" if found is None else ("met" if found >= minimum else "MISSED")
        print(f"target {label}: {verdict}" + (f" ({found:.2f}x)" if found is not None else ""))
    for implementation, message in errors.items():
        print(f"{names[implementation]} could not be measured: {message}")


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds (a burst of load elsewhere spoils one sample)."""
    return {row: statistics.median(sample[row] for sample in samples) for row in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="turns per implementation")
    parser.add_argument("--only", default=",".join(IMPLEMENTATIONS), help="comma-separated")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    parser.add_argument("--serve", choices=IMPLEMENTATIONS + VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        return serve(options.serve)
    if options.client:
        implementation, port, duration = options.client
        return run_client(implementation, int(port), float(duration))

    unknown = set(options.only.split(",")) - set(IMPLEMENTATIONS + VARIANTS)
    if unknown:
        parser.error(
            f"--only takes some of {','.join(IMPLEMENTATIONS + VARIANTS)}, not {unknown}"
        )
    samples: dict[str, list[dict[str, float]]] = {}
    errors: dict[str, str] = {}
    for _round in range(options.rounds):
        for implementation in options.only.split(","):
            if implementation in errors:
                continue
            try:
                sample = bench(implementation, options.duration)
            except Exception as problem:
                errors[implementation] = str(problem)
                continue
            samples.setdefault(implementation, []).append(sample)
    results = {name: medians(taken) for name, taken in samples.items()}
    print_table(results, errors)
    if options.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
