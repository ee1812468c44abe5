"""Write-through on plain TCP: messages go out at once, in order, even when some are queued."""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from support import wait_until
from twisted.internet import defer, endpoints, reactor
from twisted.internet.testing import StringTransport

from spread import _writethrough as writethrough
from spread import banana, pb
from spread._writethrough import canWriteThrough
from spread.banana import PB_VOCABULARY, Encoder, encode


class Sizer(pb.Root):
    def remote_sizes(self, chunks: list[bytes]) -> list[int]:
        return [len(chunk) for chunk in chunks]

    def remote_echo(self, value: object) -> object:
        return value

    def remote_note(self, value: object) -> None:
        noted.append(value)


noted: list[object] = []


async def connected(factory: pb.PBClientFactory) -> tuple[Any, Any]:
    """(listening port, client root) for a Sizer server on 127.0.0.1."""
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        pb.PBServerFactory(Sizer())
    )
    await endpoints.clientFromString(
        reactor, f"tcp:127.0.0.1:{port.getHost().port}:timeout=30"
    ).connect(factory)
    return port, await factory.getRootObject()


def test_only_plain_tcp_transports_write_through() -> None:
    assert not canWriteThrough(StringTransport())
    assert not canWriteThrough(object())


@pytest_twisted.ensureDeferred
async def test_large_queued_messages_and_small_ones_arrive_in_order() -> None:
    factory = pb.PBClientFactory()
    port, root = await connected(factory)
    try:
        broker: Any = root.broker
        # A plain TCP connection writes through, on the Twisted releases it was verified on.
        assert broker._direct is writethrough._VERIFIED
        # 8 x 600 KB is more than the socket takes at once: the rest queues, and the small
        # calls after it must wait behind it rather than overtake it.
        big = [bytes([n]) * 600_000 for n in range(8)]
        calls = []
        for round_ in range(3):
            calls.append(root.callRemote("sizes", big))
            calls.extend(root.callRemote("echo", (round_, n)) for n in range(20))
        results = await defer.gatherResults(calls)
        expected: list[Any] = []
        for round_ in range(3):
            expected.append([600_000] * 8)
            expected.extend((round_, n) for n in range(20))
        assert results == expected
        factory.disconnect()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_write_through_can_be_turned_off() -> None:
    class Queued(pb.PBClientFactory):
        def buildProtocol(self, addr: Any) -> Any:
            broker = super().buildProtocol(addr)
            broker.writeThrough = False
            return broker

    factory = Queued()
    port, root = await connected(factory)
    try:
        assert not root.broker._direct
        assert await root.callRemote("echo", "queued") == "queued"
        factory.disconnect()
    finally:
        await port.stopListening()


def test_a_twisted_release_it_was_not_verified_on_takes_the_public_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from twisted.internet import tcp

    plain = tcp.Connection.__new__(tcp.Connection)
    for name in ("TLS", "connected", "disconnecting", "_writeDisconnecting", "_tempDataBuffer",
                 "dataBuffer", "offset", "producer", "streamingProducer"):  # fmt: skip
        setattr(plain, name, None)
    monkeypatch.setattr(writethrough, "_VERIFIED", True)
    assert canWriteThrough(plain)
    monkeypatch.setattr(writethrough, "_VERIFIED", False)
    assert not canWriteThrough(plain)
    assert writethrough._release("27.1.0.dev0") > writethrough.VERIFIED_TWISTED[1]


@pytest_twisted.ensureDeferred
async def test_messages_sent_outside_a_read_leave_in_two_sends_not_one_each() -> None:
    # A master updating its replicas from a timer or a cooperator sends many messages in one
    # reactor turn: the first goes straight out, the rest join Twisted's queue and leave in
    # one send at the end of the turn (one send each made every update its own segment).
    factory = pb.PBClientFactory()
    port, root = await connected(factory)
    try:
        broker: Any = root.broker
        if not broker._direct:
            pytest.skip("write-through is off on this Twisted release")
        transport = broker.transport
        sends: list[int] = []
        original = transport.writeSomeData

        def counting(data: Any) -> Any:
            sends.append(len(data))
            return original(data)

        transport.writeSomeData = counting
        burst: defer.Deferred[list[Any]] = defer.Deferred()

        def fire() -> None:  # from the reactor, outside any read of this connection
            sends.clear()  # the handshake's own write may still have been on its way
            calls = [root.callRemote("echo", n) for n in range(30)]
            defer.gatherResults(calls).chainDeferred(burst)

        reactor.callLater(0, fire)
        assert await burst == list(range(30))
        assert len(sends) <= 2, sends
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_messages_sent_outside_a_read_survive_an_immediate_lose_connection() -> None:
    # What waits for the end of the turn waits in Twisted's own queue, which loseConnection()
    # flushes before closing: nothing is held in a buffer of ours.
    factory = pb.PBClientFactory()
    port, root = await connected(factory)
    try:
        noted.clear()
        lost: defer.Deferred[None] = defer.Deferred()
        root.broker.notifyOnDisconnect(lambda: lost.callback(None))

        def fire() -> None:
            for n in range(10):
                root.callRemote("note", n, pbanswer=False)
            root.broker.transport.loseConnection()

        reactor.callLater(0, fire)
        await lost
        await wait_until(lambda: len(noted) >= 10)  # the server reads what came before the close
        assert noted == list(range(10))
    finally:
        await port.stopListening()


class Socketlike:
    """What writeThrough reads of a TCP transport, with a socket that takes ``room`` bytes,
    at most 128 KiB a call (Twisted's SEND_LIMIT), then fails with ``error`` if one is set."""

    TLS = disconnecting = _writeDisconnecting = False
    connected = True
    producer = None
    streamingProducer = False
    offset = 0

    def __init__(self, room: int, error: Exception | None = None) -> None:
        self.room, self.error = room, error
        self.dataBuffer = b""
        self._tempDataBuffer: list[bytes] = []
        self.sent = bytearray()
        self.queued: list[bytes] = []

    def writeSomeData(self, data: Any) -> int | Exception:
        if not self.room and self.error is not None:
            return self.error
        taken = bytes(data[: min(self.room, 128 * 1024)])
        self.room -= len(taken)
        self.sent += taken
        return len(taken)

    def write(self, data: bytes) -> None:
        assert type(data) is bytes
        self.queued.append(data)


def test_a_large_message_goes_out_whole_while_the_socket_takes_it() -> None:
    data = os.urandom(1_000_000)
    transport = Socketlike(room=10_000_000)
    assert writethrough.writeThrough(transport, data) == b""  # nothing left for the queue
    assert transport.sent == data


def test_what_the_socket_cannot_take_is_left_for_the_queue_in_order() -> None:
    data = os.urandom(1_000_000)
    transport = Socketlike(room=300_000)
    rest = writethrough.writeThrough(transport, data)
    assert len(transport.sent) == 300_000 and bytes(transport.sent) + rest == data


def test_an_error_midway_leaves_the_rest_for_the_queue_to_meet() -> None:
    data = os.urandom(500_000)
    transport = Socketlike(room=200_000, error=ConnectionResetError())
    rest = writethrough.writeThrough(transport, data)
    assert len(transport.sent) == 200_000 and bytes(transport.sent) + rest == data


def test_an_error_at_once_leaves_everything_for_the_queue() -> None:
    data = os.urandom(1000)
    transport = Socketlike(room=0, error=ConnectionResetError())
    assert writethrough.writeThrough(transport, data) is data
    assert transport.sent == b""


class BrokerSocketlike(Socketlike):
    """A Socketlike a broker can run on: it takes a producer, and a peer address."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer, self.streamingProducer = producer, streaming

    def unregisterProducer(self) -> None:
        self.producer = None

    def getPeer(self) -> Any:
        return None

    getHost = getPeer

    def loseConnection(self) -> None:
        self.disconnecting = True


def test_a_client_queues_its_handshake_and_writes_through_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process opening many connections at once sends their handshakes at the end of the
    # turn, together, as Twisted does (one by one, they woke the server once per connection).
    monkeypatch.setattr(banana, "canWriteThrough", lambda transport: True)
    broker = pb.PBClientFactory().buildProtocol(None)
    transport = BrokerSocketlike(room=1_000_000)
    broker.makeConnection(transport)
    broker.dataReceived(encode([b"pb", b"none"]))
    encoder = Encoder(PB_VOCABULARY)
    assert transport.queued == [encode(b"pb") + encoder.encode([b"version", 6])]
    assert transport.sent == b""
    broker.remoteForName("root").callRemote("echo", 1)  # outside any read: straight out
    assert bytes(transport.sent) == encoder.encode(
        [b"message", 1, b"root", b"echo", 1, [b"tuple", 1], [b"dictionary"]]
    )
    assert len(transport.queued) == 1


def test_a_server_writes_its_offer_and_its_handshake_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(banana, "canWriteThrough", lambda transport: True)
    broker = pb.PBServerFactory(Sizer()).buildProtocol(None)
    transport = BrokerSocketlike(room=1_000_000)
    broker.makeConnection(transport)
    encoder = Encoder(PB_VOCABULARY)
    broker.dataReceived(encode(b"pb") + encoder.encode([b"version", 6]))
    assert transport.queued == []
    assert bytes(transport.sent) == encode(list(broker.knownDialects)) + encoder.encode(
        [b"version", 6]
    )


class PausingSocketlike(BrokerSocketlike):
    """Twisted's queue, as a producer sees it: a write that takes the queue past
    ``bufferSize`` pauses the registered producer."""

    bufferSize = 2**16
    reading = True

    def pauseProducing(self) -> None:  # (reading from the socket)
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def write(self, data: bytes) -> None:
        super().write(data)
        queued = sum(len(chunk) for chunk in self.queued)
        if self.producer is not None and queued > self.bufferSize:
            self.producer.pauseProducing()


def ready_server(transport: BrokerSocketlike, monkeypatch: pytest.MonkeyPatch) -> pb.Broker:
    monkeypatch.setattr(banana, "canWriteThrough", lambda transport: True)
    broker = pb.PBServerFactory(Sizer()).buildProtocol(None)
    broker.makeConnection(transport)
    broker.dataReceived(encode(b"pb") + Encoder(PB_VOCABULARY).encode([b"version", 6]))
    return broker


def call(method: bytes, *args: object, request: int = 1) -> bytes:
    """A stock client's call of ``method`` on the root, with ``args`` (bytes and ints)."""
    return Encoder(PB_VOCABULARY).encode(
        [b"message", request, b"root", method, 1, [b"tuple", *args], [b"dictionary"]]
    )


def test_a_connection_whose_output_never_waits_registers_no_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Most of a busy server's connections: everything they send goes straight to the socket,
    # so Twisted's queue never fills and there is nothing to watch.
    transport = PausingSocketlike(room=1_000_000)
    broker = ready_server(transport, monkeypatch)
    broker.dataReceived(call(b"echo", 7))
    assert transport.queued == [] and transport.producer is None
    assert not broker._flow.attached


def test_flow_control_watches_the_queue_from_the_first_write_that_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport = PausingSocketlike(room=1_000)  # the socket takes the handshake, little more
    broker = ready_server(transport, monkeypatch)
    assert transport.producer is None
    broker.dataReceived(call(b"echo", b"x" * 100_000))  # its answer fills the socket, and waits
    assert transport.queued and transport.producer is broker._flow
    assert broker._flow.attached and broker._flow.paused  # registered before that write
    # A call read while our output waits is held, with what follows it, as before.
    broker.dataReceived(call(b"echo", 1, request=2) + call(b"echo", 2, request=3))
    assert broker._backlog is not None and len(broker._backlog) == 2
    assert not transport.reading


def test_flow_control_is_made_by_a_write_in_the_middle_of_a_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Calls read together: the first answers fill the queue while the read is dispatched,
    # and the calls after them must see it.
    transport = PausingSocketlike(room=1_000)
    broker = ready_server(transport, monkeypatch)
    calls = b"".join(call(b"echo", b"x" * 40_000, request=n) for n in range(1, 11))
    broker.dataReceived(calls)
    assert broker._flow.paused and broker._backlog
    assert len(broker._backlog) < 10
