"""Serializer and codec speed: spread against twisted.spread, in one run.

Run by hand (never by the test suite)::

    .venv/bin/python bench/bench_codec.py [--quick] [--runs N]

Measures jelly+banana encoding and banana+unjelly decoding of a list of 1,000
small dicts (the message shape of issue 2), for both libraries, and spread's
decoding of 10,000 such dicts to show it grows linearly. Each figure is the
best of several timeit repeats, per call, with garbage collection off (as
timeit does). Targets: encode at least 5x faster than Twisted, decode at least
100x faster, and 10x the data costing at most 13x the decode time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import timeit
from collections.abc import Callable
from typing import Any

from twisted.spread import banana as tbanana
from twisted.spread import jelly as tjelly

from spread import banana as sbanana
from spread import jelly as sjelly


def message(count: int) -> list[dict[str, Any]]:
    """``count`` dicts shaped like a typical PB result row."""
    return [
        {
            "name": f"item number {i}",
            "id": i,
            "price": i * 1.25,
            "tags": [f"tag{i % 7}", "sale"],
            "ok": i % 2 == 0,
        }
        for i in range(count)
    ]


def best(call: Callable[[], object], repeat: int, budget: float) -> float:
    """Seconds per call: the best of ``repeat`` timeit runs of about ``budget`` seconds each."""
    timer = timeit.Timer(call)
    number, elapsed = timer.autorange()
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number


def measure(quick: bool) -> tuple[dict[tuple[str, str], float], float, int, int]:
    """One run: seconds per call for every (library, step), spread's 10,000-dict decode, sizes."""
    repeat, budget = (3, 0.1) if quick else (7, 0.3)
    twisted_repeat = 2 if quick else 3  # Twisted's decoding takes a while

    small, large = message(1_000), message(10_000)
    encoded = tbanana.encode(tjelly.jelly(small))
    encoded_large = sbanana.encode(sjelly.jelly(large))
    # Both sides must agree before their speed means anything.
    assert sbanana.encode(sjelly.jelly(small)) == encoded
    assert sjelly.unjelly(sbanana.decode(encoded)) == small
    assert sjelly.unjelly(sbanana.decode(encoded_large)) == large
    sexp = sjelly.jelly(small)
    # What unjelly really gets: banana's output (fresh bytes objects, nothing shared).
    received = sbanana.decode(encoded)

    figures = {
        ("spread", "jelly"): best(lambda: sjelly.jelly(small), repeat, budget),
        ("spread", "banana encode"): best(lambda: sbanana.encode(sexp), repeat, budget),
        ("spread", "encode"): best(lambda: sbanana.encode(sjelly.jelly(small)), repeat, budget),
        ("spread", "banana decode"): best(lambda: sbanana.decode(encoded), repeat, budget),
        ("spread", "unjelly"): best(lambda: sjelly.unjelly(received), repeat, budget),
        ("spread", "decode"): best(lambda: sjelly.unjelly(sbanana.decode(encoded)), repeat, budget),
        ("twisted", "jelly"): best(lambda: tjelly.jelly(small), repeat, budget),
        ("twisted", "banana encode"): best(lambda: tbanana.encode(sexp), repeat, budget),
        ("twisted", "encode"): best(lambda: tbanana.encode(tjelly.jelly(small)), repeat, budget),
        ("twisted", "banana decode"): best(lambda: tbanana.decode(encoded), twisted_repeat, 0.0),
        ("twisted", "unjelly"): best(lambda: tjelly.unjelly(received), repeat, budget),
        ("twisted", "decode"): best(
            lambda: tjelly.unjelly(tbanana.decode(encoded)), twisted_repeat, 0.0
        ),
    }
    large_decode = best(lambda: sjelly.unjelly(sbanana.decode(encoded_large)), repeat, budget)
    return figures, large_decode, len(encoded), len(encoded_large)


STEPS = ("jelly", "banana encode", "encode", "banana decode", "unjelly", "decode")
TARGETS = {"encode": "5x", "decode": "100x"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat the whole run; report the median ratios"
    )
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {step: [] for step in (*STEPS, "scaling")}
    for _ in range(args.runs):
        figures, large_decode, size, size_large = measure(args.quick)
        print(
            f"Python {platform.python_version()} on {platform.machine()}; "
            f"1,000 dicts = {size:,} bytes, 10,000 = {size_large:,} bytes"
        )
        print(f"{'1,000 dicts':<16}{'twisted ms':>12}{'spread ms':>12}{'speed-up':>10}  target")
        for step in STEPS:
            theirs, ours = figures["twisted", step], figures["spread", step]
            ratios[step].append(theirs / ours)
            print(
                f"{step:<16}{theirs * 1e3:>12.3f}{ours * 1e3:>12.3f}{theirs / ours:>9.1f}x"
                f"  {TARGETS.get(step, '')}"
            )
        scaling = large_decode / figures["spread", "decode"]
        ratios["scaling"].append(scaling)
        print(
            f"spread decode of 10,000 dicts: {large_decode * 1e3:.3f} ms, "
            f"{scaling:.1f}x the 1,000-dict time (target at most 13x)"
        )
    if args.runs > 1:
        # The machine may be shared: one run's ratio is noisy, the median of several is not.
        print(
            f"median of {args.runs} runs: "
            + ", ".join(
                f"{step} {statistics.median(ratios[step]):.1f}x" for step in ("encode", "decode")
            )
            + f", 10x data costs {statistics.median(ratios['scaling']):.1f}x the time"
        )


if __name__ == "__main__":
    main()
