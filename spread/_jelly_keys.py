"""Keys and reference ids a peer chose: the guards that keep them from making unjelly slow.

CPython's hashes of numbers are not randomised, and a tuple's hash is not cached, so a peer
could send sets, dicts and reference tables whose every insert is slow, or one key that costs
exponential time to hash. The unjellier builds every peer-keyed container through these
guards, which refuse such input with ``InsecureJelly`` (see ``docs/security.md``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from spread._jelly_base import InsecureJelly
from spread._quote import quote

# -- keys and reference ids a peer chose ---------------------------------------------------------
#
# CPython's hashes of numbers are not randomised: an int, float or Decimal hashes to its value
# modulo 2**61 - 1, and a tuple or frozenset hashes from its items' hashes. A peer can send
# thousands of distinct keys with one hash (multiples of 2**61 - 1, say), and each insert into a
# set or dict then compares against every earlier one: a set of 20,000 such ints (240 KB on
# the wire) took 1.7 s to unjelly, 40,000 took 7.8 s. Strings and bytes hash with a
# per-process secret, so they need no check, and neither do ints below the modulus (each is
# its own hash).

HASH_MODULUS = sys.hash_info.modulus
"""2**61 - 1 on 64-bit builds (2**31 - 1 on 32-bit ones): ints of smaller magnitude are their
own hash, so no two of them collide (but -1 and -2, both -2)."""

MAX_KEYS_PER_HASH = 64
"""How many distinct keys of one set, frozenset or dict may share a hash; one more is refused.

Ordinary data stays well below: 64-bit ints share a hash at most 13 at a time (their range
spans 12 multiples of the modulus), and floats that differ by factors of 2**61 (which hash
alike) number at most 34 (the powers of two ``2.0 ** (61 * k)`` all hash to 1); an attack
needs thousands. At 64, one insert costs at most 64 equality tests.
Keys whose hash a peer cannot choose are not counted: str and bytes, and ints of magnitude
below the modulus (no two of which share a hash, but -1 and -2)."""

HASH_WORK_ALLOWANCE = 1 << 16
HASH_WORK_PER_NODE = 64
"""Items of tuples and frozensets one ``unjelly()`` call may hash and compare for its keys,
once it has shared references: ``HASH_WORK_ALLOWANCE`` plus ``HASH_WORK_PER_NODE`` per node
(list or atom) of the s-expression.

Python does not cache a tuple's hash: hashing one visits its items and those of every tuple
inside it, however often a shared tuple recurs; comparing two equal but distinct ones does
the same. With shared references a peer makes that exponential in the message's size
(``t2 = (t1, t1)``, ``t3 = (t2, t2)``...: a set holding ``t60`` is a 1 KB message that would
hash for centuries) or quadratic (a set of n references to one tuple of n items). So each
key that is a tuple or frozenset is charged for the items hashing it visits, times one more
for each key of its hash already there (which it may be compared with). Without shared
references a key costs no more than its own items on the wire, times the keys it shares a
hash with (at most ``MAX_KEYS_PER_HASH``), so only messages with them are charged, and only
those that reuse shared tuples as keys over and over are refused. An item costs 2 to 5 ns:
64 per node is a few times what reading the node costs; the allowance, 0.2 ms."""

MAX_REFERENCE_ID = HASH_MODULUS
"""Reference ids run from 0 up to (not including) this: 2**61 - 1 on 64-bit builds.

Twisted numbers the shared objects of a message 1, 2, 3...; the unjellier keeps them in dicts
keyed by id, and in this range every int is its own hash, so no two ids collide."""

_RANDOMISED = frozenset({str, bytes})
_COMPOUND = (tuple, frozenset)  # keys that hash (and compare) through their items


def badReferenceId(refid: int) -> InsecureJelly:
    """The error for a reference id outside ``MAX_REFERENCE_ID``."""
    return InsecureJelly(
        f"reference id {quote(refid)} is out of range: a peer numbers its shared objects "
        f"from 0 (Twisted from 1) up to {MAX_REFERENCE_ID - 1}"
    )


def _unchosen(members: list[Any]) -> bool:
    """Whether no two of ``members`` can share a hash unless equal (so none need counting)."""
    kinds = set(map(type, members))
    if kinds <= _RANDOMISED:
        return True
    return kinds == {int} and min(members) > -HASH_MODULUS and max(members) < HASH_MODULUS


def _runningNodes(sexp: Any) -> Iterator[int]:
    """The nodes of ``sexp`` counted one list at a time: each yield is a running total."""
    count = 1
    lists = [sexp] if type(sexp) is list else []
    while lists:
        node = lists.pop()
        count += len(node)
        lists.extend([item for item in node if type(item) is list])
        yield count


class KeyGuard:
    """The hashing budget of one ``unjelly()`` call (see ``HASH_WORK_PER_NODE``)."""

    __slots__ = ("_budget", "_nodes", "_weights", "_work", "message", "refs")

    def __init__(self, refs: dict[int, Any]) -> None:
        self.refs = refs  # the unjellier's reference table: while empty, nothing is shared
        self.message: Any = None  # the whole s-expression, set by the unjellier
        self._nodes: Iterator[int] | None = None
        self._work = 0
        self._budget = HASH_WORK_ALLOWANCE
        self._weights: dict[int, tuple[Any, int]] = {}

    def weigh(self, key: tuple[Any, ...] | frozenset[Any]) -> int:
        """How many items hashing ``key`` visits: its own and those of the tuples and
        frozensets inside it, worked out once for each (``_weights`` keeps them alive, so
        their ids stay their own)."""
        weights = self._weights
        known = weights.get(id(key))
        if known is not None:
            return known[1]
        pending: list[Any] = [key]
        while pending:
            node = pending[-1]
            if id(node) in weights:
                pending.pop()
                continue
            inner = [item for item in node if isinstance(item, (tuple, frozenset))]
            unknown = [item for item in inner if id(item) not in weights]
            if unknown:
                pending.extend(unknown)
                continue
            pending.pop()
            weights[id(node)] = (node, len(node) + sum(weights[id(item)][1] for item in inner))
        return weights[id(key)][1]

    def charge(self, work: int, key: Any) -> None:
        """Spend ``work`` on ``key``; refuse it if the message has spent its budget."""
        self._work += work
        if self._work <= self._budget:
            return
        if self._nodes is None:  # measured only now: most messages never get here
            self._nodes = _runningNodes(self.message)
        for nodes in self._nodes:
            self._budget = HASH_WORK_ALLOWANCE + HASH_WORK_PER_NODE * nodes
            if self._work <= self._budget:
                return
        raise InsecureJelly(
            f"hashing and comparing the keys of this message would visit more than "
            f"{self._budget} items ({HASH_WORK_PER_NODE} per node of the message): shared "
            f"tuples reused as keys over and over, a hash-cost attack? (key {quote(key)})"
        )


class KeyTable:
    """A set or dict being filled with a peer's keys: refuses more than ``MAX_KEYS_PER_HASH``
    distinct keys of one hash, and charges tuple and frozenset keys to the call's
    ``KeyGuard`` once references are shared.

    ``size`` is how many keys the peer sent for it: no more than ``MAX_KEYS_PER_HASH`` can
    never be too many of one hash, so those are not counted for that (nor by the C
    accelerator), only for what comparing them costs.
    """

    __slots__ = ("counted", "counts", "guard", "kind", "table")

    def __init__(self, table: Any, guard: KeyGuard, kind: str, size: int) -> None:
        self.table = table
        self.guard = guard
        self.kind = kind  # "set", "frozenset" or "dictionary", for messages
        self.counted = size > MAX_KEYS_PER_HASH
        self.counts: dict[int, int] = {}  # hash -> distinct keys of that hash in the table

    def store(self, key: Any, value: Any) -> None:
        """``table[key] = value`` for a dict."""
        table = self.table
        kind = type(key)
        if kind is str or kind is bytes or (kind is int and -HASH_MODULUS < key < HASH_MODULUS):
            table[key] = value
            return
        if not self.counted and not (self.guard.refs and isinstance(key, _COMPOUND)):
            try:
                table[key] = value
            except TypeError:
                raise InsecureJelly(f"unhashable dictionary key {quote(key)}") from None
            return
        code = self._admit(key)
        size = len(table)
        table[key] = value
        if len(table) > size:
            self.counts[code] = self.counts.get(code, 0) + 1

    def add(self, members: list[Any]) -> None:
        """``table.update(members)`` for a set."""
        table = self.table
        shared = bool(self.guard.refs)
        if not self.counted and not shared:  # nothing to count or charge
            try:
                table.update(members)
            except TypeError:
                raise InsecureJelly(
                    f"unhashable member in a {self.kind}: {quote(members)}"
                ) from None
            return
        if _unchosen(members):
            table.update(members)
            return
        low, high = -HASH_MODULUS, HASH_MODULUS
        counts = self.counts
        for member in members:
            kind = type(member)
            if kind is str or kind is bytes or (kind is int and low < member < high):
                table.add(member)
                continue
            if not self.counted and not (shared and isinstance(member, _COMPOUND)):
                try:
                    table.add(member)
                except TypeError:
                    raise InsecureJelly(
                        f"unhashable member in a {self.kind}: {quote(member)}"
                    ) from None
                continue
            code = self._admit(member)
            size = len(table)
            table.add(member)
            if len(table) > size:
                counts[code] = counts.get(code, 0) + 1

    def _admit(self, key: Any) -> int:
        """The hash of ``key``, once it may join the table: charged for hashing and
        comparing it if a tuple or frozenset (and references are shared), and refused if
        one too many of its hash."""
        guard = self.guard
        weight = guard.weigh(key) if guard.refs and isinstance(key, _COMPOUND) else 0
        if weight:
            guard.charge(weight, key)  # before hashing it
        try:
            code = hash(key)
        except TypeError:
            what = "dictionary key" if self.kind == "dictionary" else f"member in a {self.kind}"
            raise InsecureJelly(f"unhashable {what} {quote(key)}") from None
        seen = self.counts.get(code, 0)
        if weight and seen:
            guard.charge(weight * seen, key)  # before comparing it with those of its hash
        if self.counted and seen >= MAX_KEYS_PER_HASH and key not in self.table:
            raise InsecureJelly(
                f"more than {MAX_KEYS_PER_HASH} distinct keys of one hash in a {self.kind}: "
                f"a hash-collision attack? (hash {code}, key {quote(key)})"
            )
        return code


def addMembers(target: set[Any], members: list[Any], guard: KeyGuard) -> None:
    """``target.update(members)``, through a ``KeyTable`` where members need counting or
    charging."""
    if len(members) <= MAX_KEYS_PER_HASH and not guard.refs:
        try:
            target.update(members)
        except TypeError:
            raise InsecureJelly(f"unhashable member in a set: {quote(members)}") from None
        return
    KeyTable(target, guard, "set", len(members)).add(members)


def frozen(members: list[Any], guard: KeyGuard) -> frozenset[Any]:
    """``frozenset(members)``, through a ``KeyTable`` where members need counting."""
    if (len(members) <= MAX_KEYS_PER_HASH and not guard.refs) or _unchosen(members):
        try:
            return frozenset(members)
        except TypeError:
            raise InsecureJelly(f"unhashable member in a frozenset: {quote(members)}") from None
    table = KeyTable(set(), guard, "frozenset", len(members))
    table.add(members)
    return frozenset(table.table)
