"""Hostile peers and per-connection limits, over real TCP on 127.0.0.1.

One spread server; for each test a misbehaving peer (garbage, a huge announced string, half a
message then silence, a flood of calls it never reads the answers to, a class nobody allowed,
more calls or references or caches than the limits allow) and, beside it, a well-behaved client
that must keep getting answers. Raw peers speak banana through spread's own encoder, so they can
send what no PB client would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from support import TIMEOUT, failure_of, shared_sexp, wait_until
from twisted.cred import checkers, portal
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.python.failure import Failure

from spread import pb
from spread.banana import PB_VOCABULARY, PB_VOCABULARY_BY_NUMBER, Decoder, Encoder, encode
from spread.limits import Limits

LIMITS = Limits(
    maxPendingCalls=5, maxBrokerRefs=8, maxCachedObjects=3, maxMessageSize=256 * 1024,
    maxDepth=50,
)
NO_KW = [b"dictionary"]


class Counter(pb.Referenceable):
    def remote_value(self) -> int:
        return 1


class Board(pb.Cacheable):
    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> dict[str, int]:
        return {"n": 1}


class Replica(pb.RemoteCache):
    pass


pb.setUnjellyableForClass(Board, Replica)


class HostileRoot(pb.Root):
    def __init__(self) -> None:
        self.waiting: list[defer.Deferred[str]] = []
        self.boards: list[Board] = []

    def remote_echo(self, value: object) -> object:
        return value

    def remote_wait(self) -> defer.Deferred[str]:
        self.waiting.append(defer.Deferred())
        return self.waiting[-1]

    def remote_counter(self) -> Counter:
        return Counter()

    def remote_board(self) -> Board:
        self.boards.append(Board())
        return self.boards[-1]


class Server:
    """A spread server with tight limits, and the brokers it has made."""

    def __init__(self) -> None:
        self.root = HostileRoot()
        self.factory = pb.PBServerFactory(self.root, limits=LIMITS)
        self.brokers: list[pb.Broker] = []
        build = self.factory.buildProtocol

        def buildProtocol(addr: Any) -> pb.Broker:
            broker = build(addr)
            self.brokers.append(broker)
            return broker

        self.factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        self.port: Any = None
        self.clients: list[pb.PBClientFactory] = []

    async def client(self) -> Any:
        factory = pb.PBClientFactory()
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
        self.clients.append(factory)
        return await factory.getRootObject().addTimeout(TIMEOUT, reactor)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    running = Server()
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    running.port = await endpoint.listen(running.factory)
    try:
        yield running
    finally:
        for factory in running.clients:
            factory.disconnect()
        for broker in running.brokers:
            broker.transport.abortConnection()
        await running.port.stopListening()
        await task.deferLater(reactor, 0, lambda: None)


class RawPeer(protocol.Protocol):
    """A peer that writes whatever bytes it is told to and records whether it was dropped."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.encoder = Encoder(PB_VOCABULARY)
        self.decoder = Decoder()

    def dataReceived(self, data: bytes) -> None:
        if self.decoder.vocabulary is None:  # the server's dialect offer comes first, plain
            self.messages += self.decoder.feed(data, max_expressions=1)
            self.decoder.vocabulary = PB_VOCABULARY_BY_NUMBER
            data = b""
        self.messages += self.decoder.feed(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed.callback(None)

    def handshake(self) -> None:
        """Choose the pb dialect and say our version, as a PB client does."""
        self.transport.write(encode(b"pb") + self.encoder.encode([b"version", 6]))  # type: ignore[union-attr]

    def call(self, request: int, method: bytes, *args: object) -> bytes:
        return self.encoder.encode(
            [b"message", request, b"root", method, 1, [b"tuple", *args], NO_KW]
        )


async def raw_peer(server: Server) -> RawPeer:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.port.getHost().port)
    return await endpoints.connectProtocol(endpoint, RawPeer()).addTimeout(TIMEOUT, reactor)


async def dropped(peer: RawPeer) -> None:
    """Wait until the server closes the peer's connection (the test fails if it never does)."""
    await peer.closed.addTimeout(TIMEOUT, reactor)


async def still_serves(server: Server) -> None:
    """A well-behaved client on the same server gets its answer."""
    root = await server.client()
    assert await root.callRemote("echo", "still here").addTimeout(TIMEOUT, reactor) == "still here"


# -- malformed input: that connection is dropped, the others go on -----------------------------


@pytest_twisted.ensureDeferred
async def test_garbage_bytes_drop_the_peer(server: Server) -> None:
    peer = await raw_peer(server)
    peer.transport.write(b"\xff" * 64)  # type: ignore[union-attr]
    await dropped(peer)
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_announced_huge_string_drops_the_peer_before_it_is_sent(server: Server) -> None:
    peer = await raw_peer(server)
    peer.handshake()
    # The header of a 2 GiB string, and nothing else: refused on the header alone.
    peer.transport.write(bytes([0, 0, 0, 0, 8, 0x82]))  # type: ignore[union-attr]
    await dropped(peer)
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_half_a_message_then_silence_harms_no_one_else(server: Server) -> None:
    peer = await raw_peer(server)
    peer.handshake()
    message = peer.call(1, b"echo", b"x" * 1000)
    peer.transport.write(message[: len(message) // 2])  # type: ignore[union-attr]
    await still_serves(server)
    assert not peer.closed.called
    peer.transport.write(message[len(message) // 2 :])  # type: ignore[union-attr]
    root = await server.client()
    assert await root.callRemote("echo", 2).addTimeout(TIMEOUT, reactor) == 2


@pytest_twisted.ensureDeferred
async def test_message_over_the_size_limit_drops_the_peer(server: Server) -> None:
    root = await server.client()
    chunks = [b"x" * 60_000] * 5  # 300 KB in one call, over the 256 KiB limit
    failure = await failure_of(root.callRemote("echo", chunks))
    assert failure.check(pb.PBConnectionLost)
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_nesting_over_the_depth_limit_drops_the_peer(server: Server) -> None:
    peer = await raw_peer(server)
    peer.handshake()
    deep: list[Any] = [b"list"]
    for _ in range(60):
        deep = [b"list", deep]
    peer.transport.write(peer.call(1, b"echo", deep))  # type: ignore[union-attr]
    await dropped(peer)
    await still_serves(server)


# -- refusals: that call fails, the connection goes on -----------------------------------------


# About 5 KB on the wire; a list with 30**12 leaves once unjellied (its levels are shared).
SHARED_KEY = [b"dictionary", [shared_sexp(12), 1]]


async def refused_quickly(peer: RawPeer, *messages: bytes) -> list[Any]:
    """Send ``messages``; return the server's error answer, which must quote the value briefly."""
    peer.handshake()
    peer.transport.write(b"".join(messages))  # type: ignore[union-attr]
    await wait_until(lambda: len(peer.messages) >= 3)  # dialects, version, the reply
    error = peer.messages[2]
    assert error[:2] == [b"error", 1]
    assert len(repr(error)) < 2_000
    assert b"unhashable" in repr(error).encode()
    return error


@pytest_twisted.ensureDeferred
async def test_shared_graph_as_a_dict_key_fails_the_call_quickly(server: Server) -> None:
    peer = await raw_peer(server)
    await refused_quickly(peer, peer.call(1, b"echo", SHARED_KEY))
    assert not peer.closed.called
    await still_serves(server)


class NoAvatars:
    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        raise NotImplementedError("this test never logs in")


@pytest_twisted.ensureDeferred
async def test_shared_graph_sent_to_login_before_credentials_fails_quickly(
    server: Server,
) -> None:
    desk = portal.Portal(NoAvatars(), [checkers.InMemoryUsernamePasswordDatabaseDontUse()])
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = await endpoint.listen(pb.PBServerFactory(desk))
    try:
        client = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        peer = await endpoints.connectProtocol(client, RawPeer()).addTimeout(TIMEOUT, reactor)
        await refused_quickly(peer, peer.call(1, b"login", SHARED_KEY))
        peer.transport.loseConnection()  # type: ignore[union-attr]
        await dropped(peer)
    finally:
        await port.stopListening()


class FailingServer(RawPeer):
    """A hostile server: it answers every call with a failure whose value is a shared graph."""

    def connectionMade(self) -> None:
        self.transport.write(encode([b"pb", b"none"]) + self.encoder.encode([b"version", 6]))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.decoder.vocabulary is None:  # the client's dialect choice comes first, plain
            self.decoder.feed(data, max_expressions=1)
            self.decoder.vocabulary = PB_VOCABULARY_BY_NUMBER
            data = b""
        for message in self.decoder.feed(data):
            if message[0] == b"message":
                state = [b"dictionary", [[b"unicode", b"type"], b"builtins.KeyError"],
                         [[b"unicode", b"value"], shared_sexp(12)]]
                failure = [b"twisted.spread.pb.CopyableFailure", state]
                self.transport.write(self.encoder.encode([b"error", message[1], failure]))  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_failure_holding_a_shared_graph_reaches_the_client_briefly() -> None:
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = await endpoint.listen(protocol.Factory.forProtocol(FailingServer))
    factory = pb.PBClientFactory()
    try:
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
        root = await factory.getRootObject().addTimeout(TIMEOUT, reactor)
        failure = await failure_of(root.callRemote("anything"))
        assert failure.check(KeyError)
        assert len(failure.getErrorMessage()) < 20_000
        assert len(failure.getTraceback()) < 20_000
    finally:
        factory.disconnect()
        await port.stopListening()
        await task.deferLater(reactor, 0, lambda: None)




@pytest_twisted.ensureDeferred
async def test_class_nobody_allowed_fails_the_call_only(server: Server) -> None:
    peer = await raw_peer(server)
    peer.handshake()
    stranger = [b"os.system", [b"dictionary"]]
    peer.transport.write(peer.call(1, b"echo", stranger) + peer.call(2, b"echo", 7))  # type: ignore[union-attr]
    await wait_until(lambda: len(peer.messages) >= 4)  # dialects, version, two replies
    error, answer = peer.messages[2:4]
    assert error[:2] == [b"error", 1]
    assert b"os.system" in repr(error).encode()
    assert answer == [b"answer", 2, 7]
    assert not peer.closed.called
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_calls_beyond_the_pending_limit_fail_until_some_finish(server: Server) -> None:
    root = await server.client()
    waiting = [root.callRemote("wait") for _ in range(LIMITS.maxPendingCalls)]
    await wait_until(lambda: len(server.root.waiting) == LIMITS.maxPendingCalls)
    failure = await failure_of(root.callRemote("wait"))
    assert "Limits.maxPendingCalls" in failure.getErrorMessage()
    await still_serves(server)  # another connection has its own budget
    for d in server.root.waiting:
        d.callback("done")
    assert await defer.gatherResults(waiting) == ["done"] * LIMITS.maxPendingCalls
    assert await root.callRemote("echo", 1).addTimeout(TIMEOUT, reactor) == 1


@pytest_twisted.ensureDeferred
async def test_references_beyond_the_limit_fail_the_call_that_exports_them(
    server: Server,
) -> None:
    root = await server.client()
    held = [await root.callRemote("counter") for _ in range(LIMITS.maxBrokerRefs)]
    failure = await failure_of(root.callRemote("counter"))
    assert "limit" in failure.getErrorMessage()
    assert await root.callRemote("echo", 1).addTimeout(TIMEOUT, reactor) == 1
    assert len(held) == LIMITS.maxBrokerRefs


@pytest_twisted.ensureDeferred
async def test_caches_have_their_own_limit(server: Server) -> None:
    root = await server.client()
    boards = [await root.callRemote("board") for _ in range(LIMITS.maxCachedObjects)]
    failure = await failure_of(root.callRemote("board"))
    assert "limit" in failure.getErrorMessage()
    counter = await root.callRemote("counter")  # references are counted apart
    assert await counter.callRemote("value").addTimeout(TIMEOUT, reactor) == 1
    assert len(boards) == LIMITS.maxCachedObjects


# -- a flood of calls whose answers are never read ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_flood_without_reading_stalls_only_the_flooder(server: Server) -> None:
    peer = await raw_peer(server)
    peer.transport.pauseProducing()  # type: ignore[union-attr]  # never read an answer
    peer.handshake()
    payload = b"y" * 20_000
    calls = b"".join(peer.call(n, b"echo", payload) for n in range(1, 51))  # ~1 MB a batch
    broker = server.brokers[-1]
    for _ in range(200):
        if broker._throttle.paused:
            break
        peer.transport.write(calls)  # type: ignore[union-attr]
        await task.deferLater(reactor, 0.02, lambda: None)
    assert broker._throttle.paused, "the server never stopped reading from the flooder"
    transport: Any = broker.transport
    unsent = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    assert unsent < 8 * 1024 * 1024  # bounded by what one read can answer, not by the flood
    await still_serves(server)
