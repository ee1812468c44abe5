"""The C accelerator against the pure-Python reference: same bytes, values and errors.

spread/_speedups.c takes over the codec's and the unjellier's hot loops; the Python code
stays the reference and the judge of everything unusual. These tests hold the two to the
same results on random input, limits and chunkings. (The rest of the suite runs with the
accelerator; CI runs the codec and serializer modules once more without it.)
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import spread._banana_codec as codec
import spread.jelly as jelly_module
from spread._native import speedups
from spread.banana import (
    PB_VOCABULARY,
    PB_VOCABULARY_BY_NUMBER,
    BananaError,
    Decoder,
    Encoder,
    encode,
)
from spread.jelly import InsecureJelly, SecurityOptions, jelly, unjelly

needs_c = pytest.mark.skipif(speedups is None, reason="spread._speedups is not built")


@contextlib.contextmanager
def pure_python() -> Iterator[None]:
    """Run the block on the pure-Python code paths only."""
    saved = codec._speedups, jelly_module._speedups
    codec._speedups = jelly_module._speedups = None
    try:
        yield
    finally:
        codec._speedups, jelly_module._speedups = saved


def outcome(call: Any) -> tuple[str, str]:
    """What a call did, comparable across implementations: its result's repr or its error."""
    try:
        return ("ok", typed_repr(call()))
    except (BananaError, InsecureJelly) as error:
        return (type(error).__name__, str(error))


def typed_repr(value: Any) -> str:
    """A repr that tells 1 from True from 1.0, and where NaN equals NaN."""
    if isinstance(value, (list, tuple)):
        inner = ", ".join(typed_repr(item) for item in value)
        return f"{type(value).__name__}[{inner}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{typed_repr(k)}: {typed_repr(v)}" for k, v in value.items())
        return f"dict{{{inner}}}"
    if isinstance(value, (set, frozenset)):
        inner = ", ".join(sorted(typed_repr(item) for item in value))
        return f"{type(value).__name__}{{{inner}}}"
    if isinstance(value, float) and math.isnan(value):
        return "float(nan)"
    return f"{type(value).__name__}({value!r})"


def test_ci_builds_the_accelerator() -> None:
    """A fresh machine with a C compiler must get the fast paths; CI has one."""
    if not os.environ.get("CI") or os.environ.get("SPREAD_NO_SPEEDUPS"):
        pytest.skip("only checked in CI")
    assert speedups is not None


# -- encoding -----------------------------------------------------------------------------------


class Count(int):
    pass


class Name(bytes):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


leaves = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-300, 20000),
    st.booleans(),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.sampled_from([b"list", b"tuple", b"None", b"dictionary", b"version", b"unicode"]),
    st.builds(Count, st.integers(0, 500)),
    st.builds(Name, st.binary(max_size=5)),
    st.sampled_from([None, "text", 1j]),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=4).map(tuple),
        st.lists(inner, max_size=3).map(Items),
    ),
    max_leaves=30,
)
limits = st.fixed_dictionaries(
    {
        "size_limit": st.sampled_from([0, 1, 3, 10, 127, 128, 640 * 1024]),
        "prefix_limit": st.sampled_from([0, 1, 2, 3, 64]),
        "max_depth": st.sampled_from([0, 1, 2, 5, 1000]),
    }
)


@needs_c
@given(values, limits, st.booleans())
def test_encoder_matches_python(value: Any, settings: dict[str, int], pb: bool) -> None:
    def run() -> bytes:
        return Encoder(PB_VOCABULARY if pb else None, **settings).encode(value)

    fast = outcome(run)
    with pure_python():
        assert outcome(run) == fast


@needs_c
def test_encoder_hands_unusual_values_to_python() -> None:
    # A subclass, an int too large for 63 bits, a value banana cannot carry at all.
    assert encode([Count(5), 2**100]) == b"\x02\x80\x05\x81" + encode(2**100)
    with pytest.raises(BananaError, match="cannot encode"):
        encode([1, object()])


# -- decoding -----------------------------------------------------------------------------------

wire_pieces = st.one_of(
    values.map(lambda value: encode(value) if _encodable(value) else b""),
    values.map(lambda value: Encoder(PB_VOCABULARY).encode(value) if _encodable(value) else b""),
    st.binary(max_size=12),
    st.sampled_from([b"\x7f" * 70 + b"\x81", b"\x05\x87", b"\x40\x87", b"\x02\x88", b"\x84\x01"]),
)


def _encodable(value: Any) -> bool:
    try:
        encode(value)
    except BananaError:
        return False
    return True


decoder_limits = st.fixed_dictionaries(
    {
        "size_limit": st.sampled_from([0, 2, 10, 640 * 1024]),
        "prefix_limit": st.sampled_from([0, 1, 2, 64]),
        "max_depth": st.sampled_from([0, 1, 3, 1000]),
        "max_message_size": st.sampled_from([1, 20, 16 * 1024 * 1024]),
    }
)


def feed_all(decoder: Decoder, wire: bytes, cuts: list[int], first: int | None) -> list[Any]:
    """Feed ``wire`` in pieces: the outcome of each feed, then whether bytes are pending."""
    results: list[Any] = []
    bounds = [0, *sorted(cuts), len(wire)]
    for start, stop in itertools.pairwise(bounds):
        results.append(outcome(lambda a=start, b=stop: decoder.feed(wire[a:b], first)))
        if results[-1][0] != "ok":
            return results  # the decoder refuses all else; its state no longer matters
    results.append(decoder.pending)
    return results


@needs_c
@given(
    st.lists(wire_pieces, max_size=6).map(b"".join),
    st.data(),
    decoder_limits,
    st.booleans(),
    st.sampled_from([None, 1, 2]),
)
def test_decoder_matches_python(
    wire: bytes, data: st.DataObject, settings: dict[str, int], pb: bool, first: int | None
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    vocabulary = PB_VOCABULARY_BY_NUMBER if pb else None
    fast = feed_all(Decoder(vocabulary, **settings), wire, cuts, first)
    with pure_python():
        assert feed_all(Decoder(vocabulary, **settings), wire, cuts, first) == fast


@needs_c
def test_decoder_refuses_before_allocating_an_announced_list() -> None:
    # 1,000 nested headers each announcing 640K elements: the C decoder reserves
    # room for what arrives, not for what is announced.
    wire = b"\x00\x00\x28\x80" * 999
    decoder = Decoder()
    tracemalloc.start()
    try:
        assert decoder.feed(wire) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # announced: 999 lists of 640K slots, 5 GB
    assert decoder.pending
    with pytest.raises(BananaError, match="nested more than 1000"):
        decoder.feed(b"\x00\x00\x28\x80" * 2)


@needs_c
def test_decoder_with_a_vocabulary_it_cannot_index_uses_python() -> None:
    decoder = Decoder({10**6: b"far", 1: b"near"})
    wire = codec._token(10**6, codec.VOCAB) + codec._token(1, codec.VOCAB)
    assert decoder.feed(wire) == [b"far", b"near"]


# -- unjelly ------------------------------------------------------------------------------------

hashables = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=6), st.binary(max_size=6),
    st.booleans(), st.none(),
)
objects = st.recursive(
    hashables,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.sets(hashables, max_size=4),
    ),
    max_leaves=25,
)
tags = st.sampled_from(
    [b"unicode", b"None", b"boolean", b"list", b"tuple", b"dictionary", b"set", b"frozenset",
     b"reference", b"dereference", b"date", b"true", b"os.system", b""]
)
sexps = st.recursive(
    st.one_of(
        tags, st.integers(), st.binary(max_size=4), st.floats(), st.sampled_from(["s", True, None]),
        st.sampled_from([b"\xff\xfe", b"true", b"false"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(tags, st.lists(inner, max_size=3)).map(lambda t: [t[0], *t[1]]),
    ),
    max_leaves=20,
)


@needs_c
@given(objects)
def test_unjelly_matches_python_on_values(value: Any) -> None:
    received = codec.decode(encode(jelly(value)))
    fast = outcome(lambda: unjelly(received))
    assert fast == ("ok", typed_repr(value))
    with pure_python():
        assert outcome(lambda: unjelly(received)) == fast


@needs_c
@given(sexps, st.sampled_from([None, "fresh", "instances"]), st.sampled_from([2, 5, 500]))
def test_unjelly_matches_python_on_any_sexp(sexp: Any, taster_kind: str | None, depth: int) -> None:
    taster: Any = None
    if taster_kind == "fresh":
        taster = SecurityOptions()  # no lists, tuples or dicts
    elif taster_kind == "instances":
        taster = SecurityOptions()
        taster.allowBasicTypes()
    fast = outcome(lambda: unjelly(sexp, taster, maxDepth=depth))
    with pure_python():
        assert outcome(lambda: unjelly(sexp, taster, maxDepth=depth)) == fast


def test_unjelly_asks_the_taster_about_containers() -> None:
    with pytest.raises(InsecureJelly, match="list"):
        unjelly([b"list", 1, 2], SecurityOptions())


def test_unjelly_defers_to_the_invokers_own_forms() -> None:
    class Invoker:
        protocolUnjellyables = {b"tuple": lambda unjellier, sexp: "mine"}

    assert unjelly([b"list", [b"tuple", 1]], None, None, Invoker()) == ["mine"]


def test_unjelly_defers_to_registered_classes() -> None:
    from spread._jelly_base import unjellyableFactoryRegistry

    unjellyableFactoryRegistry[b"set"] = lambda state: ("factory", state)
    try:
        assert unjelly([b"set", 1], SecurityOptions()) == ("factory", 1)
    finally:
        del unjellyableFactoryRegistry[b"set"]
