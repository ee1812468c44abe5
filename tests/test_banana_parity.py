"""Errors as Twisted's banana raises them, and limits of any size, on the C and the Python paths.

Where Twisted's banana refuses something, we refuse it with the same exception type (our
``BananaError`` subclasses add ``KeyError`` or ``NotImplementedError`` where Twisted raises
those), and our message opens with Twisted's words. Each test runs once on the C accelerator
(where built) and once on the pure-Python code; the Twisted side is the real
``twisted.spread.banana``, run here.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from support import stack_room
from twisted.internet.testing import StringTransport
from twisted.spread import banana as twisted_banana

import spread._banana_codec as codec
import spread._banana_encoder as encoder_module
import spread.jelly as jelly_module
from spread.banana import (
    PB_VOCABULARY,
    PB_VOCABULARY_BY_NUMBER,
    PREFIX_LIMIT,
    SIZE_LIMIT,
    BananaError,
    Decoder,
    Encoder,
    UnknownSymbolError,
    UnsupportedElementError,
    b1282int,
    encode,
)
from spread.jelly import InsecureJelly, SecurityOptions, jelly, unjelly

# ---------------------------------------------------------------------------------------------
# Both paths, and Twisted


@pytest.fixture(params=["C", "Python"], autouse=True)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test once with the C accelerator and once on the pure-Python code."""
    name: str = request.param
    if name == "C" and codec._speedups is None:
        pytest.skip("spread._speedups is not built")
    if name == "Python":
        for module in (codec, encoder_module, jelly_module):
            monkeypatch.setattr(module, "_speedups", None)
    return name


def twisted_peer(dialect: bytes | None) -> Any:
    """A connected ``twisted.spread.banana.Banana``, with ``dialect`` chosen (None: not yet)."""
    peer = twisted_banana.Banana()
    peer.expressionReceived = lambda expression: None
    peer.makeConnection(StringTransport())
    if dialect is not None:
        peer._selectDialect(dialect)
    return peer


def twisted_receive_error(wire: bytes, dialect: bytes | None = b"none") -> BaseException:
    """What Twisted raises on receiving ``wire``."""
    with pytest.raises(Exception) as raised:  # any type: the test compares them
        twisted_peer(dialect).dataReceived(wire)
    return raised.value


def twisted_send_error(value: object) -> BaseException:
    """What Twisted raises on sending ``value``."""
    with pytest.raises(Exception) as raised:
        twisted_peer(b"none").sendEncoded(value)
    return raised.value


def receive_error(wire: bytes, vocabulary: Any = None, **limits: int) -> BananaError:
    with pytest.raises(BananaError) as raised:
        Decoder(vocabulary, **limits).feed(wire)
    return raised.value


def assert_like_twisted(ours: BaseException, twisted: BaseException, opening: str) -> None:
    """Same exception type as Twisted's (ours may be a subclass; Twisted's BananaError is
    ours), and our message opens with ``opening``, which is how Twisted's does."""
    expected = BananaError if type(twisted) is twisted_banana.BananaError else type(twisted)
    assert isinstance(ours, expected), (type(ours), type(twisted))
    assert str(twisted).startswith(opening), str(twisted)
    assert str(ours).startswith(opening), str(ours)


# ---------------------------------------------------------------------------------------------
# A1. Announced strings and lists over the size limit: refused as the header arrives


@pytest.mark.parametrize(
    ("wire", "opening"),
    [
        # Twisted's own vectors (test_oversizedList, test_oversizedString): about 4.3e9.
        (b"\x02\x01\x01\x01\x01\x80", "Security precaution: List too long"),
        (b"\x02\x01\x01\x01\x01\x82", "Security precaution: String too long"),
        (codec._token(SIZE_LIMIT + 1, codec.LIST), "Security precaution: List too long"),
        (codec._token(SIZE_LIMIT + 1, codec.STRING), "Security precaution: String too long"),
    ],
)
def test_oversized_header_is_refused_as_soon_as_it_is_read(wire: bytes, opening: str) -> None:
    # The header alone, no body: nothing is buffered waiting for it.
    assert_like_twisted(receive_error(wire), twisted_receive_error(wire), opening)
    decoder = Decoder()
    for byte in wire[:-1]:
        assert decoder.feed(bytes((byte,))) == []
    with pytest.raises(BananaError, match=f"^{opening}"):
        decoder.feed(wire[-1:])  # the type byte completes the header: refused at once


@pytest.mark.parametrize("type_byte", [codec.LIST, codec.STRING])
@pytest.mark.parametrize("size_limit", [0, 1, 127, 128, 16383, 16384])
def test_header_one_over_a_small_size_limit_is_refused_at_once(
    type_byte: int, size_limit: int
) -> None:
    # One, two and three digit headers: each scanner has a fast path for the first two.
    error = receive_error(codec._token(size_limit + 1, type_byte), size_limit=size_limit)
    assert str(error).startswith("Security precaution: ")
    assert f"more than the size limit ({size_limit})" in str(error)
    Decoder(size_limit=size_limit).feed(codec._token(size_limit, type_byte))  # at it: taken


# ---------------------------------------------------------------------------------------------
# A2. Long integers beyond the limit (Twisted's test_encodeTooLargeLong and its three siblings)

SMALLEST_TOO_LARGE = 2 ** (7 * PREFIX_LIMIT)  # the first int 64 header digits cannot hold


@pytest.mark.parametrize("value", [SMALLEST_TOO_LARGE, -SMALLEST_TOO_LARGE, 2**1000])
def test_int_too_large_for_the_prefix_limit_is_refused_when_encoding(value: int) -> None:
    with pytest.raises(BananaError) as raised:
        encode([1, value])
    assert_like_twisted(raised.value, twisted_send_error(value), "int is too large to send (")
    assert str(raised.value).startswith(str(twisted_send_error(value))[:-1])  # the value too


@pytest.mark.parametrize("value", [SMALLEST_TOO_LARGE, -SMALLEST_TOO_LARGE])
def test_int_too_large_for_the_prefix_limit_is_refused_when_decoding(value: int) -> None:
    wire = Encoder(prefix_limit=2 * PREFIX_LIMIT).encode(value)
    assert wire[-1] in (codec.LONGINT, codec.LONGNEG)
    assert_like_twisted(receive_error(wire), twisted_receive_error(wire), "Security precaution: ")


@pytest.mark.parametrize("value", [SMALLEST_TOO_LARGE - 1, -(SMALLEST_TOO_LARGE - 1)])
def test_largest_int_the_prefix_limit_holds_travels(value: int) -> None:
    assert Decoder().feed(encode(value)) == [value]


def test_long_header_under_a_large_prefix_limit_decodes_in_n_log_n() -> None:
    # 200,000 digits: digit by digit, each shifting a growing int, this took many seconds.
    digits = 200_000
    value = 2 ** (7 * digits) - 1
    wire = b"\x7f" * digits + bytes((codec.LONGNEG,))
    assert Decoder(prefix_limit=digits).feed(wire) == [-value]
    assert b1282int(b"\x7f" * digits) == value


def test_b1282int_counts_as_twisted_does() -> None:
    for digits in [b"", b"\x00", b"\x05", b"\x7f\x7f", b"\x01\x02\x03", b"\xff\x80", b"\x81" * 70]:
        assert b1282int(digits) == twisted_banana.b1282int(digits)


# ---------------------------------------------------------------------------------------------
# A3, A4. Vocabulary symbols: NotImplementedError outside the "pb" dialect, KeyError unknown


def test_pb_symbol_with_no_dialect_chosen_raises_not_implemented_error() -> None:
    wire = bytes((PB_VOCABULARY[b"remote"], codec.VOCAB))  # Twisted's test_dialectNotSet
    error = receive_error(wire)
    assert isinstance(error, UnsupportedElementError)
    assert_like_twisted(
        error, twisted_receive_error(wire, None), "Invalid item for pb protocol b'remote'"
    )
    # The "none" dialect, chosen, is no different.
    assert_like_twisted(error, twisted_receive_error(wire, b"none"), "Invalid item for pb")


def test_unknown_symbol_with_no_dialect_chosen_raises_key_error() -> None:
    wire = bytes((122, codec.VOCAB))  # Twisted looks the number up before the dialect
    error = receive_error(wire)
    assert isinstance(error, UnknownSymbolError)
    assert_like_twisted(error, twisted_receive_error(wire, None), "122")


@pytest.mark.parametrize("number", [0, 32, 122, 2**40, 2**447])
def test_unknown_pb_symbol_raises_key_error(number: int) -> None:
    wire = codec._token(number, codec.VOCAB)  # 122: Twisted's test_receiveIllegalPb
    error = receive_error(wire, PB_VOCABULARY_BY_NUMBER)
    assert isinstance(error, UnknownSymbolError)
    assert_like_twisted(error, twisted_receive_error(wire, b"pb"), f"{number}")
    assert str(error).startswith(f"{number}: unknown vocabulary symbol")  # not KeyError's quotes


def test_known_pb_symbol_in_the_pb_dialect_is_its_word() -> None:
    wire = bytes((PB_VOCABULARY[b"remote"], codec.VOCAB))
    assert Decoder(PB_VOCABULARY_BY_NUMBER).feed(wire) == [b"remote"]


@pytest.mark.parametrize("type_byte", [0x88, 0x9F, 0xFF])
def test_unknown_type_byte_raises_not_implemented_error(type_byte: int) -> None:
    wire = bytes((1, type_byte))
    error = receive_error(wire)
    assert isinstance(error, UnsupportedElementError)
    twisted = twisted_receive_error(wire)
    assert_like_twisted(error, twisted, str(twisted))  # "Invalid Type Byte b'\x88'"


def test_symbol_errors_still_drop_a_spread_connection() -> None:
    # Being a KeyError too changes nothing for a connection: any BananaError drops the peer.
    from test_banana import Recorder, connect

    client = Recorder(isClient=True)
    transport = connect(client)
    client.dataReceived(encode([b"pb"]) + bytes((122, codec.VOCAB)))
    assert transport.disconnecting


# ---------------------------------------------------------------------------------------------
# A5, and the rest of the encoder's refusals: Twisted's opening words


class Widget:
    class Part:
        pass


@pytest.mark.parametrize(
    "value",
    ["hello", type, Widget(), Widget.Part(), object(), 1j, None, {1: 2}, {1}, bytearray(b"x")],
)
def test_unsendable_value_is_named_as_twisted_names_it(value: object) -> None:
    with pytest.raises(BananaError) as raised:
        encode([1, [value]])
    twisted = twisted_send_error(value)
    opening = str(twisted).split(" objects")[0] + " objects"  # "Banana cannot send X objects"
    assert_like_twisted(raised.value, twisted, opening)


@pytest.mark.parametrize(
    ("value", "opening"),
    [
        ([0] * (SIZE_LIMIT + 1), f"list/tuple is too long to send ({SIZE_LIMIT + 1}"),
        ((0,) * (SIZE_LIMIT + 1), f"list/tuple is too long to send ({SIZE_LIMIT + 1}"),
        (b"x" * (SIZE_LIMIT + 1), f"byte string is too long to send ({SIZE_LIMIT + 1}"),
    ],
)
def test_value_over_the_size_limit_is_refused_in_twisteds_words(
    value: object, opening: str
) -> None:
    with pytest.raises(BananaError) as raised:
        encode(value)
    assert_like_twisted(raised.value, twisted_send_error(value), opening)


# ---------------------------------------------------------------------------------------------
# B1, B2. Limits of any size


HUGE_LIMITS = [2**31, 2**32 + 1, 2**62, 2**63 - 1, 2**63, 2**64 + 1, 10**30]


@pytest.mark.parametrize("limit", HUGE_LIMITS)
def test_encoder_takes_limits_of_any_size(limit: int) -> None:
    value = [1, b"x" * 200, [2**100, -(2**40)], 1.5, (b"None",)]
    encoder = Encoder(PB_VOCABULARY, size_limit=limit, prefix_limit=limit, max_depth=limit)
    assert encoder.encode(value) == Encoder(PB_VOCABULARY).encode(value)
    assert Encoder(max_depth=limit).encode([[[]]]) == b"\x01\x80\x01\x80\x00\x80"


@pytest.mark.parametrize("limit", HUGE_LIMITS)
def test_decoder_takes_limits_of_any_size(limit: int) -> None:
    wire = encode([1, b"x" * 200, [2**100, -(2**40)], 1.5])
    decoder = Decoder(
        size_limit=limit, prefix_limit=limit, max_depth=limit, max_message_size=limit,
        list_allowance=limit,
    )  # fmt: skip
    assert decoder.feed(wire) == [[1, b"x" * 200, [2**100, -(2**40)], 1.5]]
    # A string announced of 2**40 bytes is awaited where the limit allows it.
    announced = codec._token(2**40, codec.STRING)
    if limit >= 2**40:
        assert Decoder(size_limit=limit, max_message_size=limit).feed(announced) == []
    else:
        assert "String too long" in str(receive_error(announced, size_limit=limit))


@pytest.mark.parametrize("limit", [2**63 - 1, 2**63, 2**64, 2**70 + 5])
def test_size_limit_beyond_63_bits_is_compared_with_headers_beyond_63_bits(limit: int) -> None:
    for announced in [2**63 - 1, 2**63, 2**64, 2**70 + 5, 2**70 + 6, 2**300]:
        for type_byte in (codec.STRING, codec.LIST):
            wire = codec._token(announced, type_byte)
            decoder = Decoder(size_limit=limit, max_message_size=2**400)
            if announced <= limit:
                assert decoder.feed(wire) == []
                assert decoder.pending
            else:
                with pytest.raises(BananaError, match="more than the size limit"):
                    decoder.feed(wire)


@pytest.mark.parametrize("limit", [0, 1, 2**63, 2**64])
def test_unjelly_takes_any_max_depth(limit: int) -> None:
    sexp = jelly([1, [2, (3,)], {"a": {4}}])
    if limit < 2:
        with pytest.raises(InsecureJelly):
            unjelly(sexp, maxDepth=limit)
    else:
        assert unjelly(sexp, maxDepth=limit) == [1, [2, (3,)], {"a": {4}}]


# ---------------------------------------------------------------------------------------------
# B3. An interrupt inside the taster is never swallowed


class InterruptOnce(SecurityOptions):
    """Basic types allowed, but the first question raises ``interrupt`` (a Ctrl-C arriving)."""

    def __init__(self, interrupt: BaseException) -> None:
        super().__init__()
        self.allowBasicTypes()
        self.interrupt: BaseException | None = interrupt

    def isTypeAllowed(self, typeName: str | bytes) -> bool:
        interrupt, self.interrupt = self.interrupt, None
        if interrupt is not None:
            raise interrupt
        return super().isTypeAllowed(typeName)


class Stop(BaseException):
    pass


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, Stop])
def test_interrupt_raised_by_the_taster_propagates(interrupt: type[BaseException]) -> None:
    with pytest.raises(interrupt):
        unjelly([b"list", 1, [b"tuple", 2]], InterruptOnce(interrupt()))


def test_exception_raised_by_the_taster_propagates() -> None:
    class Broken(SecurityOptions):
        def isTypeAllowed(self, typeName: str | bytes) -> bool:
            raise ValueError("broken taster")

    with pytest.raises(ValueError, match="broken taster"):
        unjelly([b"list", 1], Broken())


# ---------------------------------------------------------------------------------------------
# B4. Deep recursion: the recursion limit decides, as for Python, and never the C stack


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def jellied_nest(depth: int) -> list[Any]:
    sexp: list[Any] = [b"list"]
    for _ in range(depth - 1):
        sexp = [b"list", sexp]
    return sexp


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except (BananaError, InsecureJelly) as error:
        return (type(error).__name__, str(error))


def python_path_outcome(call: Any) -> tuple[str, Any]:
    """``outcome(call)`` on the pure-Python code, whichever path the test runs on."""
    saved = codec._speedups, encoder_module._speedups, jelly_module._speedups
    codec._speedups = encoder_module._speedups = jelly_module._speedups = None
    try:
        return outcome(call)
    finally:
        codec._speedups, encoder_module._speedups, jelly_module._speedups = saved


@pytest.mark.parametrize("room", [60, 150, 390, 420])
def test_encoding_with_little_stack_left_does_what_python_does(room: int) -> None:
    # 400 levels: too deep for the first rooms (BananaError, "too deeply"), not the last.
    value = nested(400)

    def run() -> Any:
        with stack_room(room):
            return encode(value)

    assert outcome(run) == python_path_outcome(run)
    if room < 400:
        assert outcome(run)[0] == "BananaError"  # C gives up where Python runs out


@pytest.mark.parametrize("room", [60, 150, 390, 420])
def test_unjellying_with_little_stack_left_does_what_python_does(room: int) -> None:
    sexp = jellied_nest(400)

    def run() -> Any:
        with stack_room(room):
            return unjelly(sexp)

    assert outcome(run) == python_path_outcome(run)
    assert unjelly(sexp) == nested(400)  # with room again


@pytest.mark.parametrize("depth", [999, 1000, 1001, 1500, 5000])
def test_deep_nesting_with_unlimited_depth_encodes_or_raises_banana_error(depth: int) -> None:
    value = nested(depth)
    encoder = Encoder(max_depth=2**64)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(3000)
    try:
        try:
            wire = encoder.encode(value)
        except BananaError as e:
            assert depth > 1000 and "too deeply" in str(e)
        else:
            assert wire == b"\x01\x80" * (depth - 1) + b"\x00\x80"
    finally:
        sys.setrecursionlimit(limit)


# ---------------------------------------------------------------------------------------------
# B5. A scan interrupted by another exception leaves the decoder refusing, not corrupted


@pytest.fixture
def interrupted_scans(path: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the next scan (C or Python) do its work, then raise MemoryError, as if an
    allocation had failed just before it returned."""
    armed = ["armed"]
    if path == "C":
        real = codec._speedups

        class FailingScanner:
            def scan(self, *args: Any) -> Any:
                result = real.scan(*args)  # type: ignore[union-attr]
                if armed:
                    armed.clear()
                    raise MemoryError
                return result

        monkeypatch.setattr(codec, "_speedups", FailingScanner())
    else:
        real_scan = Decoder._scan

        def scan(self: Decoder, buf: bytes, end: int) -> Any:
            result = real_scan(self, buf, end)
            if armed:
                armed.clear()
                raise MemoryError
            return result

        monkeypatch.setattr(Decoder, "_scan", scan)
    return armed


def test_decoder_refuses_to_go_on_after_a_scan_was_interrupted(interrupted_scans: Any) -> None:
    decoder = Decoder()
    wire = encode([[1, 2], [b"abc", [3]]])
    with pytest.raises(MemoryError):
        decoder.feed(wire[:7])
    assert not decoder.pending  # what it held is let go
    with pytest.raises(BananaError, match=r"already refused.*interrupted by MemoryError"):
        decoder.feed(wire[7:])


def test_memory_error_anywhere_in_a_feed_leaves_a_decoder_right_or_refusing() -> None:
    testcapi = pytest.importorskip("_testcapi")
    if not hasattr(testcapi, "set_nomemory"):
        pytest.skip("this Python cannot make allocations fail")
    value = [[1, b"abc" * 10, [2**100, 1.5]], [[b"x", -5]] * 5, b"tail"]
    wire = encode(value) * 2
    cut = 9
    outcomes = set()
    for failing in range(0, 400, 3):
        decoder = Decoder()
        first = decoder.feed(wire[:cut])
        try:
            testcapi.set_nomemory(failing, failing + 1)
            try:
                second = decoder.feed(wire[cut:])
            finally:
                testcapi.remove_mem_hooks()
            outcomes.add("decoded")
        except MemoryError:
            # Either nothing had changed yet, and the same bytes again decode as ever, or
            # the decoder refuses them, clearly: never a wrong value.
            try:
                second = decoder.feed(wire[cut:])
                outcomes.add("unchanged")
            except BananaError as e:
                assert "interrupted by MemoryError" in str(e)
                outcomes.add("refused")
                continue
        assert first + second == [value, value]
    assert "refused" in outcomes and "decoded" in outcomes
