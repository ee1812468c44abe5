"""The sans-I/O banana encoder behind ``spread.banana``: s-expressions to bytes.

The limits, type bytes and vocabulary it shares with the decoder live in
``spread._banana_codec``; ``docs/wire.md`` describes the format.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from spread._banana_codec import (
    FLOAT,
    INT,
    INT_MAX,
    LIST,
    LONGINT,
    LONGNEG,
    MAX_DEPTH,
    NEG,
    NEG_MAX,
    PB_VOCABULARY,
    PREFIX_LIMIT,
    SIZE_LIMIT,
    STRING,
    VOCAB,
    BananaError,
    _number,
    _token,
)
from spread._native import speedups as _speedups
from spread._quote import quote

_FLOAT_PACK = struct.Struct(">d").pack
_FLOAT_TAG = bytes((FLOAT,))
_INT_TOKENS = [bytes((value, INT)) for value in range(128)]
_STRING_HEADERS = [bytes((length, STRING)) for length in range(128)]
_LIST_HEADERS = [bytes((length, LIST)) for length in range(128)]
_PAIR_HEADER = _LIST_HEADERS[2]

_CACHED_LENGTH = 32
"""Strings up to this long have their encoded token remembered by each ``Encoder``."""

_CACHED_TOKENS = 256
"""Tokens an ``Encoder`` remembers before starting afresh (about 50 KB per encoder at worst)."""


class Encoder:
    """Turns an s-expression (lists/tuples of int, float, bytes) into banana bytes.

    ``vocabulary`` maps strings to symbol numbers (``PB_VOCABULARY`` in the "pb"
    dialect); those strings are sent as symbols. The limits mirror the decoder's so
    we never send what a peer with default limits would refuse.
    """

    __slots__ = ("_symbols", "_tokens", "_vocabulary", "max_depth", "prefix_limit", "size_limit")

    def __init__(
        self,
        vocabulary: Mapping[bytes, int] | None = None,
        *,
        size_limit: int = SIZE_LIMIT,
        prefix_limit: int = PREFIX_LIMIT,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self.size_limit = size_limit
        self.prefix_limit = prefix_limit
        self.max_depth = max_depth
        self.vocabulary = vocabulary

    @property
    def vocabulary(self) -> Mapping[bytes, int] | None:
        """The symbol table in use; settable (a connection switches it once a dialect is chosen)."""
        return self._vocabulary

    @vocabulary.setter
    def vocabulary(self, vocabulary: Mapping[bytes, int] | None) -> None:
        self._vocabulary = vocabulary
        # Each symbol's whole token, ready to append: one dict lookup per string sent.
        self._symbols = _symbolsFor(vocabulary)  # shared between encoders: read only
        self._tokens: dict[Any, bytes] | None = None  # and short strings sent lately (see encode)

    def forget(self) -> None:
        """Drop the cache of recently sent strings (the connection is closing)."""
        self._tokens = None

    def encode(self, obj: object) -> bytes:
        """The banana bytes for ``obj``; raises ``BananaError`` (and sends nothing) if it cannot.

        This is the hot path of every call sent. The C accelerator, where built, writes
        the usual values and leaves everything else (errors included) to the Python code
        below. There the two helpers are closures so the settings are fast cell
        variables, and the common leaves (short strings, symbols, small ints, floats)
        are handled inside the list loop itself.
        """
        if _speedups is not None:
            data: bytes | None = _speedups.encode(
                obj, self._symbols, self.size_limit, self.prefix_limit, self.max_depth
            )
            if data is not None:
                return data
        return self._encodePython(obj)

    def _encodePython(self, obj: object) -> bytes:
        """``encode`` in pure Python: the reference, and the judge of anything unusual."""
        parts: list[bytes] = []
        append = parts.append
        symbols = self._symbols
        # Messages repeat their strings (tags, dict keys, method names): the whole
        # token of each short one is kept, so most strings cost one lookup and one
        # append. A size limit under the cached lengths bypasses the cache.
        if self.size_limit < _CACHED_LENGTH:
            tokens = symbols.copy()
        elif self._tokens is None:  # made on first use: with the C encoder, never
            tokens = self._tokens = dict(symbols)
        else:
            tokens = self._tokens
        size_limit = self.size_limit
        max_depth = self.max_depth
        int_token = self._int_token
        # Lengths up to this take the one-byte-header fast path (the size limit may be lower).
        small = min(127, size_limit)
        # Ints from 128 to 16383 take a two-digit fast path, if two digits are allowed.
        two_digits = 16384 if self.prefix_limit >= 2 else 128

        def put_list(items: list[Any] | tuple[Any, ...], depth: int) -> None:
            count = len(items)
            if count <= small:
                append(_LIST_HEADERS[count])
            elif count <= size_limit:
                append(_token(count, LIST))
            else:
                raise BananaError(
                    f"list/tuple is too long to send ({count} elements, more than the size"
                    f" limit of {size_limit}); split it into several messages"
                )
            if depth > max_depth:
                raise BananaError(
                    f"value nested more than {max_depth} lists deep (or it contains itself);"
                    " flatten it"
                )
            pairs_inline = depth < max_depth and small >= 2  # a pair here is within limits
            for item in items:
                kind = type(item)
                if kind is bytes:
                    token = tokens.get(item)
                    if token is not None:
                        append(token)
                    elif len(item) <= small:
                        token = _STRING_HEADERS[len(item)] + item
                        if len(item) <= _CACHED_LENGTH:
                            if len(tokens) >= _CACHED_TOKENS:
                                tokens.clear()
                                tokens.update(symbols)
                            tokens[item] = token
                        append(token)
                    else:
                        put_other(item, depth)
                elif kind is list or kind is tuple:
                    # A pair of known strings ([b"unicode", b"key"], a dict's key form)
                    # is the commonest list of all: written here, without a call.
                    if len(item) == 2 and pairs_inline:
                        first, second = item
                        token = tokens.get(first) if type(first) is bytes else None
                        if token is not None and type(second) is bytes:
                            second_token = tokens.get(second)
                            if second_token is not None:
                                append(_PAIR_HEADER)
                                append(token)
                                append(second_token)
                                continue
                    put_list(item, depth + 1)
                elif kind is int and 0 <= item < two_digits:
                    if item < 128:
                        append(_INT_TOKENS[item])
                    else:
                        append(bytes((item & 0x7F, item >> 7, INT)))
                elif kind is float:
                    append(_FLOAT_TAG)
                    append(_FLOAT_PACK(item))
                else:
                    put_other(item, depth)

        def put_other(value: object, depth: int) -> None:
            """Any one value inside a list at ``depth``: the general, slower path."""
            kind = type(value)
            if kind is list or kind is tuple:
                put_list(value, depth + 1)  # type: ignore[arg-type]
            elif kind is bytes:
                put_bytes(value)  # type: ignore[arg-type]
            elif kind is int or kind is bool:
                append(int_token(value))  # type: ignore[arg-type]
            elif kind is float:
                append(_FLOAT_TAG)
                append(_FLOAT_PACK(value))
            # Subclasses, tested in Twisted's order: sequences, ints, floats, bytes.
            elif isinstance(value, (list, tuple)):
                # list() honours an overridden __iter__, so the count matches the elements.
                put_list(list(value), depth + 1)
            elif isinstance(value, int):
                append(int_token(int.__int__(value)))
            elif isinstance(value, float):
                append(_FLOAT_TAG)
                append(_FLOAT_PACK(value))
            elif isinstance(value, bytes):
                put_bytes(bytes(memoryview(value)))
            else:
                # The type named as Twisted's fullyQualifiedName names a class.
                raise BananaError(
                    f"Banana cannot send {kind.__module__}.{kind.__qualname__} objects:"
                    f" {quote(value)}; banana carries only lists, tuples, ints, floats and"
                    " bytes: serialize other values with spread.jelly first"
                )

        def put_bytes(value: bytes) -> None:
            symbol = symbols.get(value)
            if symbol is not None:
                append(symbol)
                return
            if len(value) > size_limit:
                raise BananaError(
                    f"byte string is too long to send ({len(value)} bytes, more than the size"
                    f" limit of {size_limit}); send it in pieces"
                )
            append(_token(len(value), STRING))
            append(value)

        try:
            put_other(obj, 0)
        except RecursionError:
            # Reachable only when the caller's own stack is already deep.
            raise BananaError(
                "value nested too deeply to encode from this call stack; flatten it"
            ) from None
        return b"".join(parts)

    def _int_token(self, value: int) -> bytes:
        """Pick the int element type exactly where Twisted does (see ``INT_MAX``/``NEG_MAX``)."""
        if value >= 0:
            if value < 128:
                return _INT_TOKENS[value]
            magnitude, type_byte = value, (INT if value <= INT_MAX else LONGINT)
        else:
            magnitude = -value
            type_byte = NEG if magnitude <= NEG_MAX else LONGNEG
        if magnitude.bit_length() > 7 * self.prefix_limit:
            raise BananaError(
                f"int is too large to send ({_number(value)}: {magnitude.bit_length()} bits do"
                f" not fit in {self.prefix_limit} header digits); send it as bytes (for"
                " example str(n).encode())"
            )
        return _token(magnitude, type_byte)


_NO_SYMBOLS: dict[Any, bytes] = {}


def _symbolsFor(vocabulary: Mapping[bytes, int] | None) -> dict[Any, bytes]:
    if not vocabulary:
        return _NO_SYMBOLS
    if vocabulary is PB_VOCABULARY:  # nearly always: a constant, so its table is made once
        return _PB_SYMBOLS
    return _symbolsOf(tuple(vocabulary.items()))  # a mapping may change: compare contents


@lru_cache(maxsize=16)
def _symbolsOf(vocabulary: tuple[tuple[Any, int], ...]) -> dict[Any, bytes]:
    """Each symbol's whole token, ready to append: one table per vocabulary, not per encoder."""
    return {word: _token(number, VOCAB) for word, number in vocabulary}


_PB_SYMBOLS = _symbolsOf(tuple(PB_VOCABULARY.items()))


def encode(obj: object) -> bytes:
    """Banana bytes for ``obj`` with no vocabulary (as ``twisted.spread.banana.encode``)."""
    return Encoder().encode(obj)
