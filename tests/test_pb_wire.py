"""spread's broker on the wire, against twisted.spread.pb in the same process.

Each scenario runs three times over in-memory transports: Twisted client and
Twisted server, spread client and Twisted server, Twisted client and spread
server. What the spread side sends must be byte for byte what the Twisted side
sent in its place (failures differ only in Twisted's global failure counter,
which is normalised). A fourth run, spread against spread, must give the same
results.
"""

from __future__ import annotations

import gc
import types
from collections.abc import Callable
from typing import Any

import pytest
import twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.spread import banana as tbanana
from twisted.spread import jelly as tjelly
from twisted.spread import pb as tpb

from spread import banana as sbanana
from spread import jelly as sjelly
from spread import pb as spb
from spread._wirenames import COPYABLE_FAILURE, TWISTED_NAMES, fromWire, toWire
from spread._writethrough import _release

# -- building the same objects with either library -----------------------------------------


def _named(cls: type, module: str, name: str) -> type:
    cls.__module__ = module
    cls.__qualname__ = cls.__name__ = name
    return cls


def make_objects(pb: types.ModuleType) -> types.SimpleNamespace:
    """Root, helper and error classes written once, built on ``pb`` (Twisted's or ours)."""

    class MyError(pb.Error):  # type: ignore[name-defined,misc]
        pass

    _named(MyError, "wire", "MyError")

    class Pond(pb.Copyable):  # type: ignore[name-defined,misc]
        def __init__(self, frogs: int) -> None:
            self.frogs = frogs

        def getTypeToCopy(self) -> bytes:
            return b"wire.Pond"

    class PondCopy(pb.RemoteCopy):  # type: ignore[name-defined,misc]
        pass

    class Thing(pb.Referenceable):  # type: ignore[name-defined,misc]
        def __init__(self, name: str) -> None:
            self.name = name

        def remote_name(self) -> str:
            return self.name

    class Caller(pb.Referenceable):  # type: ignore[name-defined,misc]
        def remote_hello(self, who: str) -> str:
            return "hello " + who

    class Root(pb.Root):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self.thing = Thing("lamp")
            self.held: Any = None

        def remote_echo(self, *args: Any, **kw: Any) -> Any:
            return [args, kw]

        def remote_thing(self) -> Any:
            return self.thing

        def remote_isThing(self, value: Any) -> bool:
            return value is self.thing

        def remote_pond(self, frogs: int) -> Any:
            return Pond(frogs)

        def remote_countFrogs(self, pond: Any) -> int:
            return pond.frogs  # type: ignore[no-any-return]

        def remote_fail(self) -> None:
            raise MyError("boom")

        def remote_bug(self) -> None:
            raise ValueError("bad value")

        def remote_callBack(self, ref: Any, who: str) -> Any:
            return ref.callRemote("hello", who)

        def remote_hold(self, ref: Any) -> int:
            self.held = ref
            return 1

        def remote_drop(self) -> int:
            self.held = None
            return 1

    return types.SimpleNamespace(
        MyError=MyError, Pond=Pond, PondCopy=PondCopy, Thing=Thing, Caller=Caller, Root=Root
    )


TWISTED = make_objects(tpb)
SPREAD = make_objects(spb)
tjelly.setUnjellyableForClass("wire.Pond", TWISTED.PondCopy)
sjelly.setUnjellyableForClass("wire.Pond", SPREAD.PondCopy)


# -- an in-memory connection that records every byte ----------------------------------------


class Wire:
    """A server and a client broker joined by StringTransports; bytes are kept per direction."""

    def __init__(
        self, server_pb: types.ModuleType, client_pb: types.ModuleType, root: Any = None
    ) -> None:
        self.server_objects = TWISTED if server_pb is tpb else SPREAD
        self.client_objects = TWISTED if client_pb is tpb else SPREAD
        if root is None:
            root = self.server_objects.Root()
        server_factory = server_pb.PBServerFactory(root)
        self.client_factory = client_pb.PBClientFactory()
        self.server = server_factory.buildProtocol(None)
        self.client = self.client_factory.buildProtocol(None)
        self.to_client: list[bytes] = []
        self.to_server: list[bytes] = []
        self._server_out, self._client_out = StringTransport(), StringTransport()
        self.server.makeConnection(self._server_out)
        self.client.makeConnection(self._client_out)
        self.pump()

    def pump(self, collect: bool = False) -> None:
        """Deliver bytes both ways until quiet; with ``collect``, garbage is released first."""
        for _ in range(3 if collect else 1):
            if collect:
                gc.collect()
            for broker in (self.server, self.client):
                if hasattr(broker, "flushReleases"):
                    broker.flushReleases()
            moved = True
            while moved:
                moved = False
                for out, peer, record in (
                    (self._server_out, self.client, self.to_client),
                    (self._client_out, self.server, self.to_server),
                ):
                    data = out.value()
                    if data:
                        out.clear()
                        record.append(data)
                        peer.dataReceived(data)
                        moved = True

    def result(self, d: defer.Deferred[Any]) -> Any:
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        self.pump()
        assert outcome, "the Deferred never fired"
        return outcome[0]

    def root(self) -> Any:
        return self.result(self.client_factory.getRootObject())


Scenario = Callable[[Wire], list[Any]]


def _echo(wire: Wire) -> list[Any]:
    root = wire.root()
    values: list[Any] = [
        42, -7, 2**40, 1.5, b"raw", "text \u00e9", None, True, [1, [2, b"x"]], (1, 2),
        {"a": 1, "b": [None]}, {3}, frozenset({4}),
    ]
    out = [wire.result(root.callRemote("echo", value)) for value in values]
    out.append(wire.result(root.callRemote("echo", 1, key="word")))
    return out


def _references(wire: Wire) -> list[Any]:
    root = wire.root()
    thing = wire.result(root.callRemote("thing"))
    out = [wire.result(thing.callRemote("name"))]
    out.append(wire.result(root.callRemote("isThing", thing)))
    del thing
    wire.pump(collect=True)  # the client releases its reference: decref
    out.append(wire.result(root.callRemote("callBack", wire.client_objects.Caller(), "you")))
    out.append(wire.result(root.callRemote("hold", wire.client_objects.Caller())))
    out.append(wire.result(root.callRemote("drop")))
    wire.pump(collect=True)  # the server releases: decref back
    return out


def _copies(wire: Wire) -> list[Any]:
    root = wire.root()
    pond = wire.result(root.callRemote("pond", 7))
    out = [type(pond).__name__, pond.frogs]
    out.append(wire.result(root.callRemote("countFrogs", wire.client_objects.Pond(3))))
    return out


def _describe(failure: Any) -> Any:
    if isinstance(failure, Failure):
        failure_type = failure.type
        if isinstance(failure_type, type):
            failure_type = failure_type.__name__
        return ("failure", failure_type, str(failure.value))
    return ("result", failure)


def _errors(wire: Wire) -> list[Any]:
    root = wire.root()
    return [
        _describe(wire.result(root.callRemote("fail"))),
        _describe(wire.result(root.callRemote("bug"))),
        _describe(wire.result(root.callRemote("echo", "still works"))),
    ]


SCENARIOS: dict[str, Scenario] = {
    "echo": _echo,
    "references": _references,
    "copies": _copies,
}


def _decode(chunks: list[bytes]) -> list[Any]:
    """Every expression in a recorded stream, decoded with Twisted's banana (pb dialect)."""
    decoder = tbanana.Banana(isClient=True)
    decoder.setPrefixLimit(64)
    decoder.currentDialect = b"pb"
    expressions: list[Any] = []
    decoder.expressionReceived = expressions.append  # type: ignore[method-assign]
    stream = b"".join(chunks)
    # The first expression each way is dialect negotiation, outside the pb dialect.
    decoder.dataReceived(stream[_negotiation_length(stream):])
    return expressions


def _negotiation_length(stream: bytes) -> int:
    for negotiation in (OFFER, SPREAD_OFFER, CHOICE, SPREAD_CHOICE):
        if stream.startswith(negotiation):
            return len(negotiation)
    raise AssertionError(f"no dialect negotiation at the start of {stream[:20]!r}")


# Before 24.7 Twisted sent a failure's Failure.__dict__ whole, in that dictionary's order;
# spread sends the fields of 24.7 and later, in their order. Either reads either.
_FAILURE_FIELDS_IN_DICT_ORDER = _release(twisted.__version__) < (24, 7)


def _normalise(expression: Any) -> Any:
    """Zero Twisted's process-wide failure counter, the one value that differs by run (and,
    against a Twisted older than 24.7, put a failure's fields in one order)."""
    if isinstance(expression, list):
        if len(expression) == 2 and expression[0] == [b"unicode", b"count"]:
            return [expression[0], 0]
        items = [_normalise(item) for item in expression]
        if _FAILURE_FIELDS_IN_DICT_ORDER and items[:1] == [b"dictionary"]:
            items[1:] = sorted(items[1:], key=repr)
        return items
    return expression


def run(server_pb: types.ModuleType, client_pb: types.ModuleType, scenario: Scenario) -> Wire:
    wire = Wire(server_pb, client_pb)
    wire.outcome = scenario(wire)  # type: ignore[attr-defined]
    return wire


# -- the comparisons -----------------------------------------------------------------------


def _skip(data: bytes, pos: int) -> int:
    """The position just past the banana element starting at ``pos``."""
    size, shift = 0, 0
    while data[pos] < 0x80:
        size |= data[pos] << shift
        shift += 7
        pos += 1
    kind = data[pos]
    pos += 1
    if kind == 0x80:
        for _ in range(size):
            pos = _skip(data, pos)
    elif kind == 0x82:
        pos += size
    elif kind == 0x84:
        pos += 8
    return pos


def _messages(chunks: list[bytes]) -> list[bytes]:
    """The raw bytes of each message in a recorded stream, after dialect negotiation."""
    stream = b"".join(chunks)
    pos, messages = _negotiation_length(stream), []
    while pos < len(stream):
        end = _skip(stream, pos)
        messages.append(stream[pos:end])
        pos = end
    return messages


RELEASES = (b"\x1d\x87", b"\x1e\x87")  # the decref and decache symbols


def _canonical(chunks: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(messages in order, release messages as a sorted list).

    Twisted sends a release from ``__del__`` at the instant of collection;
    spread sends it from the reactor a moment later. Each release is the same
    bytes, but may sit elsewhere in the stream.
    """
    ordered: list[bytes] = []
    releases: list[bytes] = []
    for message in _messages(chunks):
        (releases if message[2:4] in RELEASES else ordered).append(message)
    return ordered, sorted(releases)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_spread_client_sends_what_a_twisted_client_sends(name: str) -> None:
    reference = run(tpb, tpb, SCENARIOS[name])
    ours = run(tpb, spb, SCENARIOS[name])
    assert _canonical(ours.to_server) == _canonical(reference.to_server)
    assert _canonical(ours.to_client) == _canonical(reference.to_client)
    assert ours.outcome == reference.outcome  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_spread_server_sends_what_a_twisted_server_sends(name: str) -> None:
    reference = run(tpb, tpb, SCENARIOS[name])
    ours = run(spb, tpb, SCENARIOS[name])
    assert _canonical(ours.to_client) == _canonical(reference.to_client)
    assert _canonical(ours.to_server) == _canonical(reference.to_server)
    assert ours.outcome == reference.outcome  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_spread_to_spread_gives_the_same_results(name: str) -> None:
    reference = run(tpb, tpb, SCENARIOS[name])
    ours = run(spb, spb, SCENARIOS[name])
    assert ours.outcome == reference.outcome  # type: ignore[attr-defined]


def test_spread_server_errors_match_twisted_server_errors() -> None:
    reference = run(tpb, tpb, _errors)
    ours = run(spb, tpb, _errors)
    assert _normalise(_decode(ours.to_client)) == _normalise(_decode(reference.to_client))
    assert ours.outcome == reference.outcome  # type: ignore[attr-defined]


def test_spread_client_reads_twisted_errors() -> None:
    wire = run(tpb, spb, _errors)
    fail, bug, ok = wire.outcome  # type: ignore[attr-defined]
    assert fail == ("failure", b"wire.MyError", "boom")
    assert bug == ("failure", b"builtins.ValueError", "bad value")
    assert ok == ("result", [("still works",), {}])


def test_twisted_error_names_match_spread_classes() -> None:
    wire = Wire(tpb, spb)
    root = wire.root()
    failure = wire.result(root.callRemote("fail"))
    assert failure.check(spb.Error) is spb.Error
    assert failure.check("twisted.spread.pb.Error") == "twisted.spread.pb.Error"
    missing = wire.result(root.callRemote("noSuchThing"))
    assert missing.check(AttributeError) is AttributeError


def test_twisted_client_reads_spread_errors() -> None:
    wire = Wire(spb, tpb)
    root = wire.root()
    failure = wire.result(root.callRemote("fail"))
    assert failure.type == b"wire.MyError"
    assert failure.check(tpb.Error) is tpb.Error
    missing = wire.result(root.callRemote("noSuchThing"))
    assert missing.check(tpb.NoSuchMethod) is tpb.NoSuchMethod


# -- pinned bytes (from WIRE.md, produced by Twisted 26.10) ---------------------------------


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


OFFER = _hex("02 80 02 82 70 62 04 82 6e 6f 6e 65")
CHOICE = _hex("02 82 70 62")
SPREAD_OFFER = b"\x03\x80\x06\x82spread" + OFFER[2:]  # [b"spread", b"pb", b"none"]
SPREAD_CHOICE = b"\x06\x82spread"
VERSION = _hex("02 80 13 87 06 81")
ECHO_CALL = _hex(
    "07 80 1a 87 01 81 04 82 72 6f 6f 74 04 82 65 63 68 6f 01 81 02 80 0b 87 02 80 07 82 75 6e"
    " 69 63 6f 64 65 02 82 68 69 01 80 05 87"
)
ECHO_ANSWER = _hex("03 80 1b 87 01 81 02 80 07 82 75 6e 69 63 6f 64 65 02 82 68 69")


class PlainEcho(spb.Root):
    def remote_echo(self, value: Any) -> Any:
        return value


def test_pinned_negotiation_and_version() -> None:
    # Two spread peers choose the spread dialect: PB's messages and vocabulary, plus its own.
    wire = Wire(spb, spb, PlainEcho())
    assert b"".join(wire.to_client) == SPREAD_OFFER + VERSION
    assert b"".join(wire.to_server) == SPREAD_CHOICE + VERSION
    assert wire.client.spreadDialect and wire.server.spreadDialect


@pytest.mark.parametrize(("server_pb", "client_pb"), [(spb, tpb), (tpb, spb)])
def test_a_twisted_peer_on_either_side_chooses_pb(
    server_pb: types.ModuleType, client_pb: types.ModuleType
) -> None:
    wire = Wire(server_pb, client_pb)
    offer = SPREAD_OFFER if server_pb is spb else OFFER
    assert b"".join(wire.to_client) == offer + VERSION
    assert b"".join(wire.to_server) == CHOICE + VERSION
    ours = wire.server if server_pb is spb else wire.client
    assert not ours.spreadDialect


def test_pinned_call_and_answer() -> None:
    wire = Wire(spb, spb, PlainEcho())
    root = wire.root()
    wire.to_server.clear()
    wire.to_client.clear()
    assert wire.result(root.callRemote("echo", "hi")) == "hi"
    assert b"".join(wire.to_server) == ECHO_CALL
    assert b"".join(wire.to_client) == ECHO_ANSWER


def test_pinned_decref() -> None:
    wire = Wire(tpb, spb)
    root = wire.root()
    thing = wire.result(root.callRemote("thing"))
    before = len(b"".join(wire.to_server))
    del thing
    wire.pump(collect=True)
    assert b"".join(wire.to_server)[before:] == bytes.fromhex("02801d870181")


def test_unknown_message_kind_gets_didNotUnderstand_reply() -> None:
    wire = Wire(spb, tpb)
    before = len(b"".join(wire.to_client))
    wire.client.sendEncoded([b"frobnicate", 1])
    wire.pump()
    reply = b"".join(wire.to_client)[before:]
    assert _decode_pb(reply) == [[b"didNotUnderstand", b"frobnicate"]]
    assert not wire.server.disconnected
    assert wire.result(wire.root().callRemote("echo", 1)) == [(1,), {}]


def _decode_pb(data: bytes) -> list[Any]:
    decoder = tbanana.Banana(isClient=True)
    decoder.setPrefixLimit(64)
    decoder.currentDialect = b"pb"
    expressions: list[Any] = []
    decoder.expressionReceived = expressions.append  # type: ignore[method-assign]
    decoder.dataReceived(data)
    return expressions


# -- properties ----------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.binary(max_size=20)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


def _brokers() -> tuple[Any, Any]:
    ours = spb.PBClientFactory().buildProtocol(None)
    theirs = tpb.PBClientFactory().buildProtocol(None)
    return ours, theirs


@given(st.lists(scalars, max_size=6).map(tuple))
def test_call_arguments_jelly_exactly_as_twisted(args: tuple[Any, ...]) -> None:
    ours, theirs = _brokers()
    assert ours.serialize(args) == theirs.serialize(args)


@given(values)
def test_any_basic_value_jellies_as_twisted_and_comes_back(value: Any) -> None:
    ours, theirs = _brokers()
    sexp = ours.serialize(value)
    assert sexp == theirs.serialize(value)
    assert ours.unserialize(sexp) == value


def test_wire_names_table() -> None:
    assert COPYABLE_FAILURE == b"twisted.spread.pb.CopyableFailure"
    pairs = [
        (spb.Error, "twisted.spread.pb.Error"),
        (spb.ProtocolError, "twisted.spread.pb.ProtocolError"),
        (spb.DeadReferenceError, "twisted.spread.pb.DeadReferenceError"),
        (spb.RemoteError, "twisted.spread.pb.RemoteError"),
        (spb.PBConnectionLost, "twisted.spread.pb.PBConnectionLost"),
        (spb.NoSuchMethod, "twisted.spread.flavors.NoSuchMethod"),
        (spb.CopyableFailure, "twisted.spread.pb.CopyableFailure"),
        (sjelly.InsecureJelly, "twisted.spread.jelly.InsecureJelly"),
        (sbanana.BananaError, "twisted.spread.banana.BananaError"),
    ]
    assert len(TWISTED_NAMES) == len(pairs)  # every entry is held to its class here
    for ours, theirs in pairs:
        name = f"{ours.__module__}.{ours.__qualname__}"
        assert toWire(name) == theirs
        assert fromWire(theirs) == name
    assert toWire("myapp.Error") == "myapp.Error"
    assert fromWire("myapp.Error") is None
