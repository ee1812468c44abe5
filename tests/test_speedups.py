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
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import stack_room
from twisted.internet.testing import StringTransport
from twisted.spread import banana as twisted_banana

import spread._banana_codec as codec
import spread._banana_encoder as encoder_module
import spread.jelly as jelly_module
from spread._jelly_keys import MAX_KEYS_PER_HASH
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
    """Run the block on the pure-Python code paths only (each module keeps its own name)."""
    saved = codec._speedups, encoder_module._speedups, jelly_module._speedups
    codec._speedups = encoder_module._speedups = jelly_module._speedups = None
    try:
        yield
    finally:
        codec._speedups, encoder_module._speedups, jelly_module._speedups = saved


def outcome(call: Any) -> tuple[str, str]:
    """What a call did, comparable across implementations: its result's repr or its error."""
    try:
        return ("ok", typed_repr(call()))
    except (BananaError, InsecureJelly) as error:
        return (type(error).__name__, str(error))


class _Written(str):
    """Text already written, on typed_repr's work stack (among values still to write)."""


def typed_repr(value: Any) -> str:
    """A repr that tells 1 from True from 1.0, and where NaN equals NaN.

    Lists, tuples and dicts are walked with a stack of their own, not by recursion, so that
    values nested thousands deep (as the depth tests decode) are written too."""
    parts: list[str] = []
    work: list[Any] = [value]
    while work:
        item = work.pop()
        if type(item) is _Written:
            parts.append(item)
        elif isinstance(item, (list, tuple)):
            work.append(_Written("]"))
            for index in reversed(range(len(item))):
                work.append(item[index])
                if index:
                    work.append(_Written(", "))
            parts.append(f"{type(item).__name__}[")
        elif isinstance(item, dict):
            work.append(_Written("}"))
            pairs = list(item.items())
            for index in reversed(range(len(pairs))):
                key, entry = pairs[index]
                work.extend([entry, _Written(": "), key])
                if index:
                    work.append(_Written(", "))
            parts.append("dict{")
        elif isinstance(item, (set, frozenset)):
            inner = ", ".join(sorted(typed_repr(member) for member in item))
            parts.append(f"{type(item).__name__}{{{inner}}}")
        elif isinstance(item, float) and math.isnan(item):
            parts.append("float(nan)")
        else:
            parts.append(f"{type(item).__name__}({item!r})")
    return "".join(parts)


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
# Limits past what a C ssize_t (32 or 64 bits) or a long long holds: C clamps them, and must
# answer as Python does.
HUGE_LIMITS = [2**31 - 1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 2**64 + 1, 2**100]

limits = st.fixed_dictionaries(
    {
        "size_limit": st.sampled_from([0, 1, 3, 10, 127, 128, 640 * 1024, *HUGE_LIMITS]),
        "prefix_limit": st.sampled_from([0, 1, 2, 3, 64, *HUGE_LIMITS]),
        "max_depth": st.sampled_from([0, 1, 2, 5, 1000, *HUGE_LIMITS]),
    }
)


@needs_c
@settings(deadline=None)
@given(values, limits, st.booleans())
def test_encoder_matches_python(value: Any, settings: dict[str, int], pb: bool) -> None:
    def run() -> bytes:
        return Encoder(PB_VOCABULARY if pb else None, **settings).encode(value)

    fast = outcome(run)
    with pure_python():
        assert outcome(run) == fast


def nested_in(depth: int, leaf: Any) -> Any:
    """``leaf`` inside ``depth`` lists (``depth`` 0: the leaf itself)."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


deep_leaves = st.sampled_from([0, 2**100, b"x" * 200, 1.5, True, b"None", (), (1, b"ab"), Count(3)])


@needs_c
@settings(deadline=None, max_examples=150)
@given(
    st.one_of(
        st.sampled_from([997, 998, 999, 1000, 1001, 1002, 1500]), st.integers(0, 1100)
    ),
    deep_leaves,
    st.sampled_from([997, 998, 999, 1000, 1001, 2**63, 2**64]),
    st.one_of(st.none(), st.sampled_from([1300, 3000]), st.integers(64, 1200)),
    st.booleans(),
)
def test_encoder_matches_python_on_deep_nesting(
    depth: int, leaf: Any, max_depth: int, room: int | None, pb: bool
) -> None:
    # Near max_depth, near the C recursion cap and near the interpreter's recursion limit
    # (which may be lowered, or the caller's stack deep): C must give up where Python does.
    value = nested_in(depth, leaf)
    encoder = Encoder(PB_VOCABULARY if pb else None, max_depth=max_depth)

    def run() -> bytes:
        with stack_room(room):
            return encoder.encode(value)

    fast = outcome(run)
    with pure_python():
        assert outcome(run) == fast


# Strings from 4 KiB are not copied into C's scratch buffer, which is closed and a new one
# begun every 64 KiB: sizes and mixes around both edges.
large_parts = st.lists(
    st.one_of(
        st.sampled_from([4095, 4096, 4097, 70_000, 600_000]).map(lambda n: os.urandom(n)),
        st.binary(max_size=200),
        st.integers(-(2**40), 2**40),
        st.lists(st.binary(max_size=3000), max_size=30),
    ),
    max_size=60,
)


@needs_c
@settings(deadline=None, max_examples=60)
@given(large_parts, st.integers(0, 400), st.booleans())
def test_encoder_matches_python_on_large_messages(parts: list[Any], padding: int, pb: bool) -> None:
    value = [b"pad" * padding, *parts, [b"x" * 900] * padding]  # up to ~360 KB of small ones
    symbols = Encoder(PB_VOCABULARY if pb else None)._symbols
    fast = speedups.encode(value, symbols, 640 * 1024, 64, 100)
    assert fast is not None  # C took it: large messages are not handed to Python
    with pure_python():
        assert Encoder(PB_VOCABULARY if pb else None).encode(value) == fast


@needs_c
def test_encoder_hands_unusual_values_to_python() -> None:
    # A subclass, an int too large for 63 bits, a value banana cannot carry at all.
    assert encode([Count(5), 2**100]) == b"\x02\x80\x05\x81" + encode(2**100)
    with pytest.raises(BananaError, match="Banana cannot send"):
        encode([1, object()])


# -- decoding -----------------------------------------------------------------------------------


def digits_of(value: int) -> bytes:
    """``value`` in base 128, least significant digit first, without high-order zeros."""
    digits = bytearray()
    while value:
        digits.append(value & 0x7F)
        value >>= 7
    return bytes(digits)


TYPE_BYTES = [
    codec.LIST, codec.INT, codec.STRING, codec.NEG, codec.FLOAT, codec.LONGINT, codec.LONGNEG,
    codec.VOCAB,
]  # fmt: skip


@st.composite
def padded_headers(draw: st.DrawFn) -> bytes:
    """An element whose header has high-order zero digits (legal: the value is unchanged).

    The prefix limit counts digits, zeros included, so the digit counts drawn cluster
    around the limits the tests use (1, 2, 9, 10 and 64) and the 63 bits a C number holds.
    """
    kind = draw(st.sampled_from(TYPE_BYTES))
    value = draw(
        st.one_of(
            st.integers(0, 5),
            st.integers(0, 40),  # symbols, known and not, in the "pb" vocabulary
            st.sampled_from([127, 128, 2**31 - 1, 2**31, 2**31 + 1, 2**63 - 1, 2**63]),
            st.sampled_from([2**64, 2**70, 640 * 1024, 640 * 1024 + 1]),
            st.integers(0, 2**300),
        )
    )
    significant = digits_of(value)
    count = draw(
        st.one_of(
            st.sampled_from([10, 64, 65, 9, 11, 63, 66, 1, 2, 3]),
            st.integers(len(significant), len(significant) + 3),
            st.integers(0, 70),
        )
    )
    header = significant + bytes(max(0, count - len(significant))) + bytes((kind,))
    if kind == codec.STRING:
        # The whole string when it is short; an announced long one stays incomplete.
        body = draw(st.binary(min_size=min(value, 40), max_size=min(value, 40)))
    elif kind == codec.FLOAT:
        body = draw(st.binary(min_size=8, max_size=8))
    elif kind == codec.LIST:
        # A few elements here; the pieces that follow on the wire may supply the rest.
        elements = st.sampled_from([b"\x05\x81", b"\x01\x82x", b"\x00\x80", b"\x03\x00\x00\x83"])
        body = b"".join(draw(st.lists(elements, max_size=min(value, 4))))
    else:
        body = b""
    return header + body


LIST_ELEMENTS = [
    b"\x00\x80",  # []
    b"\x01\x80\x00\x81",  # [0]
    b"\x01\x80\x01\x87",  # [b"None"] in the "pb" dialect; an unknown symbol otherwise
    b"\x02\x80\x00\x82\x01\x82x",  # [b"", b"x"]: the Python scanner's pair shortcut
    b"\x01\x80\x00\x80",  # [[]]
    b"\x01\x82x",  # b"x": bytes that pay for lists
]


@st.composite
def list_heavy(draw: st.DrawFn) -> bytes:
    """Many empty or tiny lists, nested, for the list budget (small allowances reach it).

    Either a value of nested short lists, encoded, or a list header announcing a count that
    the elements after it may match, fall short of (the wire ends inside it) or exceed.
    """
    if draw(st.booleans()):
        nested = st.recursive(
            st.sampled_from([[], [0], [b""], [b"None"]]),
            lambda inner: st.lists(inner, max_size=8),
            max_leaves=80,
        )
        value = draw(nested)
        return Encoder(PB_VOCABULARY).encode(value) if draw(st.booleans()) else encode(value)
    elements = draw(st.lists(st.sampled_from(LIST_ELEMENTS), max_size=150))
    announced = len(elements) + draw(st.sampled_from([0, 0, -1, 1, 50]))
    return codec._token(max(announced, 0), codec.LIST) + b"".join(elements)


wire_pieces = st.one_of(
    list_heavy(),
    values.map(lambda value: encode(value) if _encodable(value) else b""),
    values.map(lambda value: Encoder(PB_VOCABULARY).encode(value) if _encodable(value) else b""),
    st.binary(max_size=12),
    st.sampled_from([b"\x7f" * 70 + b"\x81", b"\x05\x87", b"\x40\x87", b"\x02\x88", b"\x84\x01"]),
    padded_headers(),
)


def _encodable(value: Any) -> bool:
    try:
        encode(value)
    except BananaError:
        return False
    return True


decoder_limits = st.fixed_dictionaries(
    {
        "size_limit": st.sampled_from([0, 2, 10, 640 * 1024, *HUGE_LIMITS]),
        "prefix_limit": st.sampled_from([0, 1, 2, 64, *HUGE_LIMITS]),
        "max_depth": st.sampled_from([0, 1, 3, 1000, *HUGE_LIMITS]),
        "max_message_size": st.sampled_from([1, 20, 16 * 1024 * 1024, *HUGE_LIMITS]),
        "list_allowance": st.sampled_from([4096, 0, 1, 2, 5, 20, *HUGE_LIMITS]),
    }
)


def feed_all(decoder: Decoder, wire: bytes, cuts: list[int], first: int | None) -> list[Any]:
    """Feed ``wire`` in pieces: the outcome of each feed, then what the decoder holds."""
    results: list[Any] = []
    bounds = [0, *sorted(cuts), len(wire)]
    for start, stop in itertools.pairwise(bounds):
        results.append(outcome(lambda a=start, b=stop: decoder.feed(wire[a:b], first)))
        if results[-1][0] != "ok":
            return results  # the decoder refuses all else; its state no longer matters
    # Whether bytes are pending, and the incomplete message's bytes and lists so far.
    results.append((decoder.pending, decoder._partial, decoder._lists))
    return results


@needs_c
@settings(deadline=None)
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


# Default limits first: hypothesis favours the first choice, and most padded headers are
# within the default prefix limit (the case a Twisted peer may send), not refused at once.
padded_limits = st.fixed_dictionaries(
    {
        # Beyond 63 bits, C compares a header beyond 63 bits with the limit itself.
        "size_limit": st.sampled_from([640 * 1024, 0, 2, 10, 2**63 - 1, 2**63, 2**64, 2**70 + 5]),
        # 9 digits fill the C scanner's 63-bit number, the 10th is the first beyond it.
        "prefix_limit": st.sampled_from([64, 65, 10, 9, 2, 1, 0, 2**63, 2**64]),
        "max_depth": st.sampled_from([1000, 1, 3, 2**63]),
        "max_message_size": st.sampled_from([16 * 1024 * 1024, 20, 2**64]),
        "list_allowance": st.sampled_from([4096, 1, 3, 2**62, 2**64]),
    }
)


def assert_scanners_agree(
    wire: bytes, data: st.DataObject, settings: dict[str, int], pb: bool, first: int | None
) -> None:
    """C and Python decode ``wire``, cut at drawn places or byte by byte, to the same state."""
    cuts = data.draw(
        st.one_of(
            st.lists(st.integers(0, len(wire)), max_size=8),
            st.just(list(range(1, len(wire)))),  # one byte at a time
        )
    )
    vocabulary = PB_VOCABULARY_BY_NUMBER if pb else None
    fast = feed_all(Decoder(vocabulary, **settings), wire, cuts, first)
    with pure_python():
        assert feed_all(Decoder(vocabulary, **settings), wire, cuts, first) == fast


@needs_c
@settings(deadline=None)
@given(
    st.lists(st.one_of(padded_headers(), wire_pieces), min_size=1, max_size=5).map(b"".join),
    st.data(),
    padded_limits,
    st.booleans(),
    st.sampled_from([None, 1]),
)
def test_decoder_matches_python_on_high_order_zero_digits(
    wire: bytes, data: st.DataObject, settings: dict[str, int], pb: bool, first: int | None
) -> None:
    # Mostly padded headers, so most cuts fall inside one: a header split across feeds.
    assert_scanners_agree(wire, data, settings, pb, first)


# Default limits but the list allowance, so that most wires reach the list budget somewhere.
list_budget_limits = st.fixed_dictionaries(
    {
        "max_depth": st.sampled_from([1000, 3]),
        "max_message_size": st.sampled_from([16 * 1024 * 1024, 40]),
        "list_allowance": st.sampled_from([1, 2, 3, 5, 10, 30, 4096]),
    }
)


@needs_c
@settings(deadline=None)
@given(
    st.lists(st.one_of(list_heavy(), list_heavy(), wire_pieces), min_size=1, max_size=6).map(
        b"".join
    ),
    st.data(),
    list_budget_limits,
    st.booleans(),
    st.sampled_from([None, 1]),
)
def test_decoder_matches_python_on_list_heavy_wires(
    wire: bytes, data: st.DataObject, settings: dict[str, int], pb: bool, first: int | None
) -> None:
    assert_scanners_agree(wire, data, settings, pb, first)


@needs_c
@given(
    st.lists(st.sampled_from(LIST_ELEMENTS[:5]), min_size=1, max_size=5),
    st.integers(8000, 8400),
    st.data(),
    st.sampled_from([None, 1]),
)
def test_decoder_matches_python_at_the_default_list_budget(
    pattern: list[bytes], count: int, data: st.DataObject, first: int | None
) -> None:
    # Thousands of tiny lists: empty ones reach the default budget near 8,192; the others
    # (4 bytes each) never do. Two messages, so the budget must start again for the second.
    elements = (pattern * count)[:count]
    message = codec._token(count, codec.LIST) + b"".join(elements)
    wire = message + message
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
    fast = feed_all(Decoder(PB_VOCABULARY_BY_NUMBER), wire, cuts, first)
    with pure_python():
        assert feed_all(Decoder(PB_VOCABULARY_BY_NUMBER), wire, cuts, first) == fast


@st.composite
def deep_wires(draw: st.DrawFn) -> bytes:
    """Lists nested about as deep as the depth limits drawn below, complete or not, maybe
    with more after them."""
    depth = draw(
        st.one_of(
            st.sampled_from([997, 998, 999, 1000, 1001, 1002, 1500, 5000]), st.integers(0, 1100)
        )
    )
    leaf = draw(st.sampled_from([b"\x00\x80", b"\x05\x81", b"\x01\x82x", b"\x01\x87", b""]))
    wire = b"\x01\x80" * depth + leaf
    return wire + draw(st.sampled_from([b"", b"\x01\x81", b"\x02\x80"]))


@needs_c
@settings(deadline=None, max_examples=100)
@given(
    deep_wires(),
    st.data(),
    st.sampled_from([997, 998, 999, 1000, 1001, 1002, 2**63, 2**64]),
    st.sampled_from([4096, 0, 2**63]),
    st.booleans(),
)
def test_decoder_matches_python_on_deep_nesting(
    wire: bytes, data: st.DataObject, max_depth: int, list_allowance: int, pb: bool
) -> None:
    settings = {"max_depth": max_depth, "list_allowance": list_allowance}
    assert_scanners_agree(wire, data, settings, pb, None)


def twisted_decoded(wire: bytes, pb: bool) -> list[Any] | None:
    """What Twisted's decoder (prefix limit 64) makes of ``wire``; None if it refuses it."""
    received: list[Any] = []
    peer = twisted_banana.Banana()
    peer.expressionReceived = received.append
    peer.makeConnection(StringTransport())
    peer._selectDialect(b"pb" if pb else b"none")
    try:
        peer.dataReceived(wire)
    except Exception:  # BananaError, or KeyError for an unknown symbol
        return None
    return received


def zero_padded(value: int, digits: int, kind: int) -> bytes:
    """A header for ``value`` written with ``digits`` digits: high-order zeros added."""
    significant = digits_of(value)
    return significant + bytes(digits - len(significant)) + bytes((kind,))


PREFIX_ERROR = "Security precaution: more than 64 bytes of prefix"
TOO_LONG_ERROR = "more than the size limit"


@pytest.mark.parametrize(
    ("wire", "pb", "expected"),
    [
        # The report: a one-element list announced in ten digits.
        (b"\x01" + b"\x00" * 9 + b"\x80\x05\x81", False, [[5]]),
        (zero_padded(1, 10, codec.LIST) + b"\x05\x81", False, [[5]]),
        (zero_padded(1, 64, codec.LIST) + b"\x05\x81", False, [[5]]),
        (zero_padded(1, 65, codec.LIST) + b"\x05\x81", False, PREFIX_ERROR),
        (zero_padded(0, 64, codec.LIST), False, [[]]),
        (zero_padded(3, 10, codec.STRING) + b"abc", False, [b"abc"]),
        (zero_padded(3, 64, codec.STRING) + b"abc", False, [b"abc"]),
        (zero_padded(3, 65, codec.STRING) + b"abc", False, PREFIX_ERROR),
        (zero_padded(640 * 1024 + 1, 64, codec.STRING), False, TOO_LONG_ERROR),
        (zero_padded(640 * 1024 + 1, 64, codec.LIST), False, TOO_LONG_ERROR),
        (zero_padded(5, 10, codec.INT), False, [5]),
        (zero_padded(5, 64, codec.INT), False, [5]),
        (zero_padded(5, 65, codec.INT), False, PREFIX_ERROR),
        (zero_padded(5, 64, codec.NEG), False, [-5]),
        (zero_padded(2**63 - 1, 64, codec.LONGINT), False, [2**63 - 1]),
        (zero_padded(2**63, 10, codec.LONGINT), False, [2**63]),
        (zero_padded(2**63, 64, codec.LONGNEG), False, [-(2**63)]),
        (zero_padded(2**447, 64, codec.LONGINT), False, [2**447]),
        (zero_padded(2**448, 65, codec.LONGINT), False, PREFIX_ERROR),
        (zero_padded(1, 10, codec.VOCAB), True, [b"None"]),
        (zero_padded(31, 64, codec.VOCAB), True, [b"uncache"]),
        (zero_padded(1, 65, codec.VOCAB), True, PREFIX_ERROR),
        (zero_padded(32, 64, codec.VOCAB), True, "32: unknown vocabulary symbol"),
        (zero_padded(2**63 + 1, 12, codec.VOCAB), True, f"{2**63 + 1}: unknown vocabulary symbol"),
    ],
)
def test_high_order_zero_digits_count_toward_the_prefix_limit_only(
    wire: bytes, pb: bool, expected: list[Any] | str
) -> None:
    """A header's digits are limited in number, not in value: zeros after the value count."""
    vocabulary = PB_VOCABULARY_BY_NUMBER if pb else None
    runs: list[Any] = []
    for implementation in (contextlib.nullcontext, pure_python):
        with implementation():
            whole = outcome(lambda: Decoder(vocabulary).feed(wire))
            decoder = Decoder(vocabulary)
            split = feed_all(decoder, wire, list(range(1, len(wire))), None)
            runs.append((whole, split))
    assert runs[0] == runs[1]  # the C scanner (where built) as the Python one
    (kind, result), split = runs[1]
    twisted = twisted_decoded(wire, pb)
    if isinstance(expected, str):
        assert kind in ("BananaError", "UnknownSymbolError")
        assert expected in result
        assert twisted is None
    else:
        assert (kind, result) == ("ok", typed_repr(expected))
        assert [step for step in split[:-1] if step != ("ok", "list[]")] == [(kind, result)]
        assert twisted == expected


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


@needs_c
@pytest.mark.parametrize("limit", HUGE_LIMITS)
def test_c_scanner_takes_limits_of_any_size(limit: int) -> None:
    """Limits past 2**62 (or past a 32-bit ssize_t) are clamped in C, not left to Python, and
    never wrap: 2**32 + 1 is not 1, 2**64 + 1 is not 1."""
    assert speedups is not None
    stack: list[tuple[list[object], int]] = [([], -1)]
    wire = b"\x02\x82ab" + codec._token(2**40, codec.STRING)
    scanned = speedups.scan(wire, len(wire), stack, (), limit, limit, limit, limit, limit, 0, 0)
    assert scanned is not None
    pos, needed, _last_done, _lists, error, _detail, length = scanned
    assert stack[0][0] == [b"ab"]
    if limit >= 2**40:
        assert (pos, error) == (4, 0)  # the second string is awaited
        assert needed == 4 + len(codec._token(2**40, codec.STRING)) + 2**40
    else:
        assert (error, length) == (codec._ERR_TOO_LONG, 2**40)
    assert speedups.encode([b"ab", [1]], {}, limit, limit, limit) == encode([b"ab", [1]])
    allowed = jelly_module._builtinForms(None, None)
    assert speedups.unjelly([b"list", [b"tuple", 1]], allowed, limit) == [(1,)]


@needs_c
def test_c_entry_points_leave_limits_that_are_not_ints_to_python() -> None:
    assert speedups is not None
    assert speedups.encode([1], {}, 10.5, 64, 1000) is None
    assert speedups.unjelly([b"list", 1], jelly_module._builtinForms(None, None), None) is (
        NotImplemented
    )
    assert speedups.scan(b"\x01\x81", 2, [([], -1)], (), -1, 64, 10, 10, 10, 0, 0) is None


@needs_c
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_c_unjelly_lets_an_interrupt_from_allowed_through(interrupt: type[BaseException]) -> None:
    assert speedups is not None

    def allowed(tag: bytes) -> bool:
        raise interrupt

    with pytest.raises(interrupt):
        speedups.unjelly([b"list", 1], allowed, 100)


@needs_c
def test_c_unjelly_hands_an_exception_from_allowed_to_python() -> None:
    assert speedups is not None

    def allowed(tag: bytes) -> bool:
        raise ValueError("Python asks again and reports it")

    assert speedups.unjelly([b"list", 1], allowed, 100) is NotImplemented


# -- unjelly ------------------------------------------------------------------------------------

MODULUS = sys.hash_info.modulus  # ints of smaller magnitude are their own hash

hashables = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=6), st.binary(max_size=6),
    st.booleans(), st.none(),
    st.sampled_from([MODULUS, -MODULUS, MODULUS - 1, 2 * MODULUS, -1, -2, 2.0**61, 2.0**-61]),
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
@settings(deadline=None)
@given(
    sexps,
    st.sampled_from([None, "fresh", "instances"]),
    st.sampled_from([2, 5, 500, 0, 1, -1, *HUGE_LIMITS]),
)
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


DEEP_FORMS = {
    "list": lambda inner: [b"list", inner],
    "tuple": lambda inner: [b"tuple", 1, inner],
    "dictionary": lambda inner: [b"dictionary", [[b"unicode", b"k"], inner]],
    "frozenset": lambda inner: [b"frozenset", [b"tuple", inner]],
}


@needs_c
@settings(deadline=None, max_examples=150)
@given(
    st.lists(st.sampled_from(sorted(DEEP_FORMS)), min_size=1, max_size=3),
    st.one_of(
        st.sampled_from([249, 250, 333, 499, 500, 501, 999, 1000, 1001]), st.integers(0, 1100)
    ),
    st.sampled_from([[b"None"], [b"unicode", b"x"], 5, [b"list"], [b"set", 1, 2]]),
    st.sampled_from([499, 500, 501, 999, 1000, 1001, 2**63, 2**64]),
    st.one_of(st.none(), st.sampled_from([1300, 3000]), st.integers(64, 1200)),
)
def test_unjelly_matches_python_on_deep_nesting(
    forms: list[str], depth: int, leaf: Any, max_depth: int, room: int | None
) -> None:
    # As for the encoder: near maxDepth, the C cap and the recursion limit, C gives up where
    # Python does (each form costs the Python unjellier the frames its depth counts).
    sexp = leaf
    for level in range(depth):
        sexp = DEEP_FORMS[forms[level % len(forms)]](sexp)

    def run() -> Any:
        with stack_room(room):
            return unjelly(sexp, maxDepth=max_depth)

    fast = outcome(run)
    with pure_python():
        assert outcome(run) == fast


def hash_one(n: int) -> float | int:
    """The n-th of the numbers of hash 1: the 34 floats 2.0 ** (61 * k), then ints."""
    return 2.0 ** (61 * (n - 17)) if n < 34 else 1 + (n - 33) * MODULUS


# Families of keys that share one hash, the n-th key of each distinct from the others.
COLLIDING_FAMILIES = {
    "multiples of the modulus": lambda n: (n + 1) * MODULUS,
    "floats and ints": hash_one,
    "tuples": lambda n: [b"tuple", (n + 1) * MODULUS, [b"unicode", b"x"]],
    "frozensets": lambda n: [b"frozenset", (n + 1) * MODULUS],
    "decimals": lambda n: [b"decimal", (n + 1) * MODULUS, 0],
    # -1 and -2 share a hash: so do the tuples made of them.
    "tuples of -1 and -2": lambda n: [b"tuple", *[-1 - (n >> bit & 1) for bit in range(8)]],
}
other_keys = st.sampled_from(
    [0, 1, -1, -2, MODULUS - 1, 1.0, b"x", [b"unicode", b"x"], [b"None"], [b"boolean", b"true"],
     [b"list"], [b"dictionary"]]
)  # fmt: skip


@st.composite
def colliding_containers(draw: st.DrawFn) -> list[Any]:
    """A set, frozenset or dict with about MAX_KEYS_PER_HASH distinct keys of one hash, some
    repeated, among other keys (and, rarely, an unhashable one)."""
    family = COLLIDING_FAMILIES[draw(st.sampled_from(sorted(COLLIDING_FAMILIES)))]
    distinct = draw(st.integers(MAX_KEYS_PER_HASH - 3, MAX_KEYS_PER_HASH + 3))
    keys = [family(n) for n in range(distinct)]
    keys += draw(st.lists(st.sampled_from(keys), max_size=5))  # equal keys: no collision
    keys += draw(st.lists(other_keys, max_size=5))
    keys = draw(st.permutations(keys))
    form = draw(st.sampled_from([b"set", b"frozenset", b"dictionary"]))
    container = [form, *keys] if form != b"dictionary" else [form, *[[k, 0] for k in keys]]
    return draw(st.sampled_from([container, [b"list", 1, container], [b"tuple", container]]))


@needs_c
@given(colliding_containers())
def test_unjelly_hands_colliding_keys_to_python(sexp: list[Any]) -> None:
    assert speedups is not None
    fast = speedups.unjelly(sexp, jelly_module._builtinForms(None, None), 500)
    with pure_python():
        python = outcome(lambda: unjelly(sexp))
    if fast is not NotImplemented:  # C decided: Python must agree
        assert python == ("ok", typed_repr(fast))
    assert outcome(lambda: unjelly(sexp)) == python


@needs_c
@pytest.mark.parametrize("form", [b"set", b"frozenset", b"dictionary"])
def test_unjelly_in_c_counts_distinct_keys_of_one_hash(form: bytes) -> None:
    def container(keys: list[Any]) -> list[Any]:
        return [form, *keys] if form != b"dictionary" else [form, *[[k, 0] for k in keys]]

    assert speedups is not None
    allowed = jelly_module._builtinForms(None, None)
    bound = [(n + 1) * MODULUS for n in range(MAX_KEYS_PER_HASH)]
    # Repeats and 0 (its own hash) are not counted; one more multiple of the modulus is.
    assert len(speedups.unjelly(container([*bound * 3, 0]), allowed, 500)) == len(bound) + 1
    assert speedups.unjelly(container([*bound, -MODULUS]), allowed, 500) is NotImplemented


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
