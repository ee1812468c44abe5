"""Keys a peer chose to make unjelly slow: hash collisions, shared tuples that cost far more to
hash or compare than to send, and reference ids beyond the ints that hash to themselves.

CPython's hashes of numbers are not randomised: every multiple of 2**61 - 1 hashes to 0, and
tuples, frozensets and Decimals of such values collide too. Before these guards, a set of 20,000
such ints (240 KB on the wire) took 1.7 s to unjelly, 40,000 took 7.8 s (each insert compares
against every earlier key), and a 1 KB message of doubled shared tuples would have hashed for
centuries. Every test runs on the C accelerator and on the pure-Python unjellier (the C code
hands such containers back to Python, which refuses them).
"""

from __future__ import annotations

import decimal
import sys
from typing import Any

import pytest

import spread.jelly as jelly_module
from spread import banana
from spread._jelly_keys import (
    HASH_WORK_ALLOWANCE,
    MAX_KEYS_PER_HASH,
    MAX_REFERENCE_ID,
)
from spread._native import speedups
from spread.jelly import InsecureJelly, jelly, unjelly

MODULUS = sys.hash_info.modulus  # 2**61 - 1 on 64-bit builds
ATTACK = 20_000
COLLISION = f"more than {MAX_KEYS_PER_HASH} distinct keys of one hash"


@pytest.fixture(autouse=True, params=["accelerated", "pure Python"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test on the C accelerator and on the pure-Python unjellier."""
    if request.param == "pure Python":
        monkeypatch.setattr(jelly_module, "_speedups", None)
    elif speedups is None:
        pytest.skip("spread._speedups is not built (or SPREAD_NO_SPEEDUPS is set)")


def colliding(count: int) -> list[int]:
    """``count`` distinct ints that all hash to 0."""
    return [k * MODULUS for k in range(1, count + 1)]


def sent(sexp: Any) -> Any:
    """``sexp`` as a peer sends it: through banana's encoder and decoder."""
    return banana.decode(banana.encode(sexp))


# -- collisions are refused ------------------------------------------------------------------


def test_set_of_colliding_ints_is_refused() -> None:
    with pytest.raises(InsecureJelly, match=f"{COLLISION} in a set: a hash-collision attack"):
        unjelly(sent([b"set", *colliding(ATTACK)]))


def test_frozenset_of_colliding_ints_is_refused() -> None:
    with pytest.raises(InsecureJelly, match=f"{COLLISION} in a frozenset"):
        unjelly(sent([b"frozenset", *colliding(ATTACK)]))


def test_dictionary_with_colliding_keys_is_refused() -> None:
    with pytest.raises(InsecureJelly, match=f"{COLLISION} in a dictionary"):
        unjelly(sent([b"dictionary", *[[key, 1] for key in colliding(ATTACK)]]))


def test_colliding_tuple_keys_are_refused() -> None:
    # A tuple hashes from its items' hashes: (k * MODULUS,) all collide.
    keys = [[b"tuple", key] for key in colliding(ATTACK)]
    with pytest.raises(InsecureJelly, match=f"{COLLISION} in a dictionary"):
        unjelly([b"dictionary", *[[key, 1] for key in keys]])
    with pytest.raises(InsecureJelly, match=f"{COLLISION} in a set"):
        unjelly([b"set", *keys])


def test_colliding_frozenset_members_are_refused() -> None:
    members = [[b"frozenset", key] for key in colliding(ATTACK)]
    with pytest.raises(InsecureJelly, match=f"{COLLISION} in a set"):
        unjelly([b"set", *members])


def test_colliding_decimals_are_refused() -> None:
    # Decimals hash like the numbers they equal.
    keys = [[b"decimal", key, 0] for key in colliding(ATTACK)]
    with pytest.raises(InsecureJelly, match=f"{COLLISION} in a dictionary"):
        unjelly([b"dictionary", *[[key, 1] for key in keys]])


def test_refusal_quotes_the_hash_and_the_key_briefly() -> None:
    with pytest.raises(InsecureJelly) as caught:
        unjelly([b"set", *colliding(ATTACK)])
    message = str(caught.value)
    assert "(hash 0, key " in message
    assert str(colliding(MAX_KEYS_PER_HASH + 1)[-1]) in message
    assert len(message) < 300


def test_colliding_keys_inside_a_larger_message_are_refused() -> None:
    attack = [b"dictionary", *[[key, [b"None"]] for key in colliding(ATTACK)]]
    with pytest.raises(InsecureJelly, match=COLLISION):
        unjelly([b"list", [b"unicode", b"call"], [b"tuple", 1, attack]])


@pytest.mark.parametrize("form", [b"set", b"frozenset", b"dictionary"])
def test_up_to_the_bound_is_accepted_and_one_more_is_refused(form: bytes) -> None:
    def sexp(keys: list[int]) -> list[Any]:
        if form == b"dictionary":
            return [form, *[[key, 0] for key in keys]]
        return [form, *keys]

    # Other keys in the container, and keys a peer cannot choose, count for nothing.
    others = list(range(-5, 100))
    assert len(unjelly(sexp(others + colliding(MAX_KEYS_PER_HASH)))) == 105 + MAX_KEYS_PER_HASH
    with pytest.raises(InsecureJelly, match=COLLISION):
        unjelly(sexp(others + colliding(MAX_KEYS_PER_HASH + 1)))


# -- ordinary data still round-trips ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        set(range(ATTACK)),
        frozenset(range(-ATTACK, 0)),
        {key: str(key) for key in range(ATTACK)},
        {f"key {key}": key for key in range(ATTACK)},
        {f"member {key}".encode() for key in range(ATTACK)},
        {key * 0.5 for key in range(ATTACK)},
        {(key, key + 1): key for key in range(ATTACK)},
        {2**64 + key for key in range(ATTACK)},
        {decimal.Decimal(key) / 7 for key in range(2_000)},
    ],
    ids=["ints", "negative ints", "int keys", "str keys", "bytes", "floats", "tuple keys",
         "big ints", "decimals"],
)  # fmt: skip
def test_ordinary_data_of_the_same_size_round_trips(value: Any) -> None:
    assert unjelly(sent(jelly(value))) == value


@pytest.mark.parametrize(
    "key",
    [1, MODULUS, 1.5, None, True, (MODULUS, 2), frozenset({MODULUS}), decimal.Decimal(MODULUS)],
)
def test_many_copies_of_one_key_are_not_collisions(key: Any) -> None:
    # Equal keys share a hash but are one key: 20,000 copies make a set of one.
    wire_key = jelly(key)
    assert unjelly([b"set", *[wire_key] * ATTACK]) == {key}
    assert unjelly([b"frozenset", *[wire_key] * ATTACK]) == frozenset({key})
    assert unjelly([b"dictionary", *[[wire_key, n] for n in range(ATTACK)]]) == {key: ATTACK - 1}


def test_equal_keys_of_different_types_are_one_key() -> None:
    # 1, 1.0 and True are equal: one key, whichever comes first.
    keys = [1, 1.0, [b"boolean", b"true"], [b"decimal", 1, 0]] * 5_000
    assert unjelly([b"set", *keys]) == {1}


def test_ints_that_are_their_own_hash_are_never_counted() -> None:
    # -1 and -2 share a hash; nothing else below the modulus does.
    value = set(range(-MODULUS + 1, -MODULUS + 10_000)) | set(range(MODULUS - 10_000, MODULUS))
    assert unjelly(sent(jelly(value))) == value


def test_float_powers_of_two_that_share_a_hash_are_accepted() -> None:
    # The most ordinary data reaches: 34 floats 2.0 ** (61 * k) all hash to 1.
    powers = {2.0**exponent for exponent in range(-1074, 1024)}
    assert max(sum(1 for x in powers if hash(x) == h) for h in {hash(x) for x in powers}) > 30
    assert unjelly(jelly(powers)) == powers


# -- shared tuples that cost more to hash than to send -----------------------------------------


def doubling_tuples(levels: int) -> list[Any]:
    """``t1 = (1, 2)``, ``t(n+1) = (tn, tn)``...: ``levels`` shared references, one list;
    hashing the last visits 2**levels items."""
    sexp: list[Any] = [b"list", [b"reference", 1, [b"tuple", 1, 2]]]
    for refid in range(2, levels + 1):
        below = [b"dereference", refid - 1]
        sexp.append([b"reference", refid, [b"tuple", below, below]])
    return sexp


def test_a_key_doubled_through_shared_tuples_is_refused() -> None:
    # 1 KB with PB's vocabulary; hashing the set's member would visit 2**60 tuple items.
    sexp = doubling_tuples(60)
    sexp.append([b"set", [b"dereference", 60]])
    assert len(banana.Encoder(banana.PB_VOCABULARY).encode(sexp)) < 1_500
    with pytest.raises(InsecureJelly, match="hash-cost attack"):
        unjelly(sent(sexp))


def test_doubled_tuples_as_dictionary_keys_are_refused() -> None:
    sexp = doubling_tuples(60)
    sexp.append([b"dictionary", [[b"dereference", 60], 1]])
    with pytest.raises(InsecureJelly, match="hash-cost attack"):
        unjelly(sexp)


def test_one_big_tuple_used_as_a_key_over_and_over_is_refused() -> None:
    # n references to one tuple of n items: n * n items to hash, from 2n on the wire.
    big = [b"reference", 1, [b"tuple", *range(ATTACK)]]
    sexp = [b"list", big, *[[b"dictionary", [[b"dereference", 1], n]] for n in range(ATTACK)]]
    with pytest.raises(InsecureJelly, match="hash-cost attack"):
        unjelly(sent(sexp))


def test_colliding_copies_of_doubled_tuples_are_refused() -> None:
    # 64 keys (copy n, n * MODULUS) share a hash; each copy of 12 doublings is built on its
    # own, so inserting one compares it with every earlier copy, all 8,190 items deep.
    sexp: list[Any] = [b"list"]
    keys = []
    for copy in range(MAX_KEYS_PER_HASH):
        first = copy * 12 + 1
        sexp.append([b"reference", first, [b"tuple", 1, 2]])
        for refid in range(first + 1, first + 12):
            below = [b"dereference", refid - 1]
            sexp.append([b"reference", refid, [b"tuple", below, below]])
        keys.append([b"tuple", [b"dereference", first + 11], (copy + 1) * MODULUS])
    sexp.append([b"set", *keys])
    with pytest.raises(InsecureJelly, match="hash-cost attack"):
        unjelly(sent(sexp))


def test_doubled_tuples_that_are_never_keys_are_accepted() -> None:
    # Sharing alone costs nothing: only hashing is charged.
    value = unjelly(doubling_tuples(60))
    assert value[-1][0] is value[-1][1]


def test_shared_tuple_keys_of_ordinary_data_round_trip() -> None:
    # Twisted's jellier shares a tuple that recurs: 1,000 dicts keyed by one 100-item tuple.
    shared = tuple(range(100))
    value = [{shared: n, (n, shared): n} for n in range(1_000)]
    back = unjelly(sent(jelly(value)))
    assert back == value
    assert len(jelly(value)) > 1_000  # (it is shared on the wire)


def test_a_small_message_may_hash_its_allowance() -> None:
    # A tuple of 100 shared items, hashed as one key: within the allowance, whatever the size.
    width = HASH_WORK_ALLOWANCE // 200
    sexp = [b"list", [b"reference", 1, [b"tuple", *range(100)]],
            [b"set", [b"tuple", *[[b"dereference", 1]] * width]]]  # fmt: skip
    assert len(unjelly(sexp)[1]) == 1


# -- reference ids ----------------------------------------------------------------------------


def test_reference_ids_that_would_collide_are_refused() -> None:
    # Ids k * MODULUS would all land in one slot of the unjellier's table of references.
    sexp = [b"list", *[[b"reference", key, [b"list"]] for key in colliding(ATTACK)]]
    with pytest.raises(InsecureJelly, match=r"reference id \d+ is out of range"):
        unjelly(sent(sexp))


@pytest.mark.parametrize("refid", [-1, MAX_REFERENCE_ID, 2**64, -(2**64)])
def test_reference_ids_out_of_range_are_refused(refid: int) -> None:
    with pytest.raises(InsecureJelly, match=f"reference id {refid} is out of range"):
        unjelly([b"list", [b"reference", refid, [b"list"]]])
    with pytest.raises(InsecureJelly, match=f"reference id {refid} is out of range"):
        unjelly([b"list", [b"reference", 1, [b"list"]], [b"dereference", refid]])


@pytest.mark.parametrize("refid", [0, 1, MAX_REFERENCE_ID - 1])
def test_reference_ids_in_range_are_accepted(refid: int) -> None:
    value = unjelly([b"list", [b"reference", refid, [b"list"]], [b"dereference", refid]])
    assert value == [[], []]
    assert value[0] is value[1]


def test_many_reference_ids_round_trip() -> None:
    shared = [[n] for n in range(ATTACK)]
    back = unjelly(sent(jelly(shared + shared)))
    assert back == shared + shared
    assert all(back[n] is back[ATTACK + n] for n in range(ATTACK))
