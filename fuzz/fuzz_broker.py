"""A long fuzzing run of a whole broker: the test suite's fuzz test with many more examples.

    .venv/bin/python fuzz/fuzz_broker.py [EXAMPLES]   (default 100,000)

Runs tests/test_fuzz.py's property with random (not derandomized) examples until it has tried
EXAMPLES of them or found a failure, which hypothesis then shrinks and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_fuzz


def main() -> None:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    run = settings(
        max_examples=examples, deadline=None, derandomize=False,
        suppress_health_check=list(HealthCheck),
    )(given(**test_fuzz.STREAMS)(test_fuzz.check_stream))
    run()
    print(f"no failure in {examples} examples")


if __name__ == "__main__":
    main()
