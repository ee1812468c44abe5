"""spread.banana on its own: byte vectors, round trips, chunking, limits, bad input, the protocol.

Compatibility with twisted.spread.banana itself is in test_banana_interop.py.
"""

from __future__ import annotations

import contextlib
import enum
import math
import struct
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from spread import banana
from spread.banana import (
    MAX_DEPTH,
    MAX_MESSAGE_SIZE,
    PB_VOCABULARY,
    PB_VOCABULARY_BY_NUMBER,
    PREFIX_LIMIT,
    SIZE_LIMIT,
    Banana,
    BananaError,
    Decoder,
    Encoder,
    decode,
    encode,
)
from spread.limits import DEFAULT_LIMITS, Limits

# ---------------------------------------------------------------------------------------------
# Helpers and strategies


def header(value: int, type_byte: int) -> bytes:
    """A banana header written out independently of the code under test."""
    digits = bytearray()
    while True:
        digits.append(value % 128)
        value //= 128
        if not value:
            break
    return bytes(digits) + bytes((type_byte,))


def plain(value: Any) -> Any:
    """What decoding gives back for an encoded value: tuples become lists, bools ints."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, bool):
        return int(value)
    return value


def feed_in_pieces(decoder: Decoder, data: bytes, cuts: list[int]) -> list[object]:
    expressions: list[object] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        expressions += decoder.feed(data[previous:cut])
        previous = cut
    return expressions


LARGEST = 2 ** (7 * PREFIX_LIMIT) - 1  # the most PREFIX_LIMIT header digits can hold
LIMIT_INTS = st.integers(min_value=-LARGEST, max_value=LARGEST)
SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 127, 128, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63, -(2**63)]),
    LIMIT_INTS,
    st.floats(allow_nan=False),
    st.binary(max_size=300),
    st.sampled_from(sorted(PB_VOCABULARY)),
)
SEXPS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=6), max_leaves=40)


# ---------------------------------------------------------------------------------------------
# Known bytes (docs/wire.md and /work/shared/WIRE.md)

VECTORS = [
    (0, "00 81"),
    (127, "7f 81"),
    (128, "00 01 81"),
    (300, "2c 02 81"),
    (-300, "2c 02 83"),
    (2**31, "00 00 00 00 08 85"),
    (2**64, "00 00 00 00 00 00 00 00 00 02 85"),
    (1.5, "84 3f f8 00 00 00 00 00 00"),
    (b"hi", "02 82 68 69"),
    ([], "00 80"),
    ([1, b"a"], "02 80 01 81 01 82 61"),
    ([[1], 2], "02 80 01 80 01 81 02 81"),
    ([b"pb", b"none"], "02 80 02 82 70 62 04 82 6e 6f 6e 65"),
]


@pytest.mark.parametrize(("value", "wire"), VECTORS)
def test_encode_known_vectors(value: object, wire: str) -> None:
    assert encode(value) == bytes.fromhex(wire)


@pytest.mark.parametrize(("value", "wire"), VECTORS)
def test_decode_known_vectors(value: object, wire: str) -> None:
    assert decode(bytes.fromhex(wire)) == value


def test_pb_dialect_vectors() -> None:
    encoder = Encoder(PB_VOCABULARY)
    assert encoder.encode([b"version", 6]) == bytes.fromhex("02 80 13 87 06 81")
    call = [b"message", 1, b"root", b"echo", 1, [b"tuple", [b"unicode", b"hi"]], [b"dictionary"]]
    assert encoder.encode(call) == bytes.fromhex(
        "07 80 1a 87 01 81 04 82 72 6f 6f 74 04 82 65 63 68 6f 01 81 02 80 0b 87 02 80"
        " 07 82 75 6e 69 63 6f 64 65 02 82 68 69 01 80 05 87"
    )
    answer = bytes.fromhex("03 80 1b 87 01 81 02 80 07 82 75 6e 69 63 6f 64 65 02 82 68 69")
    assert Decoder(PB_VOCABULARY_BY_NUMBER).feed(answer) == [[b"answer", 1, [b"unicode", b"hi"]]]


def test_pb_vocabulary_is_the_documented_table() -> None:
    words = [
        "None", "class", "dereference", "reference", "dictionary", "function", "instance",
        "list", "module", "persistent", "tuple", "unpersistable", "copy", "cache", "cached",
        "remote", "local", "lcache", "version", "login", "password", "challenge", "logged_in",
        "not_logged_in", "cachemessage", "message", "answer", "error", "decref", "decache",
        "uncache",
    ]  # fmt: skip
    assert dict(PB_VOCABULARY) == {word.encode(): n for n, word in enumerate(words, 1)}
    assert dict(PB_VOCABULARY_BY_NUMBER) == {n: word.encode() for n, word in enumerate(words, 1)}


@pytest.mark.parametrize(("word", "number"), sorted(PB_VOCABULARY.items()))
def test_each_symbol_travels_as_its_number(word: bytes, number: int) -> None:
    wire = Encoder(PB_VOCABULARY).encode(word)
    assert wire == header(number, 0x87)
    assert Decoder(PB_VOCABULARY_BY_NUMBER).feed(wire) == [word]


def test_without_vocabulary_symbol_words_are_plain_strings() -> None:
    assert encode(b"list") == b"\x04\x82list"


# ---------------------------------------------------------------------------------------------
# Where each element type is chosen


@pytest.mark.parametrize(
    ("value", "type_byte"),
    [
        (0, 0x81),
        (2**31 - 1, 0x81),
        (2**31, 0x85),
        (-1, 0x83),
        (-(2**31), 0x83),
        (-(2**31) - 1, 0x86),
        (2**448 - 1, 0x85),
        (-(2**448) + 1, 0x86),
    ],
)
def test_int_element_types_switch_where_twisted_switches(value: int, type_byte: int) -> None:
    wire = encode(value)
    assert wire == header(abs(value), type_byte)
    assert decode(wire) == value


@pytest.mark.parametrize("value", [2**448, -(2**448)])
def test_int_beyond_the_prefix_limit_cannot_be_encoded(value: int) -> None:
    with pytest.raises(BananaError, match="header digits"):
        encode(value)


def test_smaller_prefix_limit_narrows_the_ints_sent() -> None:
    with pytest.raises(BananaError):
        Encoder(prefix_limit=2).encode(2**14)
    assert Encoder(prefix_limit=2).encode(2**14 - 1) == header(2**14 - 1, 0x81)


def test_bools_travel_as_ints() -> None:
    assert encode(True) == b"\x01\x81"
    assert encode([False, True]) == b"\x02\x80\x00\x81\x01\x81"
    assert decode(encode(True)) == 1


def test_tuples_travel_as_lists() -> None:
    assert encode((1, (b"a",))) == encode([1, [b"a"]])


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, -0.0, 5e-324, float.fromhex("0x1.fffffffffffffp+1023")]
)
def test_special_floats_keep_their_exact_bits(value: float) -> None:
    wire = encode(value)
    assert wire == b"\x84" + struct.pack(">d", value)
    assert struct.pack(">d", decode(wire)) == struct.pack(">d", value)  # type: ignore[arg-type]


def test_nan_payload_survives() -> None:
    odd_nan = struct.unpack(">d", bytes.fromhex("fff8000000000001"))[0]
    assert encode(odd_nan) == bytes.fromhex("84 fff8000000000001")


class Colour(enum.IntEnum):
    RED = 300


class Tag(bytes):
    pass


class Ratio(float):
    pass


class Reversed(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        return reversed(list(list.__iter__(self)))


def test_subclasses_travel_as_their_base_types() -> None:
    assert encode(Colour.RED) == encode(300)
    assert encode(Tag(b"list")) == encode(b"list")
    assert Encoder(PB_VOCABULARY).encode(Tag(b"list")) == b"\x08\x87"
    assert encode(Ratio(0.25)) == encode(0.25)


def test_a_sequence_subclass_is_sent_as_it_iterates() -> None:
    assert encode(Reversed([1, 2, 3])) == encode([3, 2, 1])


@pytest.mark.parametrize(
    "value", ["text", None, {1: 2}, {1}, bytearray(b"x"), memoryview(b"x"), object(), 1j]
)
def test_values_banana_cannot_carry_raise_banana_error(value: object) -> None:
    with pytest.raises(BananaError, match="Banana cannot send"):
        encode([1, [value]])


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_value_with_a_failing_repr_still_raises_banana_error() -> None:
    with pytest.raises(BananaError, match="BrokenRepr"):
        encode([BrokenRepr()])


def test_refused_value_error_names_its_type() -> None:
    with pytest.raises(BananaError, match=r"builtins\.str"):
        encode("text")


def test_string_at_the_size_limit_is_sent_and_one_byte_more_is_refused() -> None:
    assert len(encode(b"x" * SIZE_LIMIT)) == SIZE_LIMIT + 4
    with pytest.raises(BananaError, match="size limit"):
        encode([b"x" * (SIZE_LIMIT + 1)])


def test_list_over_the_size_limit_is_refused_before_encoding_elements() -> None:
    with pytest.raises(BananaError, match="size limit"):
        encode([0] * (SIZE_LIMIT + 1))


def test_encoder_size_limit_is_configurable() -> None:
    with pytest.raises(BananaError):
        Encoder(size_limit=3).encode(b"abcd")
    with pytest.raises(BananaError):
        Encoder(size_limit=3).encode([1, 2, 3, 4])
    assert Encoder(size_limit=3).encode(b"abc") == b"\x03\x82abc"


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture
def deep_stack() -> Any:
    """Room on the Python stack for MAX_DEPTH recursive calls and then some."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(MAX_DEPTH + 2000)
    yield
    sys.setrecursionlimit(limit)


@pytest.mark.usefixtures("deep_stack")
def test_encoder_refuses_nesting_beyond_max_depth() -> None:
    assert encode(nested(MAX_DEPTH)).startswith(b"\x01\x80")
    with pytest.raises(BananaError, match="nested more than 1000"):
        encode(nested(MAX_DEPTH + 1))


def test_encoder_refuses_too_deep_nesting_under_the_default_recursion_limit() -> None:
    with pytest.raises(BananaError, match="nested"):
        encode(nested(MAX_DEPTH + 1))


def test_encoder_refuses_a_list_containing_itself() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(BananaError, match="nested"):
        encode(loop)


def test_encoder_raises_banana_error_when_the_call_stack_is_already_deep() -> None:
    def recurse(levels: int) -> bytes:
        return recurse(levels - 1) if levels else encode(nested(500))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(700)
    try:
        # The C encoder hands over where Python would run out of stack: the same error.
        with pytest.raises(BananaError, match="too deeply"):
            recurse(300)
    finally:
        sys.setrecursionlimit(limit)


def test_encoder_max_depth_is_configurable() -> None:
    with pytest.raises(BananaError):
        Encoder(max_depth=2).encode([[[]]])
    assert Encoder(max_depth=2).encode([[]]) == b"\x01\x80\x00\x80"


# ---------------------------------------------------------------------------------------------
# Round trips and chunking


@given(SEXPS)
def test_round_trip(value: Any) -> None:
    assert decode(encode(value)) == plain(value)


@given(SEXPS)
def test_round_trip_in_the_pb_dialect(value: Any) -> None:
    wire = Encoder(PB_VOCABULARY).encode(value)
    assert Decoder(PB_VOCABULARY_BY_NUMBER).feed(wire) == [plain(value)]


@given(st.lists(SEXPS, max_size=5), st.data())
def test_any_chunking_gives_the_same_expressions(values: list[Any], data: st.DataObject) -> None:
    wire = b"".join(encode(value) for value in values)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    assert feed_in_pieces(Decoder(), wire, cuts) == plain(values)


@given(st.lists(SEXPS, min_size=1, max_size=3))
def test_one_byte_at_a_time_gives_the_same_expressions(values: list[Any]) -> None:
    wire = b"".join(encode(value) for value in values)
    assert feed_in_pieces(Decoder(), wire, list(range(len(wire)))) == plain(values)


def test_expressions_are_returned_as_soon_as_they_complete() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x01\x81\x02\x80\x01") == [1]
    assert decoder.pending
    assert decoder.feed(b"\x81") == []
    assert decoder.feed(b"\x02\x81") == [[1, 2]]
    assert not decoder.pending


def test_decoders_keep_their_own_half_received_bytes() -> None:
    # A decoder with nothing pending shares one empty tail with every other (no allocation
    # per connection); what each then keeps of a half-received message is its own.
    first, second = Decoder(), Decoder()
    assert first.feed(encode(b"ab")) == [b"ab"] and not first.pending
    assert first.feed(b"\x05\x82ab") == [] and second.feed(b"\x03\x82xy") == []
    assert first.feed(b"cde") == [b"abcde"] and second.feed(b"z") == [b"xyz"]
    assert Decoder().feed(b"") == [] and not Decoder().pending


def test_long_string_arriving_a_byte_at_a_time_is_decoded_once_complete() -> None:
    payload = bytes(range(256)) * 400
    wire = encode(payload)
    decoder = Decoder()
    results = [decoder.feed(wire[i : i + 1]) for i in range(len(wire))]
    assert results[-1] == [payload]
    assert not any(results[:-1])


def test_max_expressions_leaves_the_rest_for_the_next_feed() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x01\x81\x02\x81\x03\x81", max_expressions=1) == [1]
    assert decoder.pending
    assert decoder.feed(b"\x04", max_expressions=2) == [2, 3]
    assert decoder.feed(b"\x81") == [4]


def test_max_expressions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Decoder().feed(b"", max_expressions=0)


def test_vocabulary_can_change_between_expressions() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x02\x82pb\x08\x87", max_expressions=1) == [b"pb"]
    decoder.vocabulary = PB_VOCABULARY_BY_NUMBER
    assert decoder.feed() == [b"list"]


def test_decoder_accepts_bytearray_and_memoryview() -> None:
    assert Decoder().feed(bytearray(b"\x01\x81")) == [1]
    assert Decoder().feed(memoryview(b"\x02\x81")) == [2]


def test_headerless_elements_decode_as_zero_like_twisted() -> None:
    assert Decoder().feed(b"\x81\x80\x82\x83") == [0, [], b"", 0]


def test_decode_wants_exactly_one_complete_expression() -> None:
    for data in (b"", b"\x01", b"\x01\x81\x02\x81", b"\x01\x81\x02"):
        with pytest.raises(BananaError, match="exactly one"):
            decode(data)


# ---------------------------------------------------------------------------------------------
# Bad input: only BananaError, refused early, bounded


@given(st.binary(max_size=400), st.data())
def test_arbitrary_bytes_raise_only_banana_error(data: bytes, draw: st.DataObject) -> None:
    vocabulary = draw.draw(st.sampled_from([None, PB_VOCABULARY_BY_NUMBER]))
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=5))
    with contextlib.suppress(BananaError):
        feed_in_pieces(Decoder(vocabulary), data, cuts)


@given(st.lists(SEXPS, max_size=3), st.binary(min_size=1, max_size=40), st.data())
def test_garbage_after_good_expressions_raises_only_banana_error(
    values: list[Any], garbage: bytes, data: st.DataObject
) -> None:
    wire = b"".join(encode(value) for value in values)
    position = data.draw(st.integers(0, len(wire)))
    mutated = wire[:position] + garbage + wire[position:]
    with contextlib.suppress(BananaError):
        feed_in_pieces(Decoder(), mutated, [position])


def test_header_of_64_digits_is_accepted() -> None:
    value = 2**448 - 1
    assert decode(b"\x7f" * 64 + b"\x85") == value


def test_header_of_65_digits_is_refused_before_its_type_byte_arrives() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x01" * 64) == []
    with pytest.raises(BananaError, match="64 digits"):
        decoder.feed(b"\x01")


def test_header_longer_than_the_limit_is_refused_with_its_type_byte() -> None:
    with pytest.raises(BananaError, match="digits"):
        Decoder().feed(b"\x01" * 65 + b"\x81")


def test_prefix_limit_is_configurable() -> None:
    with pytest.raises(BananaError):
        Decoder(prefix_limit=2).feed(b"\x01\x01\x01\x81")
    assert Decoder(prefix_limit=3).feed(b"\x01\x01\x01\x81") == [1 + 128 + 128**2]


def test_two_gigabyte_string_header_is_refused_at_once() -> None:
    with pytest.raises(BananaError, match="size limit"):
        Decoder().feed(header(2**31, 0x82))


def test_string_one_byte_over_the_size_limit_is_refused() -> None:
    with pytest.raises(BananaError, match="size limit"):
        Decoder().feed(header(SIZE_LIMIT + 1, 0x82))


def test_string_at_the_size_limit_is_awaited() -> None:
    decoder = Decoder()
    assert decoder.feed(header(SIZE_LIMIT, 0x82)) == []
    assert decoder.pending


def test_list_count_over_the_size_limit_is_refused() -> None:
    with pytest.raises(BananaError, match="size limit"):
        Decoder().feed(header(SIZE_LIMIT + 1, 0x80))


def test_small_size_limit_applies_to_one_byte_headers_too() -> None:
    decoder = Decoder(size_limit=5)
    assert decoder.feed(b"\x05\x82abcde") == [b"abcde"]
    with pytest.raises(BananaError, match="size limit"):
        decoder.feed(b"\x06\x82")
    with pytest.raises(BananaError):
        Decoder(size_limit=5).feed(b"\x06\x80")


def test_small_size_limit_applies_to_two_digit_headers() -> None:
    decoder = Decoder(size_limit=200)
    assert decoder.feed(header(200, 0x82)) == []
    with pytest.raises(BananaError, match="size limit"):
        Decoder(size_limit=200).feed(header(201, 0x82))
    with pytest.raises(BananaError, match="size limit"):
        Decoder(size_limit=200).feed(header(201, 0x80))


def test_size_limit_does_not_apply_to_ints() -> None:
    assert Decoder(size_limit=5).feed(b"\x7f\x81") == [127]


def test_nesting_beyond_max_depth_is_refused_without_recursion_error() -> None:
    decoder = Decoder()
    assert decoder.feed(b"\x01\x80" * MAX_DEPTH) == []
    with pytest.raises(BananaError, match="nested more than 1000"):
        decoder.feed(b"\x01\x80")


def test_nesting_far_beyond_any_recursion_limit_is_refused() -> None:
    with pytest.raises(BananaError, match="nested"):
        Decoder().feed(b"\x01\x80" * 100_000)


def test_nesting_at_max_depth_decodes() -> None:
    (value,) = Decoder().feed(b"\x01\x80" * (MAX_DEPTH - 1) + b"\x00\x80")
    depth = 1
    while value:
        value = value[0]  # type: ignore[index]
        depth += 1
    assert depth == MAX_DEPTH


def test_max_depth_is_configurable() -> None:
    assert Decoder(max_depth=2).feed(b"\x01\x80\x00\x80") == [[[]]]
    with pytest.raises(BananaError):
        Decoder(max_depth=2).feed(b"\x01\x80\x01\x80\x00\x80")


@pytest.mark.parametrize("type_byte", [0x88, 0x9F, 0xFF])
def test_unknown_type_byte_is_refused(type_byte: int) -> None:
    with pytest.raises(BananaError, match="type byte"):
        Decoder().feed(bytes((1, type_byte)))


def test_symbol_without_a_vocabulary_is_refused() -> None:
    with pytest.raises(BananaError, match="no dialect"):
        Decoder().feed(b"\x01\x87")


def test_unknown_symbol_number_is_refused() -> None:
    with pytest.raises(BananaError, match=r"^99: unknown vocabulary symbol"):
        Decoder(PB_VOCABULARY_BY_NUMBER).feed(b"\x63\x87")


def test_decoder_refuses_everything_after_an_error() -> None:
    decoder = Decoder()
    with pytest.raises(BananaError):
        decoder.feed(b"\x01\xff")
    with pytest.raises(BananaError, match="already refused"):
        decoder.feed(b"\x01\x81")


# ---------------------------------------------------------------------------------------------
# The Banana protocol, spread on both ends


class Recorder(Banana):
    """Records what the hooks see."""

    def __init__(self, isClient: bool = True) -> None:
        super().__init__(isClient)
        self.ready = 0
        self.received: list[object] = []

    def connectionReady(self) -> None:
        self.ready += 1

    def expressionReceived(self, obj: Any) -> None:
        self.received.append(obj)


def connect(protocol: Banana) -> StringTransport:
    transport = StringTransport()
    protocol.makeConnection(transport)
    return transport


def take(transport: StringTransport) -> bytes:
    data = transport.value()
    transport.clear()
    return data


def connected_pair() -> tuple[Recorder, StringTransport, Recorder, StringTransport]:
    server, client = Recorder(isClient=False), Recorder(isClient=True)
    server_out, client_out = connect(server), connect(client)
    while server_out.value() or client_out.value():
        client.dataReceived(take(server_out))
        server.dataReceived(take(client_out))
    return server, server_out, client, client_out


def test_server_offers_its_dialects_on_connect() -> None:
    server = Recorder(isClient=False)
    assert take(connect(server)) == bytes.fromhex("02 80 02 82 70 62 04 82 6e 6f 6e 65")


def test_client_says_nothing_until_offered() -> None:
    assert take(connect(Recorder())) == b""


def test_client_answers_with_the_dialect_it_picked() -> None:
    client = Recorder()
    transport = connect(client)
    client.dataReceived(encode([b"pb", b"none"]))
    assert take(transport) == bytes.fromhex("02 82 70 62")
    assert client.currentDialect == b"pb"
    assert client.ready == 1


def test_both_sides_settle_on_pb_and_are_ready_once() -> None:
    server, _, client, _ = connected_pair()
    assert server.currentDialect == client.currentDialect == b"pb"
    assert server.ready == client.ready == 1


def test_client_takes_the_first_dialect_it_knows_in_the_servers_order() -> None:
    client = Recorder()
    transport = connect(client)
    client.dataReceived(encode([b"spread-2", b"none", b"pb"]))
    assert take(transport) == encode(b"none")
    assert client.currentDialect == b"none"


def test_pb_dialect_sends_symbols_and_none_dialect_does_not() -> None:
    for dialect, expected in ((b"pb", b"\x08\x87"), (b"none", b"\x04\x82list")):
        client = Recorder()
        transport = connect(client)
        client.dataReceived(encode([dialect]))
        take(transport)
        client.sendEncoded(b"list")
        assert take(transport) == expected


def test_expressions_after_the_offer_in_the_same_chunk_use_the_new_vocabulary() -> None:
    client = Recorder()
    connect(client)
    client.dataReceived(encode([b"pb", b"none"]) + b"\x02\x80\x13\x87\x06\x81")
    assert client.received == [[b"version", 6]]


def test_messages_flow_both_ways_after_negotiation() -> None:
    server, server_out, client, client_out = connected_pair()
    client.sendEncoded([b"message", 1, b"root", [b"tuple"]])
    server.dataReceived(take(client_out))
    server.sendEncoded([b"answer", 1, 2.5])
    client.dataReceived(take(server_out))
    assert server.received == [[b"message", 1, b"root", [b"tuple"]]]
    assert client.received == [[b"answer", 1, 2.5]]


def test_client_drops_a_server_offering_nothing_it_knows() -> None:
    client = Recorder()
    transport = connect(client)
    with capturedLogs() as events:
        client.dataReceived(encode([b"klingon"]))
    assert transport.disconnecting
    assert client.ready == 0
    assert any("no dialect we speak" in str(event.get("why")) for event in events)


def test_client_drops_a_server_whose_offer_is_not_a_list() -> None:
    client = Recorder()
    transport = connect(client)
    client.dataReceived(encode(5))
    assert transport.disconnecting


def test_server_drops_a_client_choosing_a_dialect_it_did_not_offer() -> None:
    server = Recorder(isClient=False)
    transport = connect(server)
    server.dataReceived(encode(b"klingon"))
    assert transport.disconnecting
    assert server.ready == 0


def test_garbage_drops_the_connection_and_is_logged() -> None:
    server, server_out, _, _ = connected_pair()
    with capturedLogs() as events:
        server.dataReceived(b"\x01\xff")
    assert server_out.disconnecting
    assert server.received == []
    assert [event["log_level"].name for event in events] == ["error"]
    assert "malformed banana" in events[0]["why"]


def test_garbage_before_negotiation_drops_the_connection() -> None:
    client = Recorder()
    transport = connect(client)
    client.dataReceived(b"\x00\xff")
    assert transport.disconnecting


def test_nothing_is_delivered_after_the_connection_is_dropped() -> None:
    server, _, _, _ = connected_pair()
    server.dataReceived(b"\x01\xff")
    server.dataReceived(encode(1))
    assert server.received == []


def test_expressions_after_a_drop_within_one_chunk_are_not_delivered() -> None:
    class Quitter(Recorder):
        def expressionReceived(self, obj: Any) -> None:
            super().expressionReceived(obj)
            transport: Any = self.transport
            transport.loseConnection()

    server, client = Quitter(isClient=False), Recorder()
    server_out, client_out = connect(server), connect(client)
    client.dataReceived(take(server_out))
    server.dataReceived(take(client_out) + encode(1) + encode(2))
    assert server.received == [1]


def test_one_connection_dropping_leaves_others_alone() -> None:
    first, first_out, _, _ = connected_pair()
    second, second_out, _, _ = connected_pair()
    first.dataReceived(b"\x01\xff")
    second.dataReceived(Encoder(PB_VOCABULARY).encode([b"answer", 1]))
    assert first_out.disconnecting and not second_out.disconnecting
    assert second.received == [[b"answer", 1]]


def test_instance_size_limit_applies_to_receiving() -> None:
    server, server_out, _, _ = connected_pair()
    server.sizeLimit = 4
    server.dataReceived(encode(b"12345"))
    assert server_out.disconnecting


def test_instance_size_limit_applies_to_sending() -> None:
    server, server_out, _, _ = connected_pair()
    server.sizeLimit = 4
    with pytest.raises(BananaError):
        server.sendEncoded(b"12345")
    assert server_out.value() == b""


def test_set_prefix_limit_applies_to_one_connection() -> None:
    server, server_out, _, _ = connected_pair()
    other, other_out, _, _ = connected_pair()
    server.setPrefixLimit(2)
    server.dataReceived(encode(2**20))
    other.dataReceived(encode(2**20))
    assert server_out.disconnecting and not other_out.disconnecting
    assert other.received == [2**20]


def test_module_set_prefix_limit_changes_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Banana, "prefixLimit", Banana.prefixLimit)
    banana.setPrefixLimit(2)
    server, server_out, _, _ = connected_pair()
    server.dataReceived(encode(2**20))
    assert server_out.disconnecting


def test_max_depth_is_configurable_per_connection() -> None:
    server, server_out, _, _ = connected_pair()
    server.maxDepth = 2
    server.dataReceived(encode([[[]]]))
    assert server_out.disconnecting


def test_unencodable_value_raises_and_sends_nothing() -> None:
    server, server_out, _, _ = connected_pair()
    with pytest.raises(BananaError):
        server.sendEncoded([b"answer", 1, "text"])
    assert server_out.value() == b""
    assert not server_out.disconnecting


def test_base_banana_requires_expression_received() -> None:
    server = Banana(isClient=False)
    client = Recorder()
    server_out, client_out = connect(server), connect(client)
    client.dataReceived(take(server_out))
    server.dataReceived(take(client_out))
    with pytest.raises(NotImplementedError, match="expressionReceived"):
        server.dataReceived(encode(1))


def test_is_client_defaults_to_true() -> None:
    assert Banana().isClient


@settings(max_examples=50)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_on_a_connection_never_raise(data: bytes) -> None:
    server, _, _, _ = connected_pair()
    server.dataReceived(data)


# -- the total size of one message ------------------------------------------------------------


def message_of(size: int) -> bytes:
    """One top-level list of byte strings whose encoding is exactly ``size`` bytes (>= 10)."""
    body = size - 2 - 3  # list header, then one string with a three-byte header
    wire = encode([b"x" * body])
    assert len(wire) == size
    return wire


def test_message_at_the_size_bound_is_accepted() -> None:
    decoder = Decoder(max_message_size=1000)
    assert feed_in_pieces(decoder, message_of(1000), list(range(1, 1000, 7))) == [[b"x" * 995]]


def test_message_over_the_size_bound_is_refused_before_it_completes() -> None:
    decoder = Decoder(max_message_size=1000)
    wire = message_of(1001)
    with pytest.raises(BananaError, match="more than 1000 bytes"):
        decoder.feed(wire[:1001])


def test_many_small_messages_add_up_to_nothing() -> None:
    decoder = Decoder(max_message_size=100)
    wire = encode([1, 2, b"abc"]) * 1000
    assert len(decoder.feed(wire)) == 1000


@given(st.integers(min_value=1, max_value=200))
def test_size_bound_counts_from_the_last_complete_message(cut: int) -> None:
    # A complete message, then the start of one that alone exceeds the bound: refused
    # whichever way the bytes are split, and only once the second message is too big.
    decoder = Decoder(max_message_size=150)
    first, second = encode([b"a" * 100]), encode([b"b" * 100, b"c" * 100])
    data = first + second
    try:
        feed_in_pieces(decoder, data[: len(first) + cut], [len(first) // 2])
    except BananaError:
        assert cut > 150
    else:
        assert cut <= 150


def test_protocol_drops_a_peer_whose_message_is_too_big() -> None:
    protocol = banana.Banana(isClient=False)
    protocol.maxMessageSize = 1000
    protocol.expressionReceived = lambda obj: None  # type: ignore[method-assign]
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(encode(b"none"))
    with capturedLogs() as logs:
        protocol.dataReceived(message_of(2000)[:1500])
    assert transport.disconnecting
    assert any("more than 1000 bytes" in str(event.get("why", "")) for event in logs)


# -- limits from a Limits object ----------------------------------------------------------------


def test_banana_limits_default_to_the_limits_defaults() -> None:
    protocol = Banana()
    assert protocol.limits == Limits()
    assert (protocol.sizeLimit, protocol.maxDepth, protocol.maxMessageSize) == (
        SIZE_LIMIT,
        MAX_DEPTH,
        MAX_MESSAGE_SIZE,
    )


def test_banana_limits_max_message_size_drops_a_big_message() -> None:
    server, server_out, _, _ = connected_pair()
    server.limits = Limits(maxMessageSize=1000)
    server.dataReceived(message_of(2000)[:1500])
    assert server_out.disconnecting


def test_banana_limits_max_string_size_drops_a_long_string() -> None:
    server, server_out, _, _ = connected_pair()
    server.limits = Limits(maxStringSize=4)
    server.dataReceived(encode(b"12345"))
    assert server_out.disconnecting


def test_banana_limits_max_depth_drops_a_deep_message() -> None:
    server, server_out, _, _ = connected_pair()
    server.limits = Limits(maxDepth=2)
    server.dataReceived(encode([[[]]]))
    assert server_out.disconnecting


def test_banana_limits_of_one_connection_leave_others_alone() -> None:
    server, _, _, _ = connected_pair()
    other, other_out, _, _ = connected_pair()
    server.limits = Limits(maxStringSize=4)
    other.dataReceived(encode(b"12345"))
    assert not other_out.disconnecting and other.received == [b"12345"]
    assert Banana.limits == Limits()


def test_a_new_codec_holds_the_default_limits() -> None:
    # A connection with the default limits skips giving them to its codec (see _syncLimits):
    # that is only right while a new Encoder and Decoder start with exactly these.
    defaults = Limits()
    for codec in (Encoder(), Decoder()):
        assert codec.size_limit == defaults.maxStringSize
        assert codec.max_depth == defaults.maxDepth
        assert codec.prefix_limit == Banana.prefixLimit == PREFIX_LIMIT
    assert Decoder().max_message_size == defaults.maxMessageSize


class SmallLimits(Recorder):
    sizeLimit = 4  # plain class attributes, in place of the properties that read limits
    maxDepth = 2


class SmallPrefix(Recorder):
    prefixLimit = 2


@pytest.mark.parametrize(
    ("kind", "wire"),
    [(SmallLimits, encode(b"12345")), (SmallLimits, encode([[[]]])), (SmallPrefix, encode(2**20))],
)
def test_class_limits_apply_from_a_new_connections_first_byte(kind: type, wire: bytes) -> None:
    server = kind(isClient=False)
    server_out = connect(server)
    server.dataReceived(encode(b"pb") + wire)
    assert server_out.disconnecting
    assert server.received == []


def test_class_size_limit_applies_to_a_new_connections_first_send() -> None:
    server = SmallLimits(isClient=False)
    connect(server)
    with pytest.raises(BananaError):
        server.sendEncoded(b"12345")


def test_limits_set_back_to_the_defaults_reach_the_codec() -> None:
    server, server_out, _, _ = connected_pair()
    server.limits = Limits(maxStringSize=4)
    server.dataReceived(encode(b"1234"))
    server.limits = DEFAULT_LIMITS  # (as a login server does once its peer has logged in)
    server.dataReceived(encode(b"12345"))
    assert not server_out.disconnecting
    assert server.received == [b"1234", b"12345"]


def test_a_replaced_banana_property_applies_from_the_first_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Banana, "sizeLimit", 4)  # Banana's own, not a subclass's
    server, server_out = Recorder(isClient=False), StringTransport()
    server.makeConnection(server_out)
    server.dataReceived(encode(b"pb") + encode(b"12345"))
    assert server_out.disconnecting


def test_setting_size_limit_updates_limits() -> None:
    protocol = Banana()
    protocol.sizeLimit = 10
    protocol.maxDepth = 5
    protocol.maxMessageSize = 100
    assert protocol.limits == Limits(maxStringSize=10, maxDepth=5, maxMessageSize=100)


# -- the shortcuts for pairs of short strings keep every limit --------------------------------


PAIRS = [[b"unicode", b"name"], [b"boolean", b"true"], [b"", b""], [b"x" * 127, b"y" * 127]]


@pytest.mark.parametrize("pair", PAIRS)
def test_pair_of_strings_decodes_the_same_split_anywhere(pair: list[bytes]) -> None:
    wire = encode([pair, pair, 7])
    for cut in range(len(wire) + 1):
        decoder = Decoder()
        assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) == [[pair, pair, 7]]


def test_pair_of_strings_over_the_size_limit_is_refused() -> None:
    with pytest.raises(BananaError, match="size limit"):
        Decoder(size_limit=3).feed(encode([[b"ab", b"abcd"]]))


def test_pair_of_strings_beyond_max_depth_is_refused() -> None:
    assert Decoder(max_depth=2).feed(encode([[b"a", b"b"]])) == [[[b"a", b"b"]]]
    with pytest.raises(BananaError, match="nested more than 2"):
        Decoder(max_depth=2).feed(encode([[[b"a", b"b"]]]))


def test_pair_of_strings_counts_towards_the_message_size() -> None:
    wire = encode([[b"a" * 10, b"b" * 10]])
    assert len(Decoder(max_message_size=len(wire)).feed(wire)) == 1
    with pytest.raises(BananaError, match="more than"):
        Decoder(max_message_size=len(wire) - 1).feed(wire)


def test_top_level_pair_counts_towards_the_message_size() -> None:
    wire = encode([b"a" * 10, b"b" * 10])
    with pytest.raises(BananaError, match="more than"):
        Decoder(max_message_size=len(wire) - 1).feed(wire)


def test_encoding_a_pair_of_strings_keeps_the_depth_limit() -> None:
    assert Encoder(max_depth=2).encode([[b"a", b"b"]]) == encode([[b"a", b"b"]])
    with pytest.raises(BananaError, match="nested more than 1"):
        Encoder(max_depth=1).encode([[b"a", b"b"]])


def test_encoding_a_pair_of_strings_keeps_the_size_limit() -> None:
    with pytest.raises(BananaError, match="size limit"):
        Encoder(size_limit=1).encode([[b"a", b"b"]])


def test_repeated_strings_encode_the_same_each_time() -> None:
    words = [b"unicode", b"list", b"unicode", b"list", [b"unicode", b"list"]]
    assert Encoder().encode(words) == b"".join(
        [header(5, 0x80)]
        + [header(len(w), 0x82) + w for w in words[:4]]
        + [header(2, 0x80), header(7, 0x82), b"unicode", header(4, 0x82), b"list"]
    )
    assert Encoder(PB_VOCABULARY).encode(words) == Encoder(PB_VOCABULARY).encode(list(words))
    assert Encoder(PB_VOCABULARY).encode([b"list", b"list"]) == bytes([2, 0x80, 8, 0x87, 8, 0x87])


def test_encoder_reused_for_many_distinct_strings_stays_exact() -> None:
    encoder = Encoder()
    words = [b"w%d" % i for i in range(1000)] * 2
    wire = b"".join([header(len(words), 0x80)] + [header(len(w), 0x82) + w for w in words])
    assert encoder.encode(words) == wire
    assert encoder.encode(words) == wire


def test_encoder_size_limit_lowered_after_a_string_was_sent_still_applies() -> None:
    encoder = Encoder()
    encoder.encode([b"abcdef", [b"abcdef", b"x"]])
    encoder.size_limit = 4
    with pytest.raises(BananaError, match="size limit"):
        encoder.encode([b"abcdef"])
    with pytest.raises(BananaError, match="size limit"):
        encoder.encode([[b"abcdef", b"x"]])


def test_encoder_vocabulary_change_forgets_earlier_tokens() -> None:
    encoder = Encoder()
    encoder.encode([b"list"])
    encoder.vocabulary = PB_VOCABULARY
    assert encoder.encode([b"list"]) == bytes([1, 0x80, 8, 0x87])
    encoder.vocabulary = None
    assert encoder.encode([b"list"]) == bytes([1, 0x80, 4, 0x82]) + b"list"
