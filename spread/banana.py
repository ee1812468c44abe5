"""Banana, PB's wire encoding: a drop-in for ``twisted.spread.banana``, byte for byte.

Banana carries s-expressions: nested lists of ints, floats and byte strings
(``docs/wire.md`` describes every byte). This module is the public face:

- ``encode(obj)`` / ``decode(data)``: one expression, no vocabulary, as in Twisted.
- ``Encoder`` / ``Decoder``: the sans-I/O codec. ``Decoder.feed(data)`` accepts any
  chunking and returns the expressions completed so far, in time linear in the input.
- ``Banana``: a thin Twisted ``Protocol`` over them that negotiates the dialect
  (``b"pb"`` turns on ``PB_VOCABULARY``) and hands each expression to
  ``expressionReceived``; the PB broker subclasses it.
- The limits, each configurable per ``Decoder``/``Encoder`` and per ``Banana``:
  ``SIZE_LIMIT`` (string length and list count), ``PREFIX_LIMIT`` (header digits)
  and ``MAX_DEPTH`` (list nesting).

Error contract: bytes from a peer that are malformed, or exceed a limit, raise
``BananaError`` from ``Decoder.feed``/``decode``, and a ``Banana`` connection logs
them and drops itself (only itself). A value that cannot be encoded raises
``BananaError`` from ``encode`` and nothing is sent. Where Twisted raises ``KeyError``
(an unknown vocabulary symbol) or ``NotImplementedError`` (a symbol outside the "pb"
dialect, an unknown type byte), the ``BananaError`` is that too: ``UnknownSymbolError``,
``UnsupportedElementError``. Any other exception escaping this module (but ``MemoryError``
or an interrupt, after which a ``Decoder`` refuses to go on) is a bug in spread: please
report it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from twisted.internet import protocol
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread import _banana_codec as _codec
from spread._banana_codec import (
    MAX_DEPTH,
    MAX_MESSAGE_SIZE,
    PB_VOCABULARY,
    PB_VOCABULARY_BY_NUMBER,
    PREFIX_LIMIT,
    SIZE_LIMIT,
    BananaError,
    Decoder,
    UnknownSymbolError,
    UnsupportedElementError,
    decode,
)
from spread._banana_encoder import Encoder, encode
from spread._quote import quote
from spread._writethrough import canWriteThrough, writeThrough
from spread.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "FLOAT", "HIGH_BIT_SET", "INT", "LIST", "LONGINT", "LONGNEG", "MAX_DEPTH", "MAX_MESSAGE_SIZE",
    "NEG",
    "PB_VOCABULARY", "PB_VOCABULARY_BY_NUMBER", "PREFIX_LIMIT", "SIZE_LIMIT", "STRING", "VOCAB",
    "Banana", "BananaError", "Decoder", "Encoder", "UnknownSymbolError", "UnsupportedElementError",
    "b1282int", "connectionDone", "decode", "encode", "int2b128", "setPrefixLimit",
]  # fmt: skip

# Twisted's names for the type bytes, as one-byte strings like Twisted's.
LIST = bytes((_codec.LIST,))
INT = bytes((_codec.INT,))
STRING = bytes((_codec.STRING,))
NEG = bytes((_codec.NEG,))
FLOAT = bytes((_codec.FLOAT,))
LONGINT = bytes((_codec.LONGINT,))
LONGNEG = bytes((_codec.LONGNEG,))
VOCAB = bytes((_codec.VOCAB,))
HIGH_BIT_SET = LIST

for _public in (BananaError, Decoder, Encoder, UnknownSymbolError, UnsupportedElementError):
    _public.__module__ = __name__  # where users import them from, and what tracebacks show
del _public

_log = Logger()
_IDLE_DECODER = Decoder()  # what a closed connection holds instead of its own


def int2b128(integer: int, stream: Callable[[bytes], object]) -> None:
    """Write a non-negative int's base-128 header digits to ``stream``, one byte per call."""
    if integer < 0:
        raise ValueError(f"headers hold non-negative ints only, not {integer}")
    for digit in _codec._token(integer, 0)[:-1]:
        stream(bytes((digit,)))


def b1282int(st: bytes) -> int:
    """The int that base-128 header digits (least significant first) stand for."""
    return _codec._headerValue(st)


def setPrefixLimit(limit: int) -> None:
    """Set the header-digit limit for every ``Banana`` that does not set its own (Twisted's API).

    Prefer ``protocol.setPrefixLimit(limit)`` on one connection, or a subclass
    attribute ``prefixLimit = ...``: this changes a process-wide default.
    """
    Banana.prefixLimit = limit


class Banana(protocol.Protocol):
    """One banana connection: dialect negotiation, then one ``expressionReceived`` per expression.

    The server offers ``knownDialects``; the client answers with the first of them it
    knows; in the "pb" dialect the strings of ``PB_VOCABULARY`` travel as symbols.
    Subclasses (the PB broker) override ``connectionReady`` and ``expressionReceived``
    and send with ``sendEncoded``. Limits come from ``limits`` (a
    ``spread.limits.Limits``: message size, string size, depth) and ``prefixLimit``,
    read whenever bytes move, so they can be set on the class, on a subclass or on
    one instance, at any time.
    """

    knownDialects: list[bytes] = [b"pb", b"none"]
    """Dialects we speak, in order of preference (the server's order decides)."""

    limits: Limits = DEFAULT_LIMITS
    """The bounds on what the peer may send; a broker sets its own per connection.

    ``sizeLimit``, ``maxDepth`` and ``maxMessageSize`` read and write these fields
    (a subclass may still override any of them with a plain class attribute)."""

    prefixLimit: int = PREFIX_LIMIT

    writeThrough: bool = True
    """Send each message at once when the socket has nothing queued (plain TCP only).

    Saves a reactor turn per message; see ``spread._writethrough``. Set False on a
    subclass or instance, before connecting, to queue every write as Twisted does."""

    @property
    def sizeLimit(self) -> int:
        """Longest string and list accepted or sent (``limits.maxStringSize``; Twisted's name)."""
        return self.limits.maxStringSize

    @sizeLimit.setter
    def sizeLimit(self, limit: int) -> None:
        self.limits = self.limits.replace(maxStringSize=limit)

    @property
    def maxDepth(self) -> int:
        """Deepest list nesting accepted or sent (``limits.maxDepth``)."""
        return self.limits.maxDepth

    @maxDepth.setter
    def maxDepth(self, limit: int) -> None:
        self.limits = self.limits.replace(maxDepth=limit)

    @property
    def maxMessageSize(self) -> int:
        """Most bytes one received message may take (``limits.maxMessageSize``)."""
        return self.limits.maxMessageSize

    @maxMessageSize.setter
    def maxMessageSize(self, limit: int) -> None:
        self.limits = self.limits.replace(maxMessageSize=limit)

    outgoingVocabulary: ClassVar[Mapping[bytes, int]] = PB_VOCABULARY
    incomingVocabulary: ClassVar[Mapping[int, bytes]] = PB_VOCABULARY_BY_NUMBER

    # Dialects in which the vocabulary above is used.
    _vocabularyDialects: ClassVar[frozenset[bytes]] = frozenset({b"pb"})

    # Where a connection starts; set on the instance when they change. (Class attributes
    # rather than a dozen assignments in __init__: a busy server makes thousands of these.)
    _dialect: bytes | None = None
    _dropped = False
    _direct = False  # whether sendEncoded writes through (see makeConnection)
    _outbox: list[bytes] | None = None  # while a batch is collected (_beginBatch)
    _watchWrites = False  # whether sendEncoded reports sizes to _written
    _outboxSize = 0
    _syncedLimits: Limits | None = None  # what the codec was last given
    _syncedPrefix = -1  # -1: never synced (the codec still has the defaults it was made with)
    _wroteThrough = False  # whether a message sent outside any read went straight out since the
    # last read (see sendEncoded)

    def __init__(self, isClient: bool = True) -> None:
        self.isClient = isClient
        self._encoder = Encoder()
        self._decoder = Decoder()

    @property
    def currentDialect(self) -> bytes | None:
        """The dialect both sides settled on, or None while negotiating (read-only)."""
        return self._dialect

    # -- hooks for subclasses -------------------------------------------------------------

    def connectionReady(self) -> None:
        """Called once the dialect is chosen: from now on both sides may send expressions."""

    def expressionReceived(self, obj: Any) -> None:
        """Called with each top-level expression the peer sends after negotiation."""
        raise NotImplementedError(
            f"{type(self).__qualname__} must override expressionReceived to handle what it receives"
        )

    # -- sending --------------------------------------------------------------------------

    def sendEncoded(self, obj: object) -> None:
        """Encode ``obj`` and write it; raises ``BananaError`` (writing nothing) if it cannot.

        A message larger than ``maxMessageSize`` is refused here too: a peer with the same
        limits (a default spread peer) would drop the connection on receiving it, and with
        it every other call waiting there.
        """
        if self.limits is not self._syncedLimits or self.prefixLimit != self._syncedPrefix:
            self._syncLimits()
        data = self._encoder.encode(obj)
        if len(data) > self.limits.maxMessageSize:
            raise BananaError(
                f"message is too long to send ({len(data)} bytes, more than the "
                f"{self.limits.maxMessageSize} a peer with these limits accepts); send less "
                "per call, or raise Limits.maxMessageSize on both sides"
            )
        if self._watchWrites:
            self._written(len(data))
        outbox = self._outbox
        if outbox is None:
            # Outside a read (a timer, a cooperator, another thread's call): the first message
            # since the last read goes straight out; the rest join Twisted's queue, which the
            # reactor writes in one send when this turn ends. A master updating its replicas
            # many times a turn then sends one segment per turn, not one per update, and
            # nothing waits in a buffer of ours: a loseConnection() right after still sends it.
            if self._direct and not self._wroteThrough:
                self._wroteThrough = True
                self._write(data)
            else:
                self._queue(data)
            return
        outbox.append(data)
        self._outboxSize += len(data)
        if self._outboxSize >= self.limits.maxQueuedOutput:
            self._flushOutbox()  # so that backpressure sees a large batch as it grows

    def _write(self, data: bytes, through: bool = True) -> None:
        if through and self._direct:
            data = writeThrough(self.transport, data)
            if not data:
                return  # all sent
        self._queue(data)

    def _queue(self, data: bytes) -> None:
        """Hand ``data`` to Twisted's queue, which sends it when the socket is writable."""
        self._queueing()
        transport: Any = self.transport
        transport.write(data)

    def _queueing(self) -> None:
        """Hook: bytes of ours are about to wait in Twisted's queue (until now, everything
        sent went straight to the socket)."""

    def _beginBatch(self) -> bool:
        """Collect what is sent until ``_endBatch`` (while handling one read) into one write.

        Many answers produced by one read then leave in one segment, instead of one small
        write each, which Nagle's algorithm (where TCP_NODELAY is not set) would hold back
        until the peer's delayed ACK.
        """
        if self._outbox is not None:
            return False  # already collecting: the outer batch writes it all
        self._outbox = []
        self._outboxSize = 0
        return True

    def _endBatch(self, through: bool = True) -> None:
        self._flushOutbox(through)
        self._outbox = None

    def _flushOutbox(self, through: bool = True) -> None:
        outbox = self._outbox
        if outbox:
            data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
            outbox.clear()
            self._outboxSize = 0
            self._write(data, through)

    def _syncLimits(self) -> None:
        """Give the codec the limits in force now (they may have changed since last time)."""
        kind = type(self)
        # Limits objects are immutable, so while the same one is in place (and no class
        # computes a limit its own way) nothing changed.
        plain = (
            kind.sizeLimit is _LIMIT_PROPERTIES[0]
            and kind.maxDepth is _LIMIT_PROPERTIES[1]
            and kind.maxMessageSize is _LIMIT_PROPERTIES[2]
        )
        limits, prefix = self.limits, self.prefixLimit
        fresh = self._syncedPrefix == -1  # the codec is as made, with the default limits
        if not (fresh and plain and limits is DEFAULT_LIMITS and prefix == PREFIX_LIMIT):
            encoder, decoder = self._encoder, self._decoder
            encoder.size_limit = decoder.size_limit = self.sizeLimit
            encoder.prefix_limit = decoder.prefix_limit = prefix
            encoder.max_depth = decoder.max_depth = self.maxDepth
            decoder.max_message_size = self.maxMessageSize
        self._syncedLimits = limits if plain else None
        self._syncedPrefix = prefix

    def setPrefixLimit(self, limit: int) -> None:
        """Set the most header digits this connection accepts and sends (Twisted's API)."""
        self.prefixLimit = limit

    # -- the Twisted protocol -------------------------------------------------------------

    def makeConnection(self, transport: Any) -> None:
        """Start on ``transport``: TCP_NODELAY on TCP; on plain TCP, messages are sent
        without waiting a turn."""
        self._direct = self.writeThrough and canWriteThrough(transport)
        _noDelay(transport)
        super().makeConnection(transport)  # type: ignore[no-untyped-call]

    def connectionMade(self) -> None:
        """The server speaks first: it offers the dialects it knows."""
        if not self.isClient:
            self.sendEncoded(list(self.knownDialects))

    def dataReceived(self, data: bytes) -> None:
        """Decode what arrived and deliver it; malformed bytes drop this connection."""
        if self._dropped:
            return
        self._wroteThrough = False
        if self.limits is not self._syncedLimits or self.prefixLimit != self._syncedPrefix:
            self._syncLimits()
        if self._dialect is None:
            self._receiveFirst(data)
        else:
            self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            expressions = self._decoder.feed(data)
        except BananaError as e:
            self._dropPeer(f"peer sent malformed banana: {e}")
            return
        self._deliver(expressions)

    def _receiveFirst(self, data: bytes) -> None:
        """Negotiate, then go on with the bytes after the offer, all in one batch: a client's
        choice of dialect and the version message it then sends leave in one write."""
        batch = self._beginBatch()
        try:
            # The first expression picks the dialect, which may change how the bytes after
            # it decode: take it alone, then continue.
            try:
                first = self._decoder.feed(data, max_expressions=1)
            except BananaError as e:
                self._dropPeer(f"peer sent malformed banana: {e}")
                return
            if first:
                self._negotiate(first[0])
                if self._dialect is not None:
                    self._receive(b"")
        finally:
            if batch:
                # A client's handshake joins Twisted's queue, sent when this reactor turn
                # ends: a process opening many connections at once then sends their
                # handshakes together, as Twisted does, rather than waking the server once
                # per connection. Everything after the handshake writes through as usual.
                self._endBatch(through=not self.isClient)

    def _deliver(self, expressions: list[Any]) -> None:
        """Hand each decoded expression to ``expressionReceived``, in order, as one batch."""
        transport = self.transport
        batch = self._beginBatch()
        try:
            for expression in expressions:
                if getattr(transport, "disconnecting", False):
                    break  # someone dropped the connection; do not act on what followed
                self.expressionReceived(expression)
        finally:
            if batch:
                self._endBatch()

    def _written(self, size: int) -> None:
        """Hook: ``size`` bytes were just encoded for the peer, while ``_watchWrites`` is set
        (the broker counts them while the peer is not reading)."""

    # -- dialect negotiation --------------------------------------------------------------

    def _negotiate(self, offer: object) -> None:
        if self.isClient:
            # The server's list, in its order of preference: take the first we know.
            if type(offer) is list:
                for dialect in offer:
                    if isinstance(dialect, bytes) and dialect in self.knownDialects:
                        self.sendEncoded(dialect)
                        self._selectDialect(dialect)
                        return
            self._dropPeer(
                f"server offered no dialect we speak (it offered {quote(offer)},"
                f" we know {self.knownDialects})"
            )
        elif isinstance(offer, bytes) and offer in self.knownDialects:
            self._selectDialect(offer)
        else:
            self._dropPeer(
                f"client chose a dialect we did not offer ({quote(offer)};"
                f" we offered {self.knownDialects})"
            )

    def _selectDialect(self, dialect: bytes) -> None:
        """Switch both directions to ``dialect`` and tell the subclass (Twisted's name)."""
        self._dialect = dialect
        uses_vocabulary = dialect in self._vocabularyDialects
        self._encoder.vocabulary = self.outgoingVocabulary if uses_vocabulary else None
        self._decoder.vocabulary = self.incomingVocabulary if uses_vocabulary else None
        self.connectionReady()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop decoding and let go of any half-received message at once."""
        self._dropped = True
        self._decoder = _IDLE_DECODER  # never fed: _dropped stops dataReceived first
        self._encoder.forget()

    def _dropPeer(self, why: str) -> None:
        """Log why, stop listening to this peer and close this connection only."""
        self._dropped = True
        _log.error("dropping banana connection: {why}", why=why)
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()


_LIMIT_PROPERTIES = (Banana.sizeLimit, Banana.maxDepth, Banana.maxMessageSize)
"""Banana's own limit properties, which read ``limits`` (a class may replace them)."""


def _noDelay(transport: Any) -> None:
    """Turn off Nagle's algorithm on the TCP connection under ``transport`` (TLS included).

    PB is request/response: a small answer held back until the peer's delayed ACK (40 ms on
    Linux) is a stall, not a saving. What one read produces is written at once anyway.
    """
    for _ in range(8):
        if ITCPTransport.providedBy(transport):
            with contextlib.suppress(OSError):  # a socket closed meanwhile: nothing to tune
                transport.setTcpNoDelay(True)
            return
        transport = getattr(transport, "transport", None)
        if transport is None:
            return
