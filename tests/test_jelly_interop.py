"""spread.jelly against twisted.spread.jelly: the same s-expressions, the same bytes, and
each reads what the other writes."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.spread import banana as tbanana
from twisted.spread import jelly as tjelly

from spread import banana as sbanana
from spread import jelly as sjelly

# -- values of every type both sides handle -------------------------------------------------

texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
# Banana carries ints of up to 64 base-128 digits (448 bits).
wire_ints = st.integers(min_value=-(2**400), max_value=2**400)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    wire_ints,
    st.floats(allow_nan=False),
    st.binary(max_size=12),
    texts,
    st.datetimes(),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30),
)
hashables = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def shared_graphs(draw: st.DrawFn) -> Any:
    """Containers that share members, including cycles through lists, dicts and tuples."""
    pool: list[Any] = [draw(st.lists(scalars, max_size=2)) for _ in range(draw(st.integers(1, 4)))]
    dicts: list[dict[Any, Any]] = [{} for _ in range(draw(st.integers(0, 2)))]
    containers: list[Any] = pool + dicts
    for _ in range(draw(st.integers(0, 8))):
        member = containers[draw(st.integers(0, len(containers) - 1))]
        if draw(st.booleans()):
            member = (member, draw(scalars))
        holder = containers[draw(st.integers(0, len(containers) - 1))]
        if isinstance(holder, dict):
            holder[draw(texts)] = member
        else:
            holder.append(member)
    return containers


def equal_sexp(value: Any) -> None:
    assert sjelly.jelly(value) == tjelly.jelly(value)


# -- the same s-expressions -------------------------------------------------------------------


@given(values)
def test_same_sexp_as_twisted(value: Any) -> None:
    equal_sexp(value)


@given(shared_graphs())
def test_same_sexp_as_twisted_with_sharing_and_cycles(graph: Any) -> None:
    equal_sexp(graph)


@pytest.mark.parametrize(
    "value",
    [decimal.Decimal("Infinity"), decimal.Decimal("-Infinity"), decimal.Decimal("NaN123")],
)
def test_same_sexp_for_decimal_specials(value: decimal.Decimal) -> None:
    equal_sexp(value)


class Plain:
    def __init__(self) -> None:
        self.name = "p"
        self.items = [1, 2]


class WithGetstate:
    def __getstate__(self) -> Any:
        return {"only": 1}


class Slots:
    __slots__ = ("a",)

    def __init__(self) -> None:
        self.a = 1


def test_same_sexp_for_instances() -> None:
    plain = Plain()
    plain.me = plain  # type: ignore[attr-defined]
    equal_sexp([plain, WithGetstate(), Slots(), plain])


def test_same_sexp_for_refused_instances() -> None:
    value = [Plain(), Plain()]
    assert sjelly.jelly(value, sjelly.globalSecurity) == tjelly.jelly(value, tjelly.globalSecurity)


def test_same_sexp_for_code_objects() -> None:
    equal_sexp([Plain, datetime, datetime.date.today, equal_sexp, Plain().__init__, len])


def twin_classes(module: Any) -> tuple[type, type]:
    """The same user classes, written against either library's Jellyable."""

    class Box(module.Jellyable):  # type: ignore[name-defined,misc]
        def __init__(self, content: Any) -> None:
            self.content = content

        def getStateFor(self, jellier: Any) -> Any:
            return {"content": self.content, "extra": (1, 2)}

    class Swapped(module.Jellyable):  # type: ignore[name-defined,misc]
        """Jellies its parts in one order and writes them in the other."""

        def __init__(self, first: Any, second: Any) -> None:
            self.first, self.second = first, second

        def jellyFor(self, jellier: Any) -> Any:
            sexp = jellier.prepare(self)
            first = jellier.jelly(self.first)
            second = jellier.jelly(self.second)
            sexp.extend([b"app.Swapped", second, first])
            return jellier.preserve(self, sexp)

    return Box, Swapped


def test_same_sexp_for_jellyables() -> None:
    (sbox, sswapped), (tbox, tswapped) = twin_classes(sjelly), twin_classes(tjelly)

    def build(box: Any, swapped: Any) -> Any:
        shared = [1]
        outer = box(shared)
        outer.content.append(outer)
        return [outer, swapped([shared], shared), outer]

    assert sjelly.jelly(build(sbox, sswapped)) == tjelly.jelly(build(tbox, tswapped))


def test_same_sexp_for_persistent_store() -> None:
    plain = Plain()

    def store(obj: Any, jellier: Any) -> Any:
        return b"id-1" if obj is plain else None

    assert sjelly.jelly([plain, plain, Plain()], persistentStore=store) == tjelly.jelly(
        [plain, plain, Plain()], persistentStore=store
    )


# -- each reads the other ---------------------------------------------------------------------


@given(values)
def test_spread_reads_twisted(value: Any) -> None:
    assert sjelly.unjelly(tjelly.jelly(value)) == value


@given(values)
def test_twisted_reads_spread(value: Any) -> None:
    assert tjelly.unjelly(sjelly.jelly(value)) == value


def test_spread_reads_twisted_cycle_through_tuple() -> None:
    inner: list[Any] = []
    outer = (inner,)
    inner.append(outer)
    back = sjelly.unjelly(tjelly.jelly(outer))
    assert back[0][0] is back


def test_twisted_reads_spread_cycles() -> None:
    cycle: list[Any] = [1]
    cycle.append({"back": cycle})
    back = tjelly.unjelly(sjelly.jelly(cycle))
    assert back[1]["back"] is back


def test_spread_reads_twisted_instance_with_allowlist() -> None:
    options = sjelly.SecurityOptions()
    options.allowInstancesOf(Plain)
    back = sjelly.unjelly(tjelly.jelly(Plain()), options)
    assert (type(back), back.name, back.items) == (Plain, "p", [1, 2])


# -- the same bytes ---------------------------------------------------------------------------


@given(values)
@settings(max_examples=300)
def test_same_bytes_as_twisted(value: Any) -> None:
    assert sbanana.encode(sjelly.jelly(value)) == tbanana.encode(tjelly.jelly(value))


@given(shared_graphs())
def test_same_bytes_with_sharing(graph: Any) -> None:
    assert sbanana.encode(sjelly.jelly(graph)) == tbanana.encode(tjelly.jelly(graph))


@given(values)
def test_spread_decodes_twisted_bytes(value: Any) -> None:
    assert sjelly.unjelly(sbanana.decode(tbanana.encode(tjelly.jelly(value)))) == value


@given(values)
def test_twisted_decodes_spread_bytes(value: Any) -> None:
    assert tjelly.unjelly(tbanana.decode(sbanana.encode(sjelly.jelly(value)))) == value


def test_bytes_of_the_benchmark_message() -> None:
    data = [
        {"name": f"item{i}", "id": i, "price": i * 1.25, "tags": [f"a{i}", "b"], "ok": i % 2 == 0}
        for i in range(50)
    ]
    encoded = tbanana.encode(tjelly.jelly(data))
    assert sbanana.encode(sjelly.jelly(data)) == encoded
    assert sjelly.unjelly(sbanana.decode(encoded)) == data
