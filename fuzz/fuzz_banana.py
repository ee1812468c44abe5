"""Coverage-guided fuzzing of the banana decoder and unjelly with atheris (libFuzzer).

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_banana.py -max_total_time=600 [CORPUS_DIR]

Each input is fed to a pb-dialect Decoder in two chunks (split at the input's first byte), and
each expression it yields is unjellied with the secure default. Only BananaError and
InsecureJelly may escape; anything else is a crash atheris reports with the input that caused it.
Without atheris installed, it falls back to hypothesis with random bytes (less effective).
"""

from __future__ import annotations

import contextlib
import sys

from spread import jelly
from spread.banana import PB_VOCABULARY_BY_NUMBER, BananaError, Decoder


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


def main() -> None:
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
