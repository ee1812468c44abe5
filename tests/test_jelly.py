"""spread.jelly on its own: the forms it writes, round trips, shared references and cycles,
and the hooks objects use to choose their own form."""

from __future__ import annotations

import datetime
import decimal
import math
import os.path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spread import jelly, styles
from spread.jelly import (
    DummySecurityOptions,
    InsecureJelly,
    Jellyable,
    SecurityOptions,
    Unjellyable,
    Unpersistable,
    globalSecurity,
    setUnjellyableFactoryForClass,
    setUnjellyableForClass,
    setUnjellyableForClassTree,
    unjellyableRegistry,
)

TRUSTED = DummySecurityOptions()


# Registrations are process-wide: conftest's clean_registries undoes the ones each test makes.
pytestmark = pytest.mark.usefixtures("clean_registries")


class Point:
    """A plain class, sent as a generic instance."""

    def __init__(self, x: Any = 0, y: Any = 0) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and vars(self) == vars(other)

    def norm(self) -> float:
        return math.hypot(self.x, self.y)


POINT = f"{Point.__module__}.Point".encode()


class Member:
    """Hashed by identity, so it can sit in sets and dict keys."""

    x: Any = None


def trusted() -> SecurityOptions:
    options = SecurityOptions()
    options.allowInstancesOf(Point, Member)
    return options


# -- the forms (facts from Twisted 26.10, see WIRE.md) ----------------------------------------


@pytest.mark.parametrize(
    ("value", "sexp"),
    [
        (None, [b"None"]),
        (True, [b"boolean", b"true"]),
        (False, [b"boolean", b"false"]),
        (7, 7),
        (-2**70, -2**70),
        (1.5, 1.5),
        (b"raw", b"raw"),
        ("hi", [b"unicode", b"hi"]),
        ("\u00e9t\u00e9", [b"unicode", "\u00e9t\u00e9".encode()]),
        ([1, 2], [b"list", 1, 2]),
        ((1, 2), [b"tuple", 1, 2]),
        ({"a": 1}, [b"dictionary", [[b"unicode", b"a"], 1]]),
        ({1, 2}, [b"set", 1, 2]),
        (frozenset({3}), [b"frozenset", 3]),
        (datetime.date(2026, 11, 23), [b"date", b"2026 11 23"]),
        (datetime.datetime(2020, 1, 2, 3, 4, 5, 6), [b"datetime", b"2020 1 2 3 4 5 6"]),
        (datetime.time(1, 2, 3, 4), [b"time", b"1 2 3 4"]),
        (datetime.timedelta(seconds=5), [b"timedelta", b"0 5 0"]),
        (datetime.timedelta(days=-1, microseconds=7), [b"timedelta", b"-1 0 7"]),
        (decimal.Decimal("1.5"), [b"decimal", 15, -1]),
        (decimal.Decimal("-1.50"), [b"decimal", -150, -2]),
        (decimal.Decimal("1E+5"), [b"decimal", 1, 5]),
    ],
)
def test_form(value: Any, sexp: Any) -> None:
    assert jelly.jelly(value) == sexp


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -1, 2**64, 1.5, -0.0, math.inf, b"", b"\x00\xff", "", "snow \u2603",
        [], (), {}, set(), frozenset(), [1, [2, (3, {4: "x"})]], {"k": {1, 2}, (1, "t"): None},
        datetime.datetime(1, 1, 1), datetime.date(9999, 12, 31), datetime.time(23, 59, 59, 999999),
        datetime.timedelta(-999999999), decimal.Decimal("3.14159"), decimal.Decimal("-0.000"),
    ],
)
def test_round_trip(value: Any) -> None:
    assert jelly.unjelly(jelly.jelly(value)) == value


def test_round_trip_keeps_types() -> None:
    value = [1, 1.0, True, b"b", "s", (1,), frozenset({1})]
    back = jelly.unjelly(jelly.jelly(value))
    assert [type(item) for item in back] == [type(item) for item in value]


def test_subclass_of_a_builtin_is_an_instance() -> None:
    class Tags(list[str]):
        pass

    tags = Tags(["a"])
    assert jelly.jelly(tags)[0] == f"{Tags.__module__}.Tags".encode()


def test_datetime_with_tzinfo_is_refused() -> None:
    with pytest.raises(NotImplementedError):
        jelly.jelly(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))


def test_decimal_infinity_has_twisteds_str_exponent() -> None:
    assert jelly.jelly(decimal.Decimal("Infinity")) == [b"decimal", 0, "F"]
    assert jelly.unjelly([b"decimal", 0, "F"]) == decimal.Decimal("Infinity")


def test_decimal_with_more_than_4300_digits() -> None:
    value = decimal.Decimal("9" * 5000)
    assert jelly.unjelly(jelly.jelly(value)) == value


# -- shared references and cycles -------------------------------------------------------------


def test_shared_list_is_written_once() -> None:
    a = [1]
    assert jelly.jelly([a, a]) == [
        b"list", [b"reference", 1, [b"list", 1]], [b"dereference", 1],
    ]


def test_shared_object_comes_back_shared() -> None:
    a = [1]
    back = jelly.unjelly(jelly.jelly([a, a, {"a": a}]))
    assert back[0] is back[1] is back[2]["a"]


def test_reference_ids_follow_second_occurrences() -> None:
    x, y = [1], [2]
    assert jelly.jelly([x, y, y, x]) == [
        b"list",
        [b"reference", 2, [b"list", 1]],
        [b"reference", 1, [b"list", 2]],
        [b"dereference", 1],
        [b"dereference", 2],
    ]


def test_strings_are_not_shared() -> None:
    s = "same"
    assert jelly.jelly([s, s]) == [b"list", [b"unicode", b"same"], [b"unicode", b"same"]]


def test_empty_tuple_singleton_is_shared_as_in_twisted() -> None:
    assert jelly.jelly([(), ()]) == [b"list", [b"reference", 1, [b"tuple"]], [b"dereference", 1]]


def test_list_cycle() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    assert jelly.jelly(cycle) == [b"reference", 1, [b"list", [b"dereference", 1]]]
    back = jelly.unjelly(jelly.jelly(cycle))
    assert back[0] is back


def test_dict_cycle() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    back = jelly.unjelly(jelly.jelly(cycle))
    assert back["self"] is back


def test_tuple_containing_list_containing_the_tuple() -> None:
    inner: list[Any] = []
    outer = (inner,)
    inner.append(outer)
    assert jelly.jelly(outer) == [
        b"reference", 1, [b"tuple", [b"list", [b"dereference", 1]]],
    ]
    back = jelly.unjelly(jelly.jelly(outer))
    assert type(back) is tuple
    assert back[0][0] is back


def test_frozenset_member_refers_back_to_the_frozenset() -> None:
    point = Member()
    members = frozenset({point})
    point.x = members
    back = jelly.unjelly(jelly.jelly(members), trusted())
    (member,) = back
    assert member.x is back


def test_dict_key_is_a_tuple_that_refers_back() -> None:
    holder = Member()
    table: dict[Any, int] = {(holder,): 1}
    holder.x = table
    back = jelly.unjelly(jelly.jelly(table), trusted())
    ((key_point,),) = back.keys()
    assert key_point.x is back


def test_set_member_refers_back_to_the_set() -> None:
    point = Member()
    members = {point}
    point.x = members
    back = jelly.unjelly(jelly.jelly(members), trusted())
    (member,) = back
    assert member.x is back


def test_instance_whose_state_refers_to_itself() -> None:
    point = Point()
    point.x = point
    sexp = jelly.jelly(point)
    assert sexp == [
        b"reference", 1,
        [POINT, [b"dictionary", [[b"unicode", b"x"], [b"dereference", 1]],
                 [[b"unicode", b"y"], 0]]],
    ]
    back = jelly.unjelly(sexp, trusted())
    assert back.x is back


class Copying:
    """Copies its state in __setstate__: a placeholder in the state would stay in the copy."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.copied = dict(state)


def test_setstate_that_copies_sees_the_real_object_through_a_tuple() -> None:
    obj = Copying()
    around = (obj,)
    obj.__dict__["around"] = around
    options = SecurityOptions()
    options.allowInstancesOf(Copying)
    back = jelly.unjelly(jelly.jelly(around), options)
    assert back[0].copied["around"] is back


class Registered(Unjellyable):
    """Copies its state, as PB's RemoteCopy does: a placeholder would stay in the copy."""

    def setStateFor(self, unjellier: Any, state: Any) -> None:
        self.__dict__ = dict(state)


def test_registered_copy_whose_state_refers_to_itself() -> None:
    """twisted#10071: Twisted hands back an internal placeholder here."""
    setUnjellyableForClass("app.Thing", Registered)
    sexp = [b"reference", 1, [b"app.Thing", [b"dictionary", [[b"unicode", b"me"],
                                                              [b"dereference", 1]]]]]
    back = jelly.unjelly(sexp, globalSecurity)
    assert type(back) is Registered
    assert back.me is back


def test_forward_reference_received_with_unjellyInto() -> None:
    class Pair(Unjellyable):
        def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
            self.parts = [None, None]
            unjellier.unjellyInto(self.parts, 0, jellyList[1])
            unjellier.unjellyInto(self.parts, 1, jellyList[2])
            return self

    setUnjellyableForClass("app.Pair", Pair)
    sexp = [b"app.Pair", [b"dereference", 1], [b"list", [b"reference", 1, [b"list", 1]]]]
    back = jelly.unjelly(sexp, globalSecurity)
    assert back.parts == [[1], [[1]]]
    assert back.parts[1][0] is back.parts[0]


def test_forward_reference_through_plain_unjelly_is_refused() -> None:
    class Eager(Unjellyable):
        def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
            self.first = unjellier.unjelly(jellyList[1])
            return self

    setUnjellyableForClass("app.Eager", Eager)
    sexp = [b"list", [b"app.Eager", [b"dereference", 1]], [b"reference", 1, [b"list"]]]
    with pytest.raises(InsecureJelly, match="unjellyInto"):
        jelly.unjelly(sexp, globalSecurity)


# -- hypothesis: graphs with sharing and cycles ----------------------------------------------


@st.composite
def graphs(draw: st.DrawFn) -> Any:
    """Lists and dicts that share members and may contain themselves."""
    leaves = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.binary(max_size=3))
    pool: list[Any] = [draw(st.lists(leaves, max_size=3)) for _ in range(draw(st.integers(1, 4)))]
    for _ in range(draw(st.integers(0, 6))):
        holder = pool[draw(st.integers(0, len(pool) - 1))]
        member = pool[draw(st.integers(0, len(pool) - 1))]
        if draw(st.booleans()):
            member = (member, draw(leaves))
        holder.append(member)
    return {"root": pool[0], "all": pool}


def same_shape(a: Any, b: Any, seen: dict[int, int]) -> bool:
    """Equal values with the same sharing (an isomorphism check that survives cycles)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple, dict)):
        if id(a) in seen:
            return seen[id(a)] == id(b)
        seen[id(a)] = id(b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same_shape(a[k], b[k], seen) for k in a)
        return len(a) == len(b) and all(same_shape(x, y, seen) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(graphs())
def test_graphs_round_trip_with_their_sharing(graph: Any) -> None:
    assert same_shape(graph, jelly.unjelly(jelly.jelly(graph)), {})


# -- objects that choose their form -----------------------------------------------------------


class Account(Jellyable, Unjellyable):
    def __init__(self, owner: str, secret: str) -> None:
        self.owner, self.secret = owner, secret

    def getStateFor(self, jellier: Any) -> Any:
        return {"owner": self.owner}

    def setStateFor(self, unjellier: Any, state: Any) -> None:
        self.__dict__ = dict(state, secret=None)


ACCOUNT = f"{Account.__module__}.Account".encode()


def test_jellyable_sends_getStateFor() -> None:
    assert jelly.jelly(Account("ann", "pw")) == [
        ACCOUNT, [b"dictionary", [[b"unicode", b"owner"], [b"unicode", b"ann"]]],
    ]


def test_unjellyable_receives_setStateFor() -> None:
    setUnjellyableForClass(Account, Account)
    back = jelly.unjelly(jelly.jelly(Account("ann", "pw")), globalSecurity)
    assert (type(back), back.owner, back.secret) == (Account, "ann", None)


def test_shared_jellyable_is_referenced() -> None:
    account = Account("ann", "pw")
    sexp = jelly.jelly([account, account])
    assert sexp[1][0] == b"reference"
    assert sexp[2] == [b"dereference", 1]


class Pickled:
    """Chooses its state with __getstate__ and restores it with __setstate__."""

    def __init__(self) -> None:
        self.value = 1

    def __getstate__(self) -> Any:
        return (self.value,)

    def __setstate__(self, state: Any) -> None:
        self.value = state[0] * 10


def test_getstate_and_setstate_are_used() -> None:
    sexp = jelly.jelly(Pickled())
    assert sexp == [f"{Pickled.__module__}.Pickled".encode(), [b"tuple", 1]]
    options = SecurityOptions()
    options.allowInstancesOf(Pickled)
    assert jelly.unjelly(sexp, options).value == 10


def test_setstate_receives_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    received = []
    monkeypatch.setattr(Point, "__setstate__", received.append, raising=False)
    jelly.unjelly([POINT, [b"tuple", 1]], trusted())
    assert received == [(1,)]


def test_generic_instance_is_made_without_init() -> None:
    back = jelly.unjelly(jelly.jelly(Point(1, 2)), trusted())
    assert back == Point(1, 2)


def test_factory_receives_the_state() -> None:
    setUnjellyableFactoryForClass("app.Made", lambda state: ("made", state))
    assert jelly.unjelly([b"app.Made", [b"list", 1]], globalSecurity) == ("made", [1])


def test_registered_callable_receives_unjellier_and_list() -> None:
    seen = []
    setUnjellyableForClass("app.Raw", lambda unjellier, sexp: seen.append(sexp) or "raw")
    assert jelly.unjelly([b"app.Raw", 5], globalSecurity) == "raw"
    assert seen == [[b"app.Raw", 5]]


def test_post_unjelly_runs_after_the_whole_graph() -> None:
    order = []

    class Late(Unjellyable):
        def postUnjelly(self) -> None:
            order.append(("post", self.n))

    setUnjellyableForClass("app.Late", Late)
    sexp = [b"list", [b"app.Late", [b"dictionary", [[b"unicode", b"n"], 1]]],
            [b"app.Late", [b"dictionary", [[b"unicode", b"n"], 2]]]]
    back = jelly.unjelly(sexp, globalSecurity)
    assert order == [("post", 1), ("post", 2)]
    assert [item.n for item in back] == [1, 2]


def test_set_unjellyable_for_class_tree() -> None:
    import types

    module = types.ModuleType("app.copies")

    class Base(Unjellyable):
        pass

    class Leaf(Base):
        pass

    module.Base, module.Leaf, module.other = Base, Leaf, 3  # type: ignore[attr-defined]
    setUnjellyableForClassTree(module, Base)
    assert unjellyableRegistry[b"app.copies.Leaf"] is Leaf
    setUnjellyableForClassTree(module, Base, "")
    assert unjellyableRegistry[b"Leaf"] is Leaf


def test_custom_jellyFor_with_prepare_and_preserve_takes_part_in_cycles() -> None:
    class Box(Jellyable):
        def jellyFor(self, jellier: Any) -> Any:
            sexp = jellier.prepare(self)
            sexp.extend([b"app.Box", jellier.jelly(self.content)])
            return jellier.preserve(self, sexp)

    box = Box()
    box.content = [box]
    assert jelly.jelly(box) == [
        b"reference", 1, [b"app.Box", [b"list", [b"dereference", 1]]],
    ]


def test_jellier_and_unjellier_carry_the_invoker() -> None:
    seen = []

    class Spy(Jellyable, Unjellyable):
        def jellyFor(self, jellier: Any) -> Any:
            seen.append(jellier.invoker)
            return [b"app.Spy", 1]

        def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
            seen.append(unjellier.invoker)
            return self

    setUnjellyableForClass("app.Spy", Spy)
    invoker = object()
    jelly.unjelly(jelly.jelly(Spy(), invoker=invoker), globalSecurity, invoker=invoker)
    assert seen == [invoker, invoker]


def test_getInstanceState_and_setInstanceState() -> None:
    class Custom(Jellyable, Unjellyable):
        def jellyFor(self, jellier: Any) -> Any:
            return jelly.getInstanceState(self, jellier)

        def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
            return jelly.setInstanceState(self, unjellier, jellyList)

    obj = Custom()
    obj.n = 4
    sexp = jelly.jelly(obj)
    setUnjellyableForClass(sexp[0], Custom)
    assert jelly.unjelly(sexp, globalSecurity).n == 4


# -- persistence hooks and unpersistable --------------------------------------------------------


def test_persistent_store_and_load() -> None:
    stored = Point(1, 2)

    def store(obj: Any, jellier: Any) -> Any:
        return b"point-1" if obj is stored else None

    sexp = jelly.jelly([stored, stored, Point()], persistentStore=store)
    assert sexp[1] == [b"reference", 1, [b"persistent", b"point-1"]]
    loaded = jelly.unjelly(sexp, trusted(), persistentLoad=lambda pid, unjellier: ("got", pid))
    assert loaded[0] == ("got", b"point-1")
    assert loaded[1] is loaded[0]


def test_persistent_without_load_callback_is_unpersistable() -> None:
    back = jelly.unjelly([b"persistent", b"x"])
    assert isinstance(back, Unpersistable)


def test_instance_the_taster_refuses_is_written_unpersistable() -> None:
    assert jelly.jelly(Point(), globalSecurity) == [
        b"unpersistable", f"instance of class {POINT.decode()} deemed insecure".encode(),
    ]


def test_unpersistable_comes_back_with_its_reason() -> None:
    back = jelly.unjelly([b"unpersistable", b"no"])
    assert isinstance(back, Unpersistable)
    assert back.reason == "Unpersistable data: b'no'"
    assert "no" in repr(back)


# -- code objects (trusted use only) --------------------------------------------------------------


def test_class_module_function_and_method_forms() -> None:
    point = Point(3, 4)
    assert jelly.jelly(Point) == [b"class", POINT]
    assert jelly.jelly(os.path) == [b"module", os.path.__name__]
    assert jelly.jelly(os.path.join) == [b"function", f"{os.path.__name__}.join"]
    method = jelly.unjelly(jelly.jelly(point.norm), TRUSTED)
    assert method() == 5.0
    assert jelly.unjelly(jelly.jelly([Point, os.path, os.path.join]), TRUSTED) == [
        Point, os.path, os.path.join,
    ]


# -- Versioned state is upgraded as it loads ---------------------------------------------------


class Price(styles.Versioned):
    """Version 0 kept ``amount`` (a float); version 1 keeps ``cents``; version 2 adds a currency."""

    persistenceVersion = 2

    def upgradeToVersion1(self) -> None:
        self.cents = round(self.amount * 100)
        del self.amount

    def upgradeToVersion2(self) -> None:
        self.currency = "EUR"


PRICE = f"{Price.__module__}.Price".encode()


def price_options() -> SecurityOptions:
    options = SecurityOptions()
    options.allowInstancesOf(Price)
    return options


def test_generic_instance_of_old_version_is_upgraded_on_load() -> None:
    sexp = [PRICE, [b"dictionary", [[b"unicode", b"amount"], 1.5]]]
    back = jelly.unjelly(sexp, price_options())
    assert vars(back) == {"cents": 150, "currency": "EUR"}


def test_generic_instance_upgrade_starts_from_the_saved_version() -> None:
    version_key = [b"unicode", PRICE + b".persistenceVersion"]
    sexp = [PRICE, [b"dictionary", [[b"unicode", b"cents"], 7], [version_key, 1]]]
    back = jelly.unjelly(sexp, price_options())
    assert vars(back) == {"cents": 7, "currency": "EUR"}


def test_current_version_round_trips_unchanged() -> None:
    price = Price()
    price.cents, price.currency = 3, "USD"
    back = jelly.unjelly(jelly.jelly(price), price_options())
    assert vars(back) == {"cents": 3, "currency": "USD"}


def test_setInstanceState_upgrades_an_old_version() -> None:
    class Ticket(styles.Versioned, Unjellyable):
        persistenceVersion = 1

        def upgradeToVersion1(self) -> None:
            self.seats = [self.seat]
            del self.seat

        def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
            return jelly.setInstanceState(self, unjellier, jellyList)

    setUnjellyableForClass("app.Ticket", Ticket)
    sexp = [b"app.Ticket", [b"dictionary", [[b"unicode", b"seat"], 12]]]
    assert vars(jelly.unjelly(sexp, globalSecurity)) == {"seats": [12]}
