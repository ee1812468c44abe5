"""The decoder's list budget: a message opens at most one list per 4 bytes, plus an allowance.

An empty list is 2 bytes on the wire and a Python list of 56 or more, so a peer sending a
message of empty lists made us hold 30 to 40 times what it sent. Every list jelly sends carries
a tag, so PB data never comes near the budget. Each test runs on the C scanner (where built)
and on the pure-Python one.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_banana import header

import spread._banana_codec as codec
from spread._banana_codec import BYTES_PER_LIST, LIST_ALLOWANCE
from spread.banana import PB_VOCABULARY, PB_VOCABULARY_BY_NUMBER, BananaError, Decoder, Encoder
from spread.jelly import jelly

BUDGET_ERROR = "holding more than"


@pytest.fixture(params=["C", "Python"])
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test once on the C scanner and once on the pure-Python one."""
    if request.param == "C" and codec._speedups is None:
        pytest.skip("spread._speedups is not built")
    if request.param == "Python":
        monkeypatch.setattr(codec, "_speedups", None)
    yield request.param


both_scanners = pytest.mark.usefixtures("scanner")


def each_scanner() -> Iterator[str]:
    """For hypothesis tests, which take no fixtures: each scanner in turn, then as before."""
    saved = codec._speedups
    try:
        for name, fast in (("C", saved), ("Python", None)):
            if fast is not None or name == "Python":
                codec._speedups = fast
                yield name
    finally:
        codec._speedups = saved




def list_of(count: int, element: bytes) -> bytes:
    """A list of ``count`` copies of the encoded ``element``."""
    return header(count, codec.LIST) + element * count


EMPTY = b"\x00\x80"  # []
NONE = b"\x01\x80\x01\x87"  # [b"None"], as jelly sends None in the "pb" dialect


def feed_in_chunks(decoder: Decoder, wire: bytes, size: int) -> list[Any]:
    """Feed ``wire`` ``size`` bytes at a time: the expressions that came out."""
    received: list[Any] = []
    for start in range(0, len(wire), size):
        received += decoder.feed(wire[start : start + size])
    return received


# -- the attack --------------------------------------------------------------------------------


@both_scanners
def test_empty_list_bomb_is_refused_long_before_it_arrives() -> None:
    bomb = list_of(600_000, EMPTY)  # 1.2 MB announcing 600,000 lists
    decoder = Decoder(PB_VOCABULARY_BY_NUMBER)
    sent = 0
    tracemalloc.start()
    try:
        with pytest.raises(BananaError, match=BUDGET_ERROR):
            for start in range(0, len(bomb), 4096):
                sent += 4096
                decoder.feed(bomb[start : start + 4096])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Refused once 2 bytes a list outran 4 a list by the allowance: 2 * 2 * 4096 bytes in.
    assert sent <= 5 * 4096
    assert peak < 2 * 1024 * 1024


@both_scanners
def test_jelly_like_lists_of_the_same_count_are_accepted() -> None:
    for element, vocabulary in ((NONE, PB_VOCABULARY_BY_NUMBER), (b"\x01\x80\x01\x82x", None)):
        decoder = Decoder(vocabulary)
        received = feed_in_chunks(decoder, list_of(600_000, element), 4096)
        assert len(received) == 1
        assert len(received[0]) == 600_000
        assert not decoder.pending


@both_scanners
def test_jelly_data_full_of_nones_and_empty_containers_is_accepted() -> None:
    value = [x for _ in range(20_000) for x in (None, (), [], {}, (None,), [[None]], {1: None})]
    wire = Encoder(PB_VOCABULARY).encode(jelly(value))
    assert len(Decoder(PB_VOCABULARY_BY_NUMBER).feed(wire)) == 1


@both_scanners
def test_the_error_names_the_rule_and_the_setting() -> None:
    decoder = Decoder()
    with pytest.raises(BananaError) as refused:
        decoder.feed(list_of(9000, EMPTY))
    # The top-level list and 8,192 empty ones in 3 + 2 * 8192 bytes: one list too many.
    size = 3 + 2 * 8192
    assert str(refused.value).startswith(
        f"a message of {size} bytes holding more than {size // 4 + LIST_ALLOWANCE} lists;"
    )
    assert f"one list per {BYTES_PER_LIST} bytes, plus {LIST_ALLOWANCE}" in str(refused.value)
    assert "Decoder(list_allowance=...)" in str(refused.value)
    with pytest.raises(BananaError, match="already refused"):
        decoder.feed(EMPTY)


# -- the rule, exactly -------------------------------------------------------------------------


@both_scanners
def test_every_list_counts_the_top_level_one_included() -> None:
    assert Decoder(list_allowance=1).feed(EMPTY) == [[]]
    with pytest.raises(BananaError, match=f"a message of 2 bytes {BUDGET_ERROR} 0 lists"):
        Decoder(list_allowance=0).feed(EMPTY)


@both_scanners
def test_the_budget_is_checked_at_each_list_header() -> None:
    # With an allowance of 2, the n-th list may end its header at byte 4 * (n - 2) at the
    # earliest: three empty lists in a list fit (their headers end at 4, 6 and 8)...
    assert Decoder(list_allowance=2).feed(list_of(3, EMPTY)) == [[[], [], []]]
    # ...a fourth, whose header ends at byte 10, is one too many, whatever follows it.
    with pytest.raises(BananaError, match=f"a message of 10 bytes {BUDGET_ERROR} 4 lists"):
        Decoder(list_allowance=2).feed(list_of(4, EMPTY)[:10])
    # Nested lists count the same: [[[[]]]] is 4 lists in 8 bytes.
    assert Decoder(list_allowance=2).feed(b"\x01\x80" * 3 + EMPTY) == [[[[[]]]]]
    with pytest.raises(BananaError, match=BUDGET_ERROR):
        Decoder(list_allowance=2).feed(b"\x01\x80" * 4 + EMPTY)


@both_scanners
def test_bytes_other_than_lists_pay_for_lists() -> None:
    # A 20-byte string early in the message pays for five more lists later.
    wire = header(6, codec.LIST) + header(20, codec.STRING) + b"x" * 20 + EMPTY * 5
    assert Decoder(list_allowance=1).feed(wire) == [[b"x" * 20, [], [], [], [], []]]


@both_scanners
def test_lists_count_whichever_path_decodes_them() -> None:
    # A list of 100 pairs of short strings (the Python scanner's shortcut), then empty lists,
    # under a two-digit header: with an allowance of 1, exactly 101 empty lists fit.
    pairs = b"\x02\x80\x00\x82\x00\x82" * 100  # [b"", b""]: one list in 6 bytes

    def wire(empty_lists: int) -> bytes:
        return header(100 + empty_lists, codec.LIST) + pairs + EMPTY * empty_lists

    assert [len(message) for message in Decoder(list_allowance=1).feed(wire(101))] == [201]
    with pytest.raises(BananaError, match=f"a message of 807 bytes {BUDGET_ERROR} 202 lists"):
        Decoder(list_allowance=1).feed(wire(102))


@both_scanners
def test_the_allowance_is_configurable() -> None:
    # For raw banana users who send bare lists: a large allowance accepts the bomb.
    decoder = Decoder(list_allowance=700_000)
    received = feed_in_chunks(decoder, list_of(600_000, EMPTY), 65536)
    assert len(received[0]) == 600_000
    # An allowance beyond the C scanner's numbers (2**62) is Python's to apply.
    assert Decoder(list_allowance=2**70).feed(list_of(10_000, EMPTY)) == [[[]] * 10_000]


# -- one message at a time ---------------------------------------------------------------------


@both_scanners
def test_the_budget_spans_feed_boundaries() -> None:
    wire = list_of(4, EMPTY)  # refused at byte 10 with an allowance of 2, as above
    for cuts in ([4, 6, 8], list(range(1, 10)), [9]):
        decoder = Decoder(list_allowance=2)
        pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
        for piece in pieces[:-1]:
            assert decoder.feed(piece) == []  # each piece alone is within the budget
        with pytest.raises(BananaError, match=f"a message of 10 bytes {BUDGET_ERROR} 4 lists"):
            decoder.feed(pieces[-1])


@both_scanners
def test_bytes_of_earlier_feeds_still_pay_for_lists() -> None:
    string = header(20, codec.STRING) + b"x" * 20
    decoder = Decoder(list_allowance=1)
    assert decoder.feed(header(6, codec.LIST) + string) == []
    for _ in range(4):
        assert decoder.feed(EMPTY) == []
    assert decoder.feed(EMPTY) == [[b"x" * 20, [], [], [], [], []]]


@both_scanners
def test_the_budget_starts_again_with_each_message() -> None:
    message = list_of(3, EMPTY)  # as many lists as an allowance of 2 lets one message hold
    assert Decoder(list_allowance=2).feed(message * 1000) == [[[], [], []]] * 1000
    decoder = Decoder(list_allowance=2)
    for _ in range(1000):
        assert decoder.feed(message) == [[[], [], []]]
    # A message completed and the next begun in one feed, the rest in the next.
    decoder = Decoder(list_allowance=2)
    assert decoder.feed(message + message[:5]) == [[[], [], []]]
    assert decoder.feed(message[5:] + message) == [[[], [], []]] * 2
    # And where a feed stops early for max_expressions.
    decoder = Decoder(list_allowance=2)
    assert decoder.feed(message * 3, max_expressions=1) == [[[], [], []]]
    assert decoder.feed(max_expressions=1) == [[[], [], []]]
    assert decoder.feed(message) == [[[], [], []]] * 2


@both_scanners
def test_a_refused_message_is_refused_whatever_came_before() -> None:
    good = list_of(3, EMPTY)
    with pytest.raises(BananaError, match=f"a message of 10 bytes {BUDGET_ERROR} 4 lists"):
        Decoder(list_allowance=2).feed(good * 5 + list_of(4, EMPTY))


# -- what jelly sends --------------------------------------------------------------------------

dict_keys = st.one_of(st.none(), st.integers(), st.tuples(st.none()))
jellyable = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.binary(max_size=3), st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(dict_keys, inner, max_size=4),
        st.frozensets(st.one_of(st.none(), st.integers()), max_size=3),
    ),
    max_leaves=40,
)


def dict_pairs(value: Any) -> int:
    """How many [key, value] pairs jelly sends for ``value``: its only lists without a tag."""
    if isinstance(value, dict):
        return len(value) + sum(dict_pairs(k) + dict_pairs(v) for k, v in value.items())
    if isinstance(value, (list, tuple, frozenset)):
        return sum(dict_pairs(item) for item in value)
    return 0


@given(jellyable, st.booleans())
def test_jelly_needs_one_list_of_allowance_plus_one_per_two_dict_items(
    value: Any, pb: bool
) -> None:
    """Every list jelly sends but a dict's [key, value] pair starts with a tag, so when its
    header arrives the lists before it have brought 4 bytes each. A pair brings only 2 of its
    own (its key and value pay for themselves), so two pairs may cost one list of allowance."""
    wire = Encoder(PB_VOCABULARY if pb else None).encode(jelly(value))
    for _ in each_scanner():
        decoder = Decoder(PB_VOCABULARY_BY_NUMBER if pb else None)
        decoder.list_allowance = 1 + (dict_pairs(value) + 1) // 2
        assert len(decoder.feed(wire)) == 1
