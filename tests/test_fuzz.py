"""Bounded, seeded fuzzing of a whole broker: hypothesis-built PB messages (well-formed, nearly
well-formed and garbage) fed to a server Broker on an in-memory transport, in arbitrary chunks.

Whatever arrives, nothing may escape ``dataReceived``, nothing may be logged as a bug in spread,
the broker's tables must stay within their limits and consistent, and closing the connection
must leave them empty. (The codec and the serializer are fuzzed on their own in test_banana.py
and test_jelly_security.py; fuzz/ holds longer runs.)
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support import shared_sexp
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher

from spread import pb
from spread.banana import PB_VOCABULARY, Encoder, encode
from spread.limits import Limits

LIMITS = Limits(
    maxBrokerRefs=16, maxCachedObjects=4, maxPendingCalls=8, maxDepth=40, maxImportedCaches=4
)


class Thing(pb.Referenceable):
    def remote_poke(self, *args: object) -> int:
        return len(args)


class Board(pb.Cacheable):
    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> list[int]:
        return [1]


class FuzzRoot(pb.Root):
    """Methods a fuzzer can reach: echo, export references and caches, fail, never answer."""

    def remote_echo(self, *args: object, **kwargs: object) -> object:
        return [args, kwargs]

    def remote_thing(self) -> Thing:
        return Thing()

    def remote_board(self) -> Board:
        return Board()

    def remote_fail(self) -> None:
        raise ValueError("as asked")

    def remote_big(self) -> bytes:
        """An answer far larger than the call (the amplification attack)."""
        return b"z" * 300_000

    def remote_hang(self) -> Any:
        from twisted.internet import defer

        return defer.Deferred()


KINDS = [b"message", b"answer", b"error", b"decref", b"decache", b"uncache",
         b"cachemessage", b"version", b"didNotUnderstand", b"nonsense"]  # fmt: skip
METHODS = [b"echo", b"thing", b"board", b"fail", b"hang", b"poke", b"missing", b"__init__",
           b"big"]  # fmt: skip
TAGS = [b"tuple", b"list", b"dictionary", b"unicode", b"remote", b"local", b"cache", b"cached",
        b"lcache", b"reference", b"dereference", b"None", b"os.system", b"set", b"frozenset",
        b"twisted.spread.pb.CopyableFailure"]  # fmt: skip
COLLIDING = [(2**61 - 1) * k for k in range(1, 5)]  # ints that all hash alike

ids = st.integers(min_value=-2, max_value=20)
atoms = st.one_of(
    ids, st.binary(max_size=6), st.sampled_from(TAGS + METHODS), st.floats(),
    st.sampled_from(COLLIDING),
)
values = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.builds(
            lambda tag, rest: [tag, *rest], st.sampled_from(TAGS), st.lists(inner, max_size=3)
        ),
        # A few bytes that unjelly into 30**levels leaves: every error text must stay cheap.
        st.builds(shared_sexp, st.integers(1, 12), st.integers(1, 30), st.integers(1, 40)),
    ),
    max_leaves=20,
)
calls = st.builds(
    lambda request, target, method, answer, args, kw: [
        b"message", request, target, method, answer, [b"tuple", *args], kw,
    ],
    ids,
    st.sampled_from([b"root", 0, 1, 2, 3, 99]),
    st.sampled_from(METHODS),
    st.sampled_from([0, 1]),
    st.lists(values, max_size=3),
    st.sampled_from([[b"dictionary"], [b"dictionary", [b"k", 1]], 7]),
)
messages = st.one_of(
    calls,
    st.builds(
        lambda kind, rest: [kind, *rest], st.sampled_from(KINDS), st.lists(values, max_size=6)
    ),
    values,
)


def connected_broker() -> tuple[pb.Broker, StringTransport]:
    factory = pb.PBServerFactory(FuzzRoot(), limits=LIMITS)
    broker = factory.buildProtocol(None)
    transport = StringTransport()
    broker.makeConnection(transport)
    broker.dataReceived(encode(b"pb") + Encoder(PB_VOCABULARY).encode([b"version", 6]))
    return broker, transport


def tables(broker: pb.Broker) -> list[int]:
    return [
        len(broker._exports.locals),
        len(broker._exports._luid_by_puid),
        len(broker._cacheExports.locals),
        len(broker._cacheExports._luid_by_puid),
    ]


STREAMS = {
    "batch": st.lists(messages, max_size=12),
    "cuts": st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
    "junk": st.binary(max_size=8),
}


@given(**STREAMS)
@settings(max_examples=300)
def test_broker_survives_any_message_stream(batch: list[Any], cuts: list[int], junk: bytes) -> None:
    check_stream(batch, cuts, junk)


def check_stream(batch: list[Any], cuts: list[int], junk: bytes) -> None:
    """Feed the encoded ``batch`` (then ``junk``) cut at ``cuts``; check the broker held up."""
    bugs: list[LogEvent] = []

    def watch(event: LogEvent) -> None:
        if "bug in spread" in str(event.get("log_format", "")):
            bugs.append(event)

    globalLogPublisher.addObserver(watch)
    try:
        broker, _transport = connected_broker()
        encoder = Encoder(PB_VOCABULARY)
        wire = b""
        for message in batch:
            try:
                wire += encoder.encode(message)
            except Exception:  # unencodable (a float too big for a header...): skip it
                continue
        wire += junk
        previous = 0
        for cut in [*sorted(c for c in cuts if c < len(wire)), len(wire)]:
            broker.dataReceived(wire[previous:cut])  # must never raise
            previous = cut
        exported, by_puid, caches, caches_by_puid = tables(broker)
        assert exported <= LIMITS.maxBrokerRefs and caches <= LIMITS.maxCachedObjects
        assert len(broker._cacheImports.entries) <= LIMITS.maxImportedCaches
        assert exported == by_puid and caches == caches_by_puid
        broker.connectionLost()
        assert tables(broker) == [0, 0, 0, 0]
        assert broker.waitingForAnswers == {}
    finally:
        globalLogPublisher.removeObserver(watch)
    assert not bugs, [event.get("log_failure") for event in bugs]
