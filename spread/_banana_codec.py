"""The sans-I/O banana codec behind ``spread.banana``: limits, vocabulary, ``Decoder``.

The encoder is ``spread._banana_encoder``; both share the constants here.

Nothing here touches a socket, a reactor or a clock; the Twisted protocol in
``spread.banana`` feeds bytes in and writes bytes out. See ``docs/wire.md``
for the format and ``spread.banana``'s docstring for the error contract.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from spread._native import speedups as _speedups

# -- limits ------------------------------------------------------------------------------

SIZE_LIMIT: Final = 640 * 1024
"""Longest byte string, and most elements in one list, accepted or sent: 655,360.

This is Twisted's ``twisted.spread.banana.SIZE_LIMIT``: a Twisted peer refuses
anything larger, so sending more would only get the connection dropped. It bounds
what one header can make us expect, not the size of a whole message. For comparison,
other single-frame limits: h11 buffers at most 16 KiB of request head, Twisted's own
``NetstringReceiver`` takes 99,999 bytes and ``LineReceiver`` 16 KiB lines, and
``websockets`` accepts 1 MiB messages by default.
"""

PREFIX_LIMIT: Final = 64
"""Most base-128 digits a header may have (Twisted's ``setPrefixLimit(64)`` default).

Sixty-four digits hold 448 bits, so this also bounds the integers that travel;
it keeps a peer from making us scan an endless header.
"""

MAX_DEPTH: Final = 1000
"""Deepest list nesting decoded or encoded; deeper raises ``BananaError``.

Twisted's encoder recurses once per level, so it stops near Python's default
recursion limit (about 990 levels): 1000 accepts anything a Twisted peer can send,
while a peer's 100,000-level bomb is refused on its 1001st header. Our encoder
recurses too; a value too deep for the caller's remaining stack raises
``BananaError`` before reaching this limit.
"""

MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""Bytes one top-level expression may take on the wire before the decoder refuses it.

``SIZE_LIMIT`` bounds each string and list on its own, not their sum: without this a peer could
send a list of 640K strings of 640K bytes each. Counted from the end of the last complete
top-level list; 16 MiB leaves room for megabyte arguments.
"""

BYTES_PER_LIST: Final = 4
"""Wire bytes a message must carry per list it opens, beyond ``LIST_ALLOWANCE`` lists.

An empty list is 2 bytes on the wire (``00 80``) but a Python list of 56 bytes or more, so
without this a message of empty lists held over 30 times its size while it arrived (540 MB for
one unfinished 15 MiB message). Every list jelly sends starts with a tag: ``[b"None"]`` is
``01 80 01 87`` in the "pb" dialect, and more without it. So PB data has at least 4 bytes per
list (a dict's ``[key, value]`` pairs, untagged, are paid for by their keys and values), and
this is a fact of the format, not a setting. The densest lists it lets through, 4-byte ones
like ``[b"None"]``, still cost 18 (C) to 24 (Python) times their size: ``MAX_MESSAGE_SIZE``
bounds the rest.
"""

LIST_ALLOWANCE: Final = 4096
"""Lists a message may open beyond one per ``BYTES_PER_LIST`` bytes (``Decoder(list_allowance=)``).

The rule is checked as each list header arrives, before the list's own contents, so a message
opening with nested lists (``[[[b"None"]]]``) is briefly short of bytes; the allowance covers
that and small messages of bare lists (``[[], []]``) that raw banana, without jelly, may send.
4,096 lists cost at most a quarter of a megabyte.
"""

INT_MAX: Final = 2**31 - 1
"""Above this, non-negative ints travel as "large int" (0x85) rather than int (0x81)."""

NEG_MAX: Final = 2**31
"""Magnitudes up to this (so -2**31 included) travel as negative int (0x83); above, 0x86."""

# -- element type bytes (each has its high bit set; header digits never do) -------------

LIST: Final = 0x80
INT: Final = 0x81
STRING: Final = 0x82
NEG: Final = 0x83
FLOAT: Final = 0x84
LONGINT: Final = 0x85
LONGNEG: Final = 0x86
VOCAB: Final = 0x87

_PB_WORDS = (
    # jelly's tags
    b"None", b"class", b"dereference", b"reference", b"dictionary", b"function",
    b"instance", b"list", b"module", b"persistent", b"tuple", b"unpersistable",
    # PB's reference forms
    b"copy", b"cache", b"cached", b"remote", b"local", b"lcache",
    # PB's messages
    b"version", b"login", b"password", b"challenge", b"logged_in", b"not_logged_in",
    b"cachemessage", b"message", b"answer", b"error", b"decref", b"decache", b"uncache",
)  # fmt: skip

PB_VOCABULARY: Final[Mapping[bytes, int]] = {word: n for n, word in enumerate(_PB_WORDS, 1)}
"""The "pb" dialect's symbols: these strings travel as a number (type 0x87) instead."""

PB_VOCABULARY_BY_NUMBER: Final[Mapping[int, bytes]] = {n: w for w, n in PB_VOCABULARY.items()}
"""``PB_VOCABULARY`` inverted, for decoding."""


class BananaError(Exception):
    """Bytes that are not valid banana, beyond a limit, or a value banana cannot carry.

    Where Twisted's banana raises something else for the same bytes, we raise a subclass that
    is that too (``UnknownSymbolError``, ``UnsupportedElementError``), so that code written
    against Twisted catches what it caught before. Messages open with Twisted's words where
    Twisted has some, and go on to say why and what to change.
    """


class UnknownSymbolError(BananaError, KeyError):
    """A vocabulary symbol (type 0x87) whose number the dialect in use does not define.

    Also a ``KeyError``, as in Twisted (whose message is the number alone: ours opens with it).
    """

    __str__ = BaseException.__str__  # the message as written, not quoted as KeyError's is


class UnsupportedElementError(BananaError, NotImplementedError):
    """An element no dialect in use defines: an unknown type byte, or a vocabulary symbol
    while no dialect with a vocabulary (such as "pb") is chosen.

    Also a ``NotImplementedError``, which is what Twisted raises for both.
    """


def _number(value: int) -> str:
    """An int for a message: in full, as Twisted writes it, unless too long to write cheaply
    (``str`` of an int is quadratic, and refused past 4,300 digits)."""
    bits = value.bit_length()
    return str(value) if bits <= 4096 else f"<int of {bits} bits>"


def _headerValue(digits: bytes | bytearray) -> int:
    """The number base-128 ``digits`` (least significant first) stand for, as Twisted's
    ``b1282int`` counts it: the sum of digit * 128**position.

    Halves are combined rather than the digits one by one, so a header as long as a large
    prefix limit allows costs n log n, not n**2.
    """
    if len(digits) > 64:
        half = len(digits) // 2
        return _headerValue(digits[:half]) + (_headerValue(digits[half:]) << 7 * half)
    value = 0
    for digit in reversed(digits):
        value = (value << 7) + digit
    return value


def _token(magnitude: int, type_byte: int) -> bytes:
    """A header holding ``magnitude`` (base 128, least significant digit first) and its type."""
    if magnitude < 128:
        return bytes((magnitude, type_byte))
    if magnitude < 16384:
        return bytes((magnitude & 0x7F, magnitude >> 7, type_byte))
    digits = bytearray()
    while magnitude:
        digits.append(magnitude & 0x7F)
        magnitude >>= 7
    digits.append(type_byte)
    return bytes(digits)


# -- decoding ----------------------------------------------------------------------------

_FLOAT_UNPACK = struct.Struct(">d").unpack_from
_HEADER_DIGITS = re.compile(rb"[\x00-\x7f]*")
_PADDING = b"\0\0\0\0"  # appended to each buffer decoded: header digits, never mistaken for data


# The C scanner's error codes (see spread/_speedups.c); the messages are written here.
_ERR_PREFIX, _ERR_TOO_LONG, _ERR_DEPTH, _ERR_SYMBOL, _ERR_TYPE, _ERR_TOO_BIG = range(1, 7)
_ERR_LISTS: Final = 7  # a message opening more lists than its bytes allow


def _symbolTable(vocabulary: Mapping[int, bytes] | None) -> tuple[bytes | None, ...] | None:
    """``vocabulary`` as a tuple indexed by number, for the C scanner; None if it is not one.

    Shared by every decoder with an equal vocabulary (one per connection otherwise)."""
    if not vocabulary:
        return ()
    if vocabulary is PB_VOCABULARY_BY_NUMBER:  # nearly always: a constant, its table made once
        return _PB_TABLE
    try:
        return _tableOf(tuple(vocabulary.items()))
    except TypeError:  # unhashable words: not a table the C scanner could use anyway
        return None


@lru_cache(maxsize=16)
def _tableOf(items: tuple[tuple[Any, Any], ...]) -> tuple[bytes | None, ...] | None:
    table: list[bytes | None] = []
    for number, word in items:
        if type(number) is not int or not 0 <= number < 4096 or type(word) is not bytes:
            return None
        table.extend([None] * (number + 1 - len(table)))
        table[number] = word
    return tuple(table)


_PB_TABLE = _tableOf(tuple(PB_VOCABULARY_BY_NUMBER.items()))


_IDLE: tuple[list[object], int] = ([], -1)
"""Slot 0 of a decoder's stack between feeds; each feed puts its own result list there."""

_NO_TAIL = b""
"""An empty tail: shared, never grown (feed only grows a tail that is not empty)."""


class Decoder:
    """Incremental banana decoder: ``feed(bytes)`` returns the top-level expressions completed.

    Any chunking of the same bytes gives the same expressions. Time is linear in
    the input: undecoded bytes are kept only from the start of the one element
    still incomplete, partially built lists are kept on a stack, and an element
    that cannot be complete yet is not looked at again until enough bytes arrive.
    Limits are checked as soon as a header is complete, before anything is allocated; any
    int is a valid limit, however large. After a ``BananaError`` the decoder refuses all
    further input; so it does after any other exception escaped ``feed`` (``MemoryError``,
    ``KeyboardInterrupt``), which leaves a scan halfway.

    Each message may open at most one list per ``BYTES_PER_LIST`` bytes received so far,
    plus ``list_allowance``. The ratio is fixed because jelly never sends less; only the
    allowance is a setting, for raw banana users who send bare lists (a huge one turns the
    rule off).
    """

    __slots__ = (
        "_failure", "_lists", "_needed", "_open", "_partial", "_symbols", "_tail", "_vocabulary",
        "list_allowance", "max_depth", "max_message_size", "prefix_limit", "size_limit",
    )  # fmt: skip

    def __init__(
        self,
        vocabulary: Mapping[int, bytes] | None = None,
        *,
        size_limit: int = SIZE_LIMIT,
        prefix_limit: int = PREFIX_LIMIT,
        max_depth: int = MAX_DEPTH,
        max_message_size: int = MAX_MESSAGE_SIZE,
        list_allowance: int = LIST_ALLOWANCE,
    ) -> None:
        self.vocabulary = vocabulary
        self.size_limit = size_limit
        self.prefix_limit = prefix_limit
        self.max_depth = max_depth
        self.max_message_size = max_message_size
        self.list_allowance = list_allowance
        self._partial = 0  # bytes of the incomplete expression already decoded (before _tail)
        self._lists = 0  # lists the incomplete expression has opened so far
        # Open lists, outermost first, as (list, elements still to come). Slot 0 is the
        # top level: each feed() puts its own result list there.
        self._open: list[tuple[list[object], int]] = [_IDLE]
        self._tail: bytes | bytearray = _NO_TAIL  # undecoded bytes: the start of an incomplete
        # element (a bytearray, grown in place, whenever it is not empty)
        self._needed = 0  # len(_tail) below which decoding cannot make progress
        self._failure: BananaError | None = None

    @property
    def vocabulary(self) -> Mapping[int, bytes] | None:
        """Symbol number to string; settable (a connection switches it once a dialect is chosen)."""
        return self._vocabulary

    @vocabulary.setter
    def vocabulary(self, vocabulary: Mapping[int, bytes] | None) -> None:
        self._vocabulary = vocabulary
        self._symbols = _symbolTable(vocabulary)

    @property
    def pending(self) -> bool:
        """Whether bytes have arrived that no returned expression accounts for yet."""
        return bool(self._tail) or len(self._open) > 1

    def feed(
        self, data: bytes | bytearray | memoryview = b"", max_expressions: int | None = None
    ) -> list[object]:
        """Decode ``data`` after what came before; return the expressions it completed.

        With ``max_expressions``, stop after that many; the rest stays buffered for
        the next call (``feed()`` with no data continues). A connection uses this to
        switch vocabulary right after the dialect is chosen.
        """
        if max_expressions is not None and max_expressions < 1:
            raise ValueError(f"max_expressions must be at least 1, not {max_expressions}")
        if self._failure is not None:
            raise BananaError(f"this decoder already refused its input ({self._failure})")
        tail = self._tail
        if tail:
            tail += data
            if len(tail) < self._needed:
                return []
            buffer: bytes | bytearray = tail
        elif not data:
            return []
        else:
            buffer = data if type(data) is bytes else bytes(data)
        try:
            return self._decode(buffer, -1 if max_expressions is None else max_expressions)
        except BananaError as e:
            self._failure = e
            raise
        except BaseException as e:
            # MemoryError, KeyboardInterrupt...: the scan stopped halfway, with lists on the
            # stack that the undecoded bytes would add to again. Nothing can resume from
            # there, so the decoder refuses what follows, as after a BananaError, and lets
            # go of what it held.
            self._stop(e)
            raise

    def _stop(self, cause: BaseException) -> None:
        """Refuse all further input after ``cause`` interrupted a scan, and free its state."""
        self._failure = BananaError(
            f"decoding was interrupted by {type(cause).__qualname__} and cannot resume"
        )
        self._open = [_IDLE]
        self._tail = _NO_TAIL
        self._needed = self._partial = self._lists = 0

    def _decode(self, buf: bytes | bytearray, wanted: int) -> list[object]:
        """Decode ``buf`` (the tail kept from before, then new bytes); stop after ``wanted``."""
        out: list[object] = []
        end = len(buf)
        self._open[0] = (out, wanted)
        scanned = None
        if _speedups is not None:
            # None if the C scanner cannot take these settings (negative limits, or not
            # ints; a vocabulary that is not a small table): then Python scans.
            scanned = _speedups.scan(
                buf, end, self._open, self._symbols, self.size_limit, self.prefix_limit,
                self.max_depth, self.max_message_size, self.list_allowance, self._partial,
                self._lists,
            )
        if scanned is not None:
            pos, needed, last_done, lists, error, detail, length = scanned
            if error:
                raise self._scanError(error, detail, length)
        else:
            # One copy per feed that can make progress; the padding lets the hot
            # loop peek a few bytes ahead without a bounds check.
            pos, needed, last_done, lists = self._scan(bytes(buf) + _PADDING, end)
        self._lists = lists
        self._needed = needed - pos
        self._open[0] = _IDLE  # not ``out``: the caller owns the messages now
        if pos == end and len(self._open) == 1:
            # Nothing left half received (the usual case): nothing to keep or to measure.
            self._tail = _NO_TAIL
            self._partial = 0
        else:
            self._tail = bytearray(buf[pos:end])
            self._checkMessageSize(pos, last_done)
        return out

    def _scan(self, buf: bytes, end: int) -> tuple[int, int, int, int]:
        """The hot loop in pure Python: (position reached, bytes needed, last message end,
        lists the incomplete message has opened).

        Most elements have a one-byte header (the first branch) and are handled
        without a function call; two-digit headers are the second most common.
        Type bytes are written as literals (0x80 LIST, 0x81 INT, 0x82 STRING,
        0x83 NEG, 0x84 FLOAT, 0x85 LONGINT, 0x86 LONGNEG, 0x87 VOCAB): constants
        are cheaper than global lookups, once per element.
        """
        pos = 0
        needed = 0
        vocabulary = self.vocabulary or {}
        max_depth = self.max_depth
        size_limit = self.size_limit
        # A one-digit header skips the general path, unless it could break the size
        # limit or the prefix limit; two digits likewise.
        small = min(127, size_limit) if self.prefix_limit >= 1 else -1
        two_digits = self.prefix_limit >= 2
        stack = self._open
        out = stack[0][0]
        items, remaining = stack.pop()  # the innermost open list and how many it still needs
        last_done = -1  # where the last top-level list completed in ``buf``
        message_start = -self._partial  # where the current message began, relative to ``buf``
        max_size = self.max_message_size
        # The list budget, as one number to compare: a list whose header ends before
        # ``list_floor`` is one too many. Each list opened (empty and top-level ones too)
        # moves it BYTES_PER_LIST on; it starts LIST_ALLOWANCE lists' worth back.
        credit = BYTES_PER_LIST * self.list_allowance
        list_floor = message_start + BYTES_PER_LIST * self._lists - credit
        while pos < end:
            count = buf[pos]
            kind = buf[pos + 1]
            if count <= small and kind >= 0x80:
                start = pos + 2
            elif count == 0x84:  # a float has no header
                kind, count, start = 0x84, 0, pos + 1
            elif kind < 0x80 and count < 0x80 and buf[pos + 2] >= 0x80 and two_digits:
                # Two digits: ints from 128, strings and lists from 128 elements.
                count |= kind << 7
                kind = buf[pos + 2]
                start = pos + 3
                if count > size_limit and kind in (0x82, 0x80):
                    raise self._too_long(kind, count)
            else:
                kind, count, start = self._long_header(buf, pos, end)
                if kind < 0:
                    needed = end + 1
                    break
            if kind == 0x82:
                stop = start + count
                if stop > end:
                    needed = stop
                    break
                items.append(buf[start:stop])
                pos = stop
            elif kind == 0x80:
                if len(stack) >= max_depth:
                    raise self._tooDeep()
                list_floor += 4  # BYTES_PER_LIST
                if start < list_floor:
                    raise self._tooManyLists(start - message_start)
                pos = start
                if count == 2 and buf[pos + 1] == 0x82 and buf[pos] <= small and stack:
                    # A pair of short strings ([b"unicode", b"text"], jelly's commonest
                    # form) inside a message: read whole here if both are in the buffer.
                    second = pos + 2 + buf[pos]
                    if second + 1 < end and buf[second + 1] == 0x82 and buf[second] <= small:
                        stop = second + 2 + buf[second]
                        if stop <= end:
                            items.append([buf[pos + 2 : second], buf[second + 2 : stop]])
                            pos = stop
                            count = 0  # the list is complete
                if count:
                    stack.append((items, remaining))
                    items = []
                    remaining = count
                    continue
                if pos == start:
                    items.append([])
            elif kind == 0x87:
                word = vocabulary.get(count)
                if word is None:
                    raise self._unknown_symbol(count)
                items.append(word)
                pos = start
            elif kind == 0x81 or kind == 0x85:
                items.append(count)
                pos = start
            elif kind == 0x84:
                stop = start + 8
                if stop > end:
                    needed = stop
                    break
                items.append(_FLOAT_UNPACK(buf, start)[0])
                pos = stop
            elif kind == 0x83 or kind == 0x86:
                items.append(-count)
                pos = start
            else:
                raise self._unknownType(kind)
            remaining -= 1
            if not remaining:
                # The innermost list is complete: close it and every parent it completes.
                while not remaining and stack:
                    done = items
                    items, remaining = stack.pop()
                    items.append(done)
                    remaining -= 1
                if items is out:  # a whole message: was it within bounds?
                    if pos - message_start > max_size:
                        raise self._too_big(max_size)
                    last_done = message_start = pos
                    list_floor = pos - credit
                if not remaining:  # the top level itself: ``wanted`` expressions decoded
                    break
        stack.append((items, remaining))
        return pos, needed, last_done, (list_floor + credit - message_start) // BYTES_PER_LIST

    def _scanError(self, error: int, detail: Any, length: Any) -> BananaError:
        """The error for an error code of the C scanner (what the Python scanner raises)."""
        if error == _ERR_PREFIX:
            return self._prefixTooLong()
        if error == _ERR_TOO_LONG:
            return self._too_long(detail, length)
        if error == _ERR_DEPTH:
            return self._tooDeep()
        if error == _ERR_SYMBOL:
            return self._unknown_symbol(detail)
        if error == _ERR_TYPE:
            return self._unknownType(detail)
        if error == _ERR_LISTS:
            return self._tooManyLists(detail)
        return self._too_big(self.max_message_size)

    def _checkMessageSize(self, pos: int, last_done: int) -> None:
        """Refuse an incomplete expression that has grown past ``max_message_size``."""
        if len(self._open) == 1 and not self._tail:
            self._partial = 0
            return
        self._partial = pos - last_done if last_done >= 0 else self._partial + pos
        if self._partial + len(self._tail) > self.max_message_size:
            raise self._too_big(self.max_message_size)

    # -- the errors: each method makes one, for both scanners ------------------------------

    def _too_big(self, limit: int) -> BananaError:
        return BananaError(
            f"a message of more than {limit} bytes; refused (the limit is"
            " Decoder(max_message_size=...), Banana.maxMessageSize, or Limits.maxMessageSize"
            " on a PB factory)"
        )

    def _tooManyLists(self, size: int) -> BananaError:
        """The error for a list past the budget, ``size`` bytes into its message."""
        return BananaError(
            f"a message of {size} bytes holding more than"
            f" {size // BYTES_PER_LIST + self.list_allowance} lists; refused (at most one list"
            f" per {BYTES_PER_LIST} bytes, plus {self.list_allowance}: jelly sends at least"
            f" {BYTES_PER_LIST} bytes per list, so this is not PB data but an attempt to exhaust"
            " memory; the allowance is Decoder(list_allowance=...))"
        )

    def _long_header(self, buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
        """Parse a header of 0 or 2+ digits at ``pos``: (type byte, value, next position).

        Returns a negative type byte if the header is not complete yet. Enforces the
        prefix limit, and the size limit for lists and strings.
        """
        limit = self.prefix_limit
        digits = _HEADER_DIGITS.match(buf, pos, min(end, pos + limit + 1))
        digits_end = digits.end() if digits else pos
        if digits_end - pos > limit:
            raise BananaError(self._prefixTooLong())
        if digits_end == end:
            return -1, 0, end
        if digits_end - pos > 64:  # only under a prefix limit above Twisted's
            value = _headerValue(buf[pos:digits_end])
        else:
            value = 0
            for digit in reversed(buf[pos:digits_end]):
                value = (value << 7) | digit
        type_byte = buf[digits_end]
        if type_byte in (STRING, LIST) and value > self.size_limit:
            raise self._too_long(type_byte, value)
        return type_byte, value, digits_end + 1

    def _prefixTooLong(self) -> BananaError:
        return BananaError(
            f"Security precaution: more than {self.prefix_limit} bytes of prefix (an element"
            f" header longer than {self.prefix_limit} digits); refused (the limit is"
            " Decoder(prefix_limit=...) or Banana.prefixLimit)"
        )

    def _tooDeep(self) -> BananaError:
        return BananaError(
            f"lists nested more than {self.max_depth} deep; refused (the limit is"
            " Decoder(max_depth=...) or Banana.maxDepth)"
        )

    @staticmethod
    def _unknownType(type_byte: int) -> BananaError:
        return UnsupportedElementError(
            f"Invalid Type Byte {bytes((type_byte,))!r}: unknown element type byte"
            f" 0x{type_byte:02x}; this is not banana"
        )

    def _too_long(self, type_byte: int, length: int) -> BananaError:
        if type_byte == LIST:
            twisted, what = "List too long", f"a list of {_number(length)} elements"
        else:
            twisted, what = "String too long", f"a string of {_number(length)} bytes"
        return BananaError(
            f"Security precaution: {twisted}: the peer announced {what}, more than the size"
            f" limit ({self.size_limit}); refused before reading it (the limit is"
            " Decoder(size_limit=...) or Banana.sizeLimit)"
        )

    def _unknown_symbol(self, number: int) -> BananaError:
        """As Twisted: a number no vocabulary defines is a KeyError; a symbol of the "pb"
        vocabulary outside the "pb" dialect is a NotImplementedError."""
        if self.vocabulary:
            return UnknownSymbolError(
                f"{_number(number)}: unknown vocabulary symbol; the peer speaks a different dialect"
            )
        word = PB_VOCABULARY_BY_NUMBER.get(number)
        if word is None:
            return UnknownSymbolError(
                f"{_number(number)}: unknown vocabulary symbol, and no dialect with a vocabulary"
                " (such as 'pb') is in use"
            )
        return UnsupportedElementError(
            f"Invalid item for pb protocol {word!r}: vocabulary symbol {number} received, but"
            " no dialect with a vocabulary (such as 'pb') is in use"
        )


def decode(data: bytes) -> object:
    """The one expression ``data`` holds, without vocabulary; anything else is a BananaError."""
    decoder = Decoder()
    expressions = decoder.feed(data)
    if len(expressions) != 1 or decoder.pending:
        found = "an incomplete expression" if not expressions else f"{len(expressions)} expressions"
        if expressions and decoder.pending:
            found += " and the start of another"
        raise BananaError(f"expected exactly one complete banana expression, found {found}")
    return expressions[0]
