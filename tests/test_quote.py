"""Quoting a peer's value costs bounded time and space, however the value shares its parts.

A jelly message of about 1 KB can describe a list with 30**12 leaves (each level holds 30
references to the level below). Every test here would run for hours, or exhaust memory, if
any text on its path walked the whole graph.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import shared_sexp
from twisted.python.failure import Failure

from spread import jelly, pb
from spread._failures import loggableFailure
from spread._quote import QUOTE_LIMIT, exceptionText, quote
from spread.banana import encode
from spread.jelly import InsecureJelly


def shared_value(levels: int, width: int = 30) -> list[Any]:
    value: list[Any] = [1, 2]
    for _ in range(levels):
        value = [value] * width
    return value


def test_the_attack_message_is_small() -> None:
    assert len(encode(shared_sexp(12))) < 8_000


@given(levels=st.integers(1, 40), width=st.integers(1, 60), limit=st.integers(1, 500))
def test_quote_of_a_shared_graph_is_bounded(levels: int, width: int, limit: int) -> None:
    text = quote(shared_value(levels, width), limit)
    assert len(text) <= limit + 3


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
))
def test_quote_of_a_small_value_is_its_repr(value: object) -> None:
    assert quote(value, 10_000) == repr(value)


def test_quote_cuts_long_text_before_building_it() -> None:
    assert quote("x" * 10**7) == repr("x" * QUOTE_LIMIT)[: QUOTE_LIMIT] + "..."


def test_quote_shows_huge_ints_by_width() -> None:
    assert quote(1 << 100_000) == "<int of 100001 bits>"


def test_quote_calls_no_unknown_repr() -> None:
    class Loud:
        def __repr__(self) -> str:
            raise AssertionError("quote called a user's __repr__")

    assert quote([Loud()]) == f"[<{__name__}.{Loud.__qualname__} object>]"


def test_exception_text_keeps_plain_messages() -> None:
    assert exceptionText(ValueError("no such account")) == "no such account"
    assert exceptionText(KeyError("alice")) == "'alice'"
    assert exceptionText(OSError(2, "gone")) == "[Errno 2] gone"


def test_exception_text_of_a_shared_graph_is_bounded() -> None:
    text = exceptionText(KeyError(shared_value(20)), limit=200)
    assert text.startswith("[[[") and len(text) <= 203


def test_a_logged_failure_of_a_shared_graph_formats_cheaply() -> None:
    fail = loggableFailure(Failure(KeyError(shared_value(20))))
    assert fail.check(KeyError)
    assert len(fail.getTraceback()) < 10_000


@pytest.mark.parametrize(
    "sexp",
    [
        [b"dictionary", [shared_sexp(12), 1]],
        [b"set", shared_sexp(12)],
        [b"frozenset", shared_sexp(12)],
        [b"list", [b"dictionary", [shared_sexp(12), 1]]],
    ],
    ids=["dict key", "set member", "frozenset member", "nested dict key"],
)
def test_unhashable_shared_graph_is_refused_with_a_short_message(sexp: list[Any]) -> None:
    with pytest.raises(InsecureJelly, match="unhashable") as caught:
        jelly.unjelly(sexp)
    assert len(str(caught.value)) < 400


def test_copied_failure_whose_value_is_a_shared_graph_is_bounded() -> None:
    state = [b"dictionary", [[b"unicode", b"type"], b"builtins.KeyError"],
             [[b"unicode", b"value"], shared_sexp(12)],
             [[b"unicode", b"parents"], [b"list", shared_sexp(12, first_id=100)]]]
    copied = pb.CopiedFailure.__new__(pb.CopiedFailure)
    copied.setCopyableState(jelly.unjelly(state))
    assert len(copied.value) < 20_000
    assert len(repr(copied)) < 20_000
    assert all(len(parent) < 1_000 for parent in copied.parents)
