"""Coverage-guided fuzzing of the banana decoder and unjelly with atheris (libFuzzer).

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_banana.py -max_total_time=600 [CORPUS_DIR]

Each input is fed to a pb-dialect Decoder in two chunks (split at the input's first byte), and
each expression it yields is unjellied with the secure default. Only BananaError and
InsecureJelly may escape; anything else is a crash atheris reports with the input that caused it.
Without atheris installed, it falls back to hypothesis with random bytes (less effective).

Random bytes never hold thousands of keys of one hash, so a few such inputs (SEEDS) are run
first, each within SEED_SECONDS: a message built to make unjelly slow must be refused quickly.
"""

from __future__ import annotations

import contextlib
import sys
import time

from spread import jelly
from spread.banana import PB_VOCABULARY, PB_VOCABULARY_BY_NUMBER, BananaError, Decoder, Encoder

SEED_SECONDS = 1.0
MODULUS = sys.hash_info.modulus


def _seed(sexp: object) -> bytes:
    """An input for one_input: no cut (first byte 0), then the pb-dialect encoding."""
    return b"\x00" + Encoder(PB_VOCABULARY).encode(sexp)


def _doubled_tuples(levels: int) -> list[object]:
    sexp: list[object] = [b"list", [b"reference", 1, [b"tuple", 1, 2]]]
    for refid in range(2, levels + 1):
        sexp.append([b"reference", refid, [b"tuple", *[[b"dereference", refid - 1]] * 2]])
    return [*sexp, [b"set", [b"dereference", levels]]]


_COLLIDING = [k * MODULUS for k in range(1, 5_001)]  # distinct ints that all hash to 0
SEEDS = {
    "colliding set": _seed([b"set", *_COLLIDING]),
    "colliding dict keys": _seed([b"dictionary", *[[key, 1] for key in _COLLIDING]]),
    "colliding tuple keys": _seed([b"frozenset", *[[b"tuple", key] for key in _COLLIDING]]),
    "colliding reference ids": _seed([b"list", *[[b"reference", k, 1] for k in _COLLIDING]]),
    "doubled shared tuples": _seed(_doubled_tuples(60)),
}


def one_input(data: bytes) -> None:
    decoder = Decoder(PB_VOCABULARY_BY_NUMBER, max_depth=200, max_message_size=1 << 20)
    cut = data[0] if data else 0
    try:
        expressions = decoder.feed(data[1:cut + 1]) + decoder.feed(data[cut + 1:])
    except BananaError:
        return
    for expression in expressions:
        with contextlib.suppress(jelly.InsecureJelly):
            jelly.unjelly(expression)


def run_seeds() -> None:
    """Check that every seed is refused, each within SEED_SECONDS."""
    for name, data in SEEDS.items():
        started = time.perf_counter()
        (expression,) = Decoder(PB_VOCABULARY_BY_NUMBER).feed(data[1:])
        try:
            jelly.unjelly(expression)
        except jelly.InsecureJelly:
            pass
        else:
            raise AssertionError(f"the {name} seed was accepted")
        elapsed = time.perf_counter() - started
        if elapsed > SEED_SECONDS:
            raise AssertionError(f"the {name} seed took {elapsed:.2f} s (at most {SEED_SECONDS})")
        one_input(data)  # and the fuzzer's own path


def main() -> None:
    run_seeds()
    try:
        import atheris
    except ImportError:
        from hypothesis import given, settings
        from hypothesis import strategies as st

        print("atheris is not installed; fuzzing with hypothesis instead", file=sys.stderr)
        settings(max_examples=200_000, deadline=None)(given(st.binary(max_size=512))(one_input))()
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
