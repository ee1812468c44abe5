"""All the broker benchmarks in one run, summed up in one markdown table.

    .venv/bin/python bench/run_all.py [--quick] [--rounds N] [--duration S]
                                      [--connections N] [--updates N] [--timeout S]

Runs bench_pb.py, bench_cache.py, bench_load.py and bench_accept.py one after the other, each as
a subprocess with ``--json``, and prints the date, the Python and Twisted versions and one
markdown table: twisted.spread, spread and the raw ``Int32StringReceiver`` echo (the same
reactor with no PB at all) side by side, with how many times better spread is than each of the
other two. ``--quick`` makes every size small (well under a minute on two cores), for checking
that all of it works rather than for figures to quote. A benchmark that fails or overruns
``--timeout`` leaves its cells ``n/a`` and is reported under the table; the others still run.
Run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ("twisted", "spread", "raw")
QUICK = {"duration": 0.5, "rounds": 1, "connections": 200, "updates": 500}
BURSTS = (10, 200, 2000)  # bench_pb.py's burst sizes

# A row: (label, the figures it reads, lower is better); the figures are
# {implementation: value} taken from the benchmarks' JSON.
Figures = dict[str, float]
Row = tuple[str, Figures, bool]


def run(script: str, arguments: list[str], timeout: float) -> tuple[Any, str | None]:
    """Run ``bench/script --json arguments``: (its JSON, None) or (None, what went wrong)."""
    command = [sys.executable, os.path.join(HERE, script), *arguments, "--json"]
    print(f"running {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    # Its own session, so that on a timeout its servers and clients go with it.
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return None, f"{script} did not finish within {timeout:.0f} s"
    print(f"  {script} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if child.returncode != 0:
        last = err.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        return None, f"{script} failed: {last[0]}"
    lines = out.splitlines()
    start = next((n for n, line in enumerate(lines) if line == "{"), None)
    if start is None:
        return None, f"{script} printed no JSON"
    notes = [line for line in lines[:start] if "could not be measured" in line]
    return json.loads("\n".join(lines[start:])), "; ".join(notes) or None


def pick(results: dict[str, Any], path: Callable[[dict[str, Any]], float]) -> Figures:
    """{implementation: figure} for the implementations that have it."""
    found: Figures = {}
    for name in COLUMNS:
        try:
            found[name] = path(results[name])
        except (KeyError, TypeError):
            continue
    return found


def rows(
    pb: Any, cache: Any, record: Any, load: Any, accept: Any, sizes: dict[str, Any]
) -> list[Row]:
    """The table's rows from the benchmarks' JSON (None for one that did not run)."""
    pb = pb or {}
    cache_results = (cache or {}).get("results", {})
    record_results = (record or {}).get("results", {})
    broadcast_results = {
        name: record_results[source]
        for name, source in (("twisted", "twisted"), ("spread", "spread-broadcast"))
        if source in record_results
    }
    cache_settings = (cache or {}).get("settings", {})
    load_results = (load or {}).get("results", {})
    load_settings = (load or {}).get("settings", {})
    accept_results = (accept or {}).get("results", {})

    def load_row(mode: str, figure: str) -> Figures:
        return pick(load_results.get(mode, {}), lambda found: found[figure])

    observers = cache_settings.get("observers", 50)
    connections = load_settings.get("connections", sizes.get("connections", "N"))
    callers, calls = load_settings.get("callers", "N"), load_settings.get("calls", "C")
    at_once = f"{connections:,}" if isinstance(connections, int) else connections
    return [
        ("sequential calls/s", pick(pb, lambda r: r["sequential"]), False),
        ("200 calls in flight (sliding window), calls/s", pick(pb, lambda r: r["pipelined"]),
         False),
        *[(f"bursts of {size:,} awaited together, calls/s",
           pick(pb, lambda r, size=size: r[f"burst{size}"]), False) for size in BURSTS],
        ("1 MB argument round trip, ms", pick(pb, lambda r: r["large_ms"]), True),
        ("bursts of 10 x 1 MB awaited together, calls/s",
         pick(pb, lambda r: r["large_burst"]), False),
        (f"Cacheable updates to {observers} observers, updates/s",
         pick(cache_results, lambda r: float(r)), False),
        ("the same, a ten-field record per update, updates/s",
         pick(record_results, lambda r: float(r)), False),
        ("the same, sent with pb.broadcast, updates/s",
         pick(broadcast_results, lambda r: float(r)), False),
        (f"connections accepted/s, from a load generator (root, {at_once} at once)",
         pick(accept_results, lambda r: r["connections_per_s"]), False),
        (f"connections/s, from a PB client (root, {at_once} at once)",
         load_row("root", "connections_per_s"), False),
        (f"connections/s, from a PB client (login, {at_once} at once)",
         load_row("login", "connections_per_s"), False),
        (f"server connections per CPU-second (root, {at_once} at once)",
         load_row("root", "server_connections_per_cpu_s"), False),
        (f"server connections per CPU-second (login, {at_once} at once)",
         load_row("login", "server_connections_per_cpu_s"), False),
        (f"calls/s with many clients (root, {callers} x {calls} calls)",
         load_row("root", "calls_per_s"), False),
        (f"server KiB per connection (root, {at_once})", load_row("root", "kib_per_connection"),
         True),
        (f"server KiB per connection (login, {at_once})",
         load_row("login", "kib_per_connection"), True),
    ]  # fmt: skip


def cell(value: float | None, lower_is_better: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if lower_is_better else f"{value:,.0f}"


def better(figures: Figures, other: str, lower_is_better: bool) -> str:
    """How many times better spread is than ``other`` (above 1: spread is better)."""
    if "spread" not in figures or other not in figures or not figures["spread"]:
        return "n/a"
    mine, theirs = figures["spread"], figures[other]
    return f"{(theirs / mine if lower_is_better else mine / theirs):.2f}x"


def print_table(table: list[Row], loginless: set[str]) -> None:
    header = ("workload", "twisted.spread", "spread", "raw echo", "spread/Twisted", "spread/raw")
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for label, figures, lower in table:
        cells = [cell(figures.get(name), lower) for name in COLUMNS]
        ratios = [better(figures, "twisted", lower), better(figures, "raw", lower)]
        if label in loginless:  # a raw echo has no login
            cells[2] = ratios[1] = "n/a (no login)"
        print("| " + " | ".join([label, *cells, *ratios]) + " |")


def versions() -> str:
    import twisted

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"{now}; Python {platform.python_version()} ({platform.python_implementation()}); "
        f"Twisted {twisted.__version__}; {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    parser.add_argument("--rounds", type=int, help="rounds in every benchmark")
    parser.add_argument("--duration", type=float, help="bench_pb.py's seconds per measurement")
    parser.add_argument("--connections", type=int, help="bench_load.py's connections at once")
    parser.add_argument("--updates", type=int, help="bench_cache.py's updates")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds each benchmark may take (default 1800)")
    args = parser.parse_args()  # fmt: skip
    sizes = {**(QUICK if args.quick else {}),
             **{k: v for k, v in vars(args).items() if k in QUICK and v is not None}}  # fmt: skip

    def given(*names: str) -> list[str]:
        return [f"--{name}={sizes[name]}" for name in names if name in sizes]

    errors: list[str] = []
    found: list[Any] = []
    for script, arguments in (
        ("bench_pb.py", given("duration", "rounds")),
        ("bench_cache.py", given("updates", "rounds")),
        ("bench_cache.py", [*given("updates", "rounds"), "--payload=record",
                            "--only=spread,spread-broadcast,twisted"]),
        ("bench_load.py", given("connections", "rounds")),
        ("bench_accept.py", given("connections", "rounds")),
    ):
        results, problem = run(script, arguments, args.timeout)
        found.append(results)
        if problem:
            errors.append(problem)
    pb, cache, record, load, accept = found
    table = rows(pb, cache, record, load, accept, sizes)
    print(f"Benchmarks of {versions()}")
    print(f"Sizes: {', '.join(f'{k} {v}' for k, v in sizes.items()) or 'the defaults'}")
    print()
    print_table(table, {label for label, _, _ in table if "(login" in label})
    print()
    print(
        "Ratios are how many times better spread is (above 1: spread is better); for the ms and "
        "KiB rows, the other's figure over spread's. Each figure is the median of its "
        "rounds."
    )
    for problem in errors:
        print(f"- {problem}")


if __name__ == "__main__":
    main()
