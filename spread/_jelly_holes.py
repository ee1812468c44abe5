"""Objects that do not exist yet: the unjellier's bookkeeping for cycles and forward references.

A ``_Hole`` stands for an object that cannot be handed out yet: a tuple,
frozenset or factory product still reading items that refer back to it, or a
reference id not defined yet. Whoever receives a hole registers a waiter
that puts the real object in place once it exists. A ``Gate`` counts the
holes one container still waits for, so that work depending on the whole
container (building a tuple, calling ``__setstate__``) runs once, at the end.
None of these objects is ever returned to the caller of ``unjelly``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spread._jelly_keys import KeyTable


class Hole:
    """An object not built yet; ``fill(value)`` hands it to every waiter."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[Callable[[Any], None]] = []

    def fill(self, value: Any) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter(value)

    def addDependant(self, mutableObject: Any, key: Any) -> None:
        """Put the object in ``mutableObject[key]`` once it exists (Twisted's ``NotKnown``)."""
        self.waiters.append(lambda value: mutableObject.__setitem__(key, value))

    resolveDependants = fill


class Gate:
    """Counts the holes a container is waiting for; runs ``listeners`` when none remain.

    Starts at one, for the container's own handler still reading items, so
    holes filled while it reads cannot finish it early; the handler calls
    ``arrive()`` for itself when done.
    """

    __slots__ = ("count", "listeners", "slots")

    def __init__(self) -> None:
        self.count = 1
        self.listeners: list[Callable[[], None]] = []
        self.slots: list[int] = []  # positions that held a hole when read

    def expect(self, hole: Hole, target: list[Any], index: int) -> None:
        """``target[index]`` is ``hole`` for now: fill it in when the hole is."""
        self.count += 1
        self.slots.append(index)

        def arrived(value: Any) -> None:
            target[index] = value
            self.arrive()

        hole.waiters.append(arrived)

    def arrive(self) -> None:
        self.count -= 1
        if not self.count:
            listeners, self.listeners = self.listeners, []
            for listener in listeners:
                listener()


class Entry:
    """A dictionary entry waiting for its key or value to be built; then stored through the
    dictionary's ``KeyTable``, which refuses keys chosen to collide."""

    __slots__ = ("gate", "key", "missing", "table", "value")

    def __init__(self, table: KeyTable, key: Any, value: Any, gate: Gate) -> None:
        self.table, self.key, self.value, self.gate = table, key, value, gate
        self.missing = 0
        gate.count += 1
        if type(key) is Hole:
            self.missing += 1
            key.waiters.append(self._key)
        if type(value) is Hole:
            self.missing += 1
            value.waiters.append(self._value)

    def _key(self, key: Any) -> None:
        self.key = key
        self._arrived()

    def _value(self, value: Any) -> None:
        self.value = value
        self._arrived()

    def _arrived(self) -> None:
        self.missing -= 1
        if not self.missing:
            self.table.store(self.key, self.value)
            self.gate.arrive()
