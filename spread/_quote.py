"""Render any value as text in bounded time and space, for messages that quote a peer's data.

A peer can send a small message that unjellies into a huge object graph: jelly's
``reference``/``dereference`` forms let 1 KB describe a list with 30**10 leaves
that shares its parts. Python's ``repr`` walks every leaf (``f"{x!r:.80}"``
builds the whole text before cutting it), so one error message could stall the
process for minutes. ``quote`` walks at most ``limit`` characters' worth of the
graph, never deeper than ``MAX_DEPTH``, shows a container met twice only once,
and calls no ``__repr__`` it does not know to be cheap. Every error text, log
line and copied failure that may hold peer data goes through here.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

#: Characters in a quote inside an error message: enough to recognise the value.
QUOTE_LIMIT = 120
#: Characters of an exception's text sent in a copied failure. Twisted sends the
#: whole ``str()``; we cut it here so that a value built from a peer's shared
#: references cannot make the answer (or our log) exponential.
FAILURE_TEXT_LIMIT = 10_000
#: Containers deeper than this show as ``...``.
MAX_DEPTH = 8
#: Ints wider than this show their width, not their digits (``str`` of a huge
#: int is quadratic, and refused past 4,300 digits).
MAX_INT_BITS = 4096

_ELLIPSIS = "..."
# Types whose repr is linear in their own size and runs no user code.
_FLAT = (bool, float, complex, type(None), decimal.Decimal, datetime.date, datetime.time,
         datetime.timedelta)
_TEXT = (str, bytes, bytearray)
_OPEN_CLOSE: dict[type, tuple[str, str]] = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
    dict: ("{", "}"),
}


class _Budget(Exception):
    """Raised inside the walk once the text is long enough."""


class _Writer:
    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.room = limit
        self.seen: set[int] = set()

    def write(self, text: str) -> None:
        self.parts.append(text[: self.room + 1])
        self.room -= len(text)
        if self.room < 0:
            raise _Budget

    def value(self, obj: object, depth: int) -> None:
        kind = type(obj)
        if kind in _OPEN_CLOSE:
            self.container(obj, kind, depth)
        elif kind in _TEXT:
            self.text(obj)  # type: ignore[arg-type]
        elif kind is int:
            self.integer(obj)  # type: ignore[arg-type]
        elif isinstance(obj, _FLAT):
            self.write(repr(obj)[: self.room + 1])
        elif isinstance(obj, BaseException):
            self.write(type(obj).__qualname__)
            self.container(obj.args, tuple, depth)
        else:
            self.write(f"<{kind.__module__}.{kind.__qualname__} object>")

    def text(self, obj: str | bytes | bytearray) -> None:
        head = obj[: self.room + 1]
        self.write(repr(head))
        if len(head) < len(obj):
            self.write(_ELLIPSIS)

    def integer(self, obj: int) -> None:
        bits = obj.bit_length()
        self.write(repr(obj) if bits <= MAX_INT_BITS else f"<int of {bits} bits>")

    def container(self, obj: Any, kind: type, depth: int) -> None:
        opening, closing = _OPEN_CLOSE[kind]
        if not obj:
            self.write(_EMPTY[kind])
            return
        if depth >= MAX_DEPTH or id(obj) in self.seen:
            self.write(f"{opening}{_ELLIPSIS}{closing}")
            return
        self.seen.add(id(obj))
        self.write(opening)
        if kind is dict:
            for index, (key, item) in enumerate(obj.items()):
                self.write(", " if index else "")
                self.value(key, depth + 1)
                self.write(": ")
                self.value(item, depth + 1)
        else:
            for index, item in enumerate(obj):
                self.write(", " if index else "")
                self.value(item, depth + 1)
        self.write("," + closing if kind is tuple and len(obj) == 1 else closing)


_EMPTY: dict[type, str] = {
    list: "[]", tuple: "()", dict: "{}", set: "set()", frozenset: "frozenset()"
}


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, at a cost bounded by ``limit``.

    Lists, tuples, dicts, sets, strings, bytes and numbers look as ``repr``
    shows them; a container met again shows as ``[...]``; other objects show
    as ``<module.Class object>`` because their ``__repr__`` may walk peer data.
    """
    writer = _Writer(limit)
    try:
        writer.value(value, 0)
    except _Budget:
        return "".join(writer.parts)[:limit] + _ELLIPSIS
    return "".join(writer.parts)


def isFlat(value: object) -> bool:
    """Whether ``str``/``repr`` of ``value`` costs time linear in its size and runs no user code."""
    if type(value) in _TEXT:
        return True
    if type(value) is int:
        return value.bit_length() <= MAX_INT_BITS
    return isinstance(value, _FLAT)


def _usesBuiltinStr(error: BaseException) -> bool:
    for cls in type(error).__mro__:
        if "__str__" in cls.__dict__:
            return cls.__module__ == "builtins"
    return True


def exceptionText(error: object, limit: int = FAILURE_TEXT_LIMIT) -> str:
    """``str(error)`` cut to ``limit`` characters, without walking a peer's shared graph.

    An exception whose arguments are plain strings and numbers (nearly all of
    them) keeps its exact text; one built-in exception holding a container (a
    ``KeyError`` of a peer's list, say) shows its arguments through ``quote``.
    """
    if isinstance(error, BaseException):
        if not all(isFlat(arg) for arg in error.args) and _usesBuiltinStr(error):
            args = error.args
            return quote(args[0] if len(args) == 1 else args, limit)
    elif not isFlat(error):
        return quote(error, limit)
    try:
        text = str(error)
    except Exception:
        return f"<{type(error).__qualname__} with a failing __str__>"
    return text if len(text) <= limit else text[:limit] + _ELLIPSIS
