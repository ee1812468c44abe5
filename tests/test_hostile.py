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
BIG = 1024 * 1024  # room for the 300 KB answers some tests ask for (and do not read)


class Counter(pb.Referenceable):
    def remote_value(self) -> int:
        return 1


class Board(pb.Cacheable):
    def __init__(self) -> None:
        self.observers: list[Any] = []

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> dict[str, int]:
        self.observers.append(observer)
        return {"n": 1}


class Replica(pb.RemoteCache):
    def observe_update(self, value: object) -> None:
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

    big_answers = 0

    def remote_big(self) -> bytes:
        """A 300 KB answer to a call of a few bytes."""
        self.big_answers += 1
        return b"z" * 300_000

    def remote_board(self) -> Board:
        self.boards.append(Board())
        return self.boards[-1]


class Server:
    """A spread server with tight limits, and the brokers it has made."""

    def __init__(self, limits: Limits = LIMITS, root: Any = None) -> None:
        self.root = HostileRoot() if root is None else root
        self.factory = pb.PBServerFactory(self.root, limits=limits)
        self.brokers: list[pb.Broker] = []
        build = self.factory.buildProtocol

        def buildProtocol(addr: Any) -> pb.Broker | None:
            broker = build(addr)
            if broker is not None:
                self.brokers.append(broker)
            return broker

        self.factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        self.port: Any = None
        self.clients: list[pb.PBClientFactory] = []

    async def client(self, limits: Limits | None = None) -> Any:
        factory = pb.PBClientFactory(limits=limits)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
        self.clients.append(factory)
        return await factory.getRootObject().addTimeout(TIMEOUT, reactor)


    async def start(self) -> Server:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = await endpoint.listen(self.factory)
        return self

    async def stop(self) -> None:
        for factory in self.clients:
            factory.disconnect()
        for broker in self.brokers:
            broker.transport.abortConnection()
        await self.port.stopListening()
        await task.deferLater(reactor, 0, lambda: None)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Server]:
    running = await Server().start()
    try:
        yield running
    finally:
        await running.stop()


@pytest_twisted.async_yield_fixture
async def servers() -> AsyncIterator[Any]:
    """Start servers with limits of the test's choosing: ``await servers(limits)``."""
    started: list[Server] = []

    async def start(limits: Limits, root: Any = None) -> Server:
        started.append(await Server(limits, root).start())
        return started[-1]

    try:
        yield start
    finally:
        for running in started:
            await running.stop()


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
        if broker._flow.paused:
            break
        peer.transport.write(calls)  # type: ignore[union-attr]
        await task.deferLater(reactor, 0.02, lambda: None)
    assert broker._flow.paused, "the server never stopped reading from the flooder"
    transport: Any = broker.transport
    unsent = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    assert unsent < 8 * 1024 * 1024  # bounded by what one read can answer, not by the flood
    await still_serves(server)


# -- peers that do not read: backpressure before execution, then a deadline ---------------------


@pytest_twisted.ensureDeferred
async def test_calls_whose_answers_are_not_read_stop_running(servers: Any) -> None:
    server = await servers(LIMITS.replace(maxPendingCalls=5000, maxMessageSize=BIG))
    peer = await raw_peer(server)
    peer.transport.pauseProducing()  # type: ignore[union-attr]  # never read an answer
    peer.handshake()
    calls = b"".join(peer.call(n, b"big") for n in range(1, 2001))  # ~40 KB asking for 600 MB
    peer.transport.write(calls)  # type: ignore[union-attr]
    broker = await _first_broker(server)
    await wait_until(lambda: broker._flow.paused)
    await task.deferLater(reactor, 0.2, lambda: None)  # let any straggler run
    # Only what the kernel's socket buffers absorbed before the transport's queue filled ran;
    # the rest waits, decoded but not run, for the peer to read.
    assert server.root.big_answers < 100
    assert len(broker._backlog) > 1500
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_two_peers_with_full_queues_do_not_wait_on_each_other(servers: Any) -> None:
    # The client's large calls fill its queue, so it is "not read"; their answers fill the
    # server's. Each holding back until the other reads would stall both until writeTimeout
    # dropped them: answers are read while our own output waits, only the peer's calls wait.
    limits = LIMITS.replace(
        maxPendingCalls=100, maxMessageSize=BIG, maxQueuedOutput=16 * 1024, writeTimeout=30,
        maxBufferedOutput=2 * 1024 * 1024,
    )
    server = await servers(limits)
    root = await server.client(limits)
    payloads = [bytes([n]) * 200_000 for n in range(60)]  # 12 MB each way, fired at once
    # Fired in one turn, a burst past maxBufferedOutput is ours to send, as in Twisted.
    answers = defer.gatherResults([root.callRemote("echo", p) for p in payloads])
    assert await answers.addTimeout(60, reactor) == payloads
    await still_serves(server)


async def _first_broker(server: Server) -> pb.Broker:
    await wait_until(lambda: server.brokers and server.brokers[0].currentDialect)
    return server.brokers[0]


@pytest_twisted.ensureDeferred
async def test_a_peer_that_never_reads_is_dropped_after_the_write_timeout(servers: Any) -> None:
    server = await servers(LIMITS.replace(writeTimeout=0.5, maxMessageSize=BIG))
    peer = await raw_peer(server)
    peer.transport.pauseProducing()  # type: ignore[union-attr]
    peer.handshake()
    peer.transport.write(b"".join(peer.call(n, b"big") for n in range(1, 200)))  # type: ignore[union-attr]
    broker = await _first_broker(server)
    await wait_until(lambda: broker.disconnected)
    peer.transport.resumeProducing()  # type: ignore[union-attr]  # a paused socket sees no close
    await dropped(peer)
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_an_observer_that_never_reads_is_dropped_not_buffered(servers: Any) -> None:
    # Only the byte limit can drop it here: no deadline, and updates may go unanswered.
    server = await servers(
        LIMITS.replace(
            maxBufferedOutput=2 * 1024 * 1024, writeTimeout=3600, maxMessageSize=BIG,
            maxPendingCalls=10_000,
        )
    )
    root = await server.client()
    replica = await root.callRemote("board")
    client_broker = server.clients[-1]._broker
    lost: defer.Deferred[None] = defer.Deferred()
    client_broker.notifyOnDisconnect(lambda: lost.callback(None))
    client_broker.transport.pauseProducing()  # the observer stops reading
    [observer] = server.root.boards[-1].observers
    for _ in range(200):  # up to 60 MB of updates, far more than the limit
        if server.brokers[-1].disconnected:
            break
        observer.callRemote("update", b"u" * 300_000).addErrback(lambda _: None)
        await task.deferLater(reactor, 0, lambda: None)
    assert server.brokers[-1].disconnected  # well before all were queued
    client_broker.transport.resumeProducing()
    await lost.addTimeout(TIMEOUT, reactor)
    assert server.brokers[-1].disconnected
    assert isinstance(replica, Replica)


@pytest_twisted.ensureDeferred
async def test_an_observer_that_answers_no_updates_is_dropped(servers: Any) -> None:
    server = await servers(LIMITS.replace(writeTimeout=3600))
    await server.client()
    peer = await raw_peer(server)
    peer.handshake()
    peer.transport.write(peer.call(1, b"board"))  # type: ignore[union-attr]
    await wait_until(lambda: len(server.root.boards) == 1 and server.root.boards[0].observers)
    [observer] = server.root.boards[0].observers
    outcomes = [observer.callRemote("update", n) for n in range(LIMITS.maxPendingCalls + 1)]
    await dropped(peer)  # the raw peer never answers an update
    assert isinstance(await failure_of(outcomes[-1]), Failure)
    await still_serves(server)


# -- time limits and connection counts ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_half_a_message_is_dropped_after_the_message_timeout(servers: Any) -> None:
    server = await servers(LIMITS.replace(messageTimeout=0.5))
    peer = await raw_peer(server)
    peer.handshake()
    message = peer.call(1, b"echo", b"x" * 1000)
    peer.transport.write(message[: len(message) // 2])  # type: ignore[union-attr]
    await dropped(peer)
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_connections_beyond_the_limit_are_closed_as_they_arrive(servers: Any) -> None:
    server = await servers(LIMITS.replace(maxConnections=2))
    first, second = await raw_peer(server), await raw_peer(server)
    third = await raw_peer(server)
    await dropped(third)
    assert not first.closed.called and not second.closed.called
    first.transport.loseConnection()  # type: ignore[union-attr]
    await dropped(first)
    await wait_until(lambda: server.factory.connections == 1)
    await still_serves(server)


@pytest_twisted.ensureDeferred
async def test_replicas_beyond_the_import_limit_are_refused(servers: Any) -> None:
    server = await servers(LIMITS.replace(maxCachedObjects=10))
    root = await server.client(limits=Limits(maxImportedCaches=2))
    held = [await root.callRemote("board") for _ in range(2)]
    failure = await failure_of(root.callRemote("board"))
    assert "Limits.maxImportedCaches" in failure.getErrorMessage()
    assert await root.callRemote("echo", 1).addTimeout(TIMEOUT, reactor) == 1
    assert len(held) == 2


# -- before login: small messages and a deadline --------------------------------------------------


class Account(pb.Avatar):
    def perspective_echo(self, value: object) -> object:
        return value


class Accounts:
    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        return interfaces[0], Account(), lambda: None


def login_desk() -> portal.Portal:
    accounts = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    return portal.Portal(Accounts(), [accounts])


@pytest_twisted.ensureDeferred
async def test_a_large_message_before_login_drops_the_peer(servers: Any) -> None:
    server = await servers(Limits(), login_desk())
    peer = await raw_peer(server)
    peer.handshake()
    peer.transport.write(peer.call(1, b"login", b"u" * 100_000))  # type: ignore[union-attr]
    await dropped(peer)


@pytest_twisted.ensureDeferred
async def test_after_login_the_factory_limits_apply(servers: Any) -> None:
    from twisted.cred.credentials import UsernamePassword

    server = await servers(Limits(loginTimeout=0.5), login_desk())
    factory = pb.PBClientFactory()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.port.getHost().port)
    await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
    server.clients.append(factory)
    avatar = await factory.login(UsernamePassword(b"alice", b"secret")).addTimeout(TIMEOUT, reactor)
    await task.deferLater(reactor, 1.0, lambda: None)  # past the login timeout
    big = b"b" * 100_000  # over the before-login message size
    assert await avatar.callRemote("echo", big).addTimeout(TIMEOUT, reactor) == big


@pytest_twisted.ensureDeferred
async def test_a_peer_that_does_not_log_in_is_dropped_after_the_login_timeout(
    servers: Any,
) -> None:
    server = await servers(Limits(loginTimeout=0.5), login_desk())
    peer = await raw_peer(server)
    peer.handshake()
    await dropped(peer)
