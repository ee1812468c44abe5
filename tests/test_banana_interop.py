"""spread.banana against twisted.spread.banana: the same bytes both ways, in both dialects.

Twisted's Banana runs in this process over StringTransports; no network is needed
to compare codecs and the dialect handshake.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.spread import banana as twisted_banana

from spread import banana as spread_banana
from spread.banana import (
    PB_VOCABULARY,
    PB_VOCABULARY_BY_NUMBER,
    Banana,
    BananaError,
    Decoder,
    Encoder,
    encode,
)

INTS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.integers(min_value=-(2**448) + 1, max_value=2**448 - 1),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63)]),
    st.integers(min_value=2**31 - 3, max_value=2**31 + 3),
    st.integers(min_value=-(2**31) - 3, max_value=-(2**31) + 3),
    st.booleans(),
)
SCALARS = st.one_of(
    INTS,
    st.floats(),  # nan and the infinities included: compared as bytes
    st.binary(max_size=300),
    st.sampled_from(sorted(PB_VOCABULARY)),
)
SEXPS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.tuples(inner, inner)),
    max_leaves=40,
)


class TwistedPeer(twisted_banana.Banana):
    """Twisted's Banana, recording what it receives."""

    def __init__(self, isClient: bool = True) -> None:
        super().__init__(isClient)
        self.received: list[object] = []
        self.ready = False

    def connectionReady(self) -> None:
        self.ready = True

    def expressionReceived(self, lst: Any) -> None:
        self.received.append(lst)


class SpreadPeer(Banana):
    def __init__(self, isClient: bool = True) -> None:
        super().__init__(isClient)
        self.received: list[object] = []
        self.ready = False

    def connectionReady(self) -> None:
        self.ready = True

    def expressionReceived(self, obj: Any) -> None:
        self.received.append(obj)


def twisted_in_dialect(dialect: bytes) -> tuple[TwistedPeer, StringTransport]:
    peer = TwistedPeer(isClient=True)
    transport = StringTransport()
    peer.makeConnection(transport)
    peer._selectDialect(dialect)
    return peer, transport


def twisted_encode(value: object, dialect: bytes) -> bytes:
    peer, transport = twisted_in_dialect(dialect)
    peer.sendEncoded(value)
    return bytes(transport.value())


def twisted_decode(data: bytes, dialect: bytes) -> list[object]:
    peer, _ = twisted_in_dialect(dialect)
    peer.dataReceived(data)
    return peer.received


def vocabularies(dialect: bytes) -> tuple[Any, Any]:
    if dialect == b"pb":
        return PB_VOCABULARY, PB_VOCABULARY_BY_NUMBER
    return None, None


# A strategy rather than parametrize: pytest-twisted cannot wrap parametrized @given tests.
DIALECTS = st.sampled_from([b"none", b"pb"])


# ---------------------------------------------------------------------------------------------
# Encoding: identical bytes


@given(SEXPS)
def test_module_encode_matches_twisted(value: Any) -> None:
    assert encode(value) == twisted_banana.encode(value)


@given(dialect=DIALECTS, value=SEXPS)
def test_encoder_matches_twisted_in_each_dialect(dialect: bytes, value: Any) -> None:
    outgoing, _ = vocabularies(dialect)
    assert Encoder(outgoing).encode(value) == twisted_encode(value, dialect)


@pytest.mark.parametrize(
    "value",
    [2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63, -(2**63), 2**448 - 1, -(2**448) + 1, True],
)
def test_int_boundaries_match_twisted(value: int) -> None:
    assert encode(value) == twisted_banana.encode(value)


@pytest.mark.parametrize("value", [math.nan, -math.nan, math.inf, -math.inf, -0.0])
def test_special_floats_match_twisted(value: float) -> None:
    assert encode(value) == twisted_banana.encode(value)


@pytest.mark.parametrize("value", [2**448, -(2**448), "text", None, {1: 2}, bytearray(b"x")])
def test_values_twisted_refuses_are_refused(value: object) -> None:
    with pytest.raises(twisted_banana.BananaError):
        twisted_banana.encode(value)
    with pytest.raises(BananaError):
        encode(value)


# ---------------------------------------------------------------------------------------------
# Decoding: each side reads the other's bytes


@given(dialect=DIALECTS, value=SEXPS)
def test_spread_decodes_twisteds_bytes(dialect: bytes, value: Any) -> None:
    outgoing, incoming = vocabularies(dialect)
    wire = twisted_encode(value, dialect)
    decoded = Decoder(incoming).feed(wire)
    # Re-encoding compares nan by its bits, which == cannot.
    assert [Encoder(outgoing).encode(item) for item in decoded] == [wire]


@given(dialect=DIALECTS, value=SEXPS)
def test_twisted_decodes_spreads_bytes(dialect: bytes, value: Any) -> None:
    outgoing, _ = vocabularies(dialect)
    wire = Encoder(outgoing).encode(value)
    decoded = twisted_decode(wire, dialect)
    assert [twisted_encode(item, dialect) for item in decoded] == [wire]


@given(st.lists(SEXPS, min_size=1, max_size=4), st.data())
def test_spread_decodes_twisteds_stream_in_any_chunks(
    values: list[Any], data: st.DataObject
) -> None:
    wire = b"".join(twisted_encode(value, b"pb") for value in values)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = Decoder(PB_VOCABULARY_BY_NUMBER)
    decoded: list[object] = []
    for start, stop in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        decoded += decoder.feed(wire[start:stop])
    assert b"".join(Encoder(PB_VOCABULARY).encode(item) for item in decoded) == wire


def spread_outcome(data: bytes, dialect: bytes) -> tuple[list[object], bool]:
    """Expressions delivered before any error, fed a byte at a time as Twisted delivers them."""
    decoder = Decoder(vocabularies(dialect)[1])
    decoded: list[object] = []
    try:
        for i in range(len(data)):
            decoded += decoder.feed(data[i : i + 1])
    except BananaError:
        return decoded, True
    return decoded, False


def twisted_outcome(data: bytes, dialect: bytes) -> tuple[list[object], bool]:
    peer, _ = twisted_in_dialect(dialect)
    try:
        peer.dataReceived(data)
    except Exception:  # Twisted raises BananaError, NotImplementedError or KeyError
        return peer.received, True
    return peer.received, False


@settings(max_examples=400)
@given(dialect=DIALECTS, data=st.binary(max_size=120))
def test_arbitrary_bytes_are_judged_as_twisted_judges_them(dialect: bytes, data: bytes) -> None:
    assert spread_outcome(data, dialect) == twisted_outcome(data, dialect)


@settings(max_examples=300)
@given(
    dialect=DIALECTS,
    data=st.lists(
        st.one_of(
            st.sampled_from([bytes((type_byte,)) for type_byte in range(0x80, 0x89)]),
            st.binary(min_size=1, max_size=3).map(lambda b: bytes(c & 0x7F for c in b)),
            st.binary(max_size=9),
        ),
        max_size=30,
    ).map(b"".join),
)
def test_banana_like_bytes_are_judged_as_twisted_judges_them(dialect: bytes, data: bytes) -> None:
    assert spread_outcome(data, dialect) == twisted_outcome(data, dialect)


# ---------------------------------------------------------------------------------------------
# Dialect negotiation between a spread peer and a Twisted peer


def pump(a: Any, a_out: StringTransport, b: Any, b_out: StringTransport) -> list[bytes]:
    """Deliver each side's output to the other until both are quiet; return what went by."""
    seen: list[bytes] = []
    while a_out.value() or b_out.value():
        for sender_out, receiver in ((a_out, b), (b_out, a)):
            data = bytes(sender_out.value())
            sender_out.clear()
            if data:
                seen.append(data)
                receiver.dataReceived(data)
    return seen


def start(peer: Any) -> StringTransport:
    transport = StringTransport()
    peer.makeConnection(transport)
    return transport


def test_spread_server_and_twisted_client_agree_on_pb() -> None:
    server, client = SpreadPeer(isClient=False), TwistedPeer(isClient=True)
    server_out, client_out = start(server), start(client)
    seen = pump(server, server_out, client, client_out)
    assert seen == [
        bytes.fromhex("02 80 02 82 70 62 04 82 6e 6f 6e 65"),
        bytes.fromhex("02 82 70 62"),
    ]
    assert server.currentDialect == client.currentDialect == b"pb"
    assert server.ready and client.ready


def test_twisted_server_and_spread_client_agree_on_pb() -> None:
    server, client = TwistedPeer(isClient=False), SpreadPeer(isClient=True)
    server_out, client_out = start(server), start(client)
    seen = pump(server, server_out, client, client_out)
    assert seen == [
        bytes.fromhex("02 80 02 82 70 62 04 82 6e 6f 6e 65"),
        bytes.fromhex("02 82 70 62"),
    ]
    assert server.currentDialect == client.currentDialect == b"pb"
    assert server.ready and client.ready


@pytest.mark.parametrize("spread_is_server", [True, False])
def test_version_messages_cross_in_the_pb_dialect(spread_is_server: bool) -> None:
    ours, theirs = SpreadPeer(isClient=not spread_is_server), TwistedPeer(isClient=spread_is_server)
    ours_out, theirs_out = start(ours), start(theirs)
    pump(ours, ours_out, theirs, theirs_out)
    ours.sendEncoded([b"version", 6])
    theirs.sendEncoded([b"version", 6])
    assert ours_out.value() == theirs_out.value() == bytes.fromhex("02 80 13 87 06 81")
    pump(ours, ours_out, theirs, theirs_out)
    assert ours.received == theirs.received == [[b"version", 6]]


@pytest.mark.parametrize("spread_is_server", [True, False])
def test_a_peer_knowing_only_none_settles_on_none(spread_is_server: bool) -> None:
    ours, theirs = SpreadPeer(isClient=not spread_is_server), TwistedPeer(isClient=spread_is_server)
    if spread_is_server:
        theirs.knownDialects = [b"none"]
    else:
        ours.knownDialects = [b"none"]
    ours_out, theirs_out = start(ours), start(theirs)
    pump(ours, ours_out, theirs, theirs_out)
    assert ours.currentDialect == theirs.currentDialect == b"none"
    ours.sendEncoded([b"version", 6])
    assert ours_out.value() == b"\x02\x80\x07\x82version\x06\x81"
    pump(ours, ours_out, theirs, theirs_out)
    assert theirs.received == [[b"version", 6]]


@given(st.lists(SEXPS, min_size=1, max_size=5))
def test_a_stream_of_expressions_crosses_both_ways(values: list[Any]) -> None:
    ours, theirs = SpreadPeer(isClient=False), TwistedPeer(isClient=True)
    ours_out, theirs_out = start(ours), start(theirs)
    pump(ours, ours_out, theirs, theirs_out)
    for value in values:
        ours.sendEncoded(value)
        theirs.sendEncoded(value)
    assert ours_out.value() == theirs_out.value()
    pump(ours, ours_out, theirs, theirs_out)
    assert [encode(item) for item in ours.received] == [encode(item) for item in theirs.received]


# ---------------------------------------------------------------------------------------------
# Twisted's other public names


def test_type_byte_constants_match_twisted() -> None:
    names = ["LIST", "INT", "STRING", "NEG", "FLOAT", "LONGINT", "LONGNEG", "VOCAB", "HIGH_BIT_SET"]
    assert [getattr(spread_banana, name) for name in names] == [
        getattr(twisted_banana, name) for name in names
    ]
    assert spread_banana.SIZE_LIMIT == twisted_banana.SIZE_LIMIT


def test_banana_vocabulary_attributes_match_twisted() -> None:
    assert dict(Banana.outgoingVocabulary) == twisted_banana.Banana.outgoingVocabulary
    assert dict(Banana.incomingVocabulary) == twisted_banana.Banana.incomingVocabulary
    assert Banana.knownDialects == twisted_banana.Banana.knownDialects


@given(st.integers(min_value=0, max_value=2**200))
def test_header_helpers_match_twisted(value: int) -> None:
    ours: list[bytes] = []
    theirs: list[bytes] = []
    spread_banana.int2b128(value, ours.append)
    twisted_banana.int2b128(value, theirs.append)
    assert ours == theirs
    assert spread_banana.b1282int(b"".join(ours)) == value
