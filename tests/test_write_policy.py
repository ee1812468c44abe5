"""How a broker writes: no Nagle stalls, and the answers to one read leave together.

A client that fires many calls at once and awaits them together gets all their answers from
one read of the server; each answer written on its own, without TCP_NODELAY, would wait for
the client's delayed ACK (40 ms). These tests pin the two halves of the cure without timing.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest_twisted
from support import TIMEOUT
from twisted.internet import endpoints, reactor
from twisted.internet.testing import StringTransport

from spread import pb
from spread.banana import PB_VOCABULARY, Encoder, encode


class Echo(pb.Root):
    def remote_echo(self, value: Any) -> Any:
        return value


class CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def connected(calls: list[Any]) -> tuple[pb.Broker, CountingTransport, bytes]:
    """A server broker past the handshake, and ``echo`` calls with ``calls`` as arguments."""
    broker = pb.PBServerFactory(Echo()).buildProtocol(None)
    transport = CountingTransport()
    broker.makeConnection(transport)
    encoder = Encoder(PB_VOCABULARY)
    broker.dataReceived(encode(b"pb") + encoder.encode([b"version", 6]))
    wire = b"".join(
        encoder.encode([b"message", n, b"root", b"echo", 1, [b"tuple", arg], [b"dictionary"]])
        for n, arg in enumerate(calls, 1)
    )
    return broker, transport, wire


def test_answers_to_one_read_leave_in_one_write() -> None:
    broker, transport, calls = connected(list(range(50)))
    before = transport.writes
    broker.dataReceived(calls)
    assert transport.writes == before + 1
    assert transport.value().count(b"\x1b\x87") >= 50  # fifty answers in it ("answer" symbol)


def test_a_client_sends_its_dialect_and_version_in_one_write() -> None:
    client = pb.PBClientFactory().buildProtocol(None)
    transport = CountingTransport()
    client.makeConnection(transport)
    client.dataReceived(encode([b"pb", b"none"]))
    assert transport.writes == 1  # as from Twisted, which queues both for one send
    assert transport.value() == encode(b"pb") + Encoder(PB_VOCABULARY).encode([b"version", 6])


def test_a_server_answers_a_dialect_choice_and_the_calls_after_it_in_one_write() -> None:
    broker = pb.PBServerFactory(Echo()).buildProtocol(None)
    transport = CountingTransport()
    broker.makeConnection(transport)
    encoder = Encoder(PB_VOCABULARY)
    calls = b"".join(
        encoder.encode([b"message", n, b"root", b"echo", 1, [b"tuple", n], [b"dictionary"]])
        for n in range(1, 6)
    )
    before = transport.writes
    broker.dataReceived(encode(b"pb") + encoder.encode([b"version", 6]) + calls)
    assert transport.writes == before + 1  # the version and five answers
    assert transport.value().count(b"\x1b\x87") == 5


def test_a_batch_larger_than_the_queue_limit_is_written_as_it_grows() -> None:
    broker, transport, calls = connected([b"x" * 40_000] * 10)
    before = transport.writes
    broker.dataReceived(calls)  # 400 KB of answers, over maxQueuedOutput (64 KiB)
    assert transport.writes - before >= 5  # every second 40 KB answer passes 64 KiB


@pytest_twisted.ensureDeferred
async def test_tcp_connections_turn_nagle_off_on_both_sides() -> None:
    server_factory = pb.PBServerFactory(Echo())
    brokers: list[pb.Broker] = []
    build = server_factory.buildProtocol
    server_factory.buildProtocol = lambda addr: brokers.append(build(addr)) or brokers[-1]  # type: ignore[method-assign]
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        server_factory
    )
    client_factory = pb.PBClientFactory()
    try:
        reactor.connectTCP("127.0.0.1", port.getHost().port, client_factory)
        root = await client_factory.getRootObject().addTimeout(TIMEOUT, reactor)
        assert await root.callRemote("echo", 1).addTimeout(TIMEOUT, reactor) == 1
        for broker in (brokers[0], root.broker):
            handle = broker.transport.getHandle()
            assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client_factory.disconnect()
        await port.stopListening()


def test_with_our_output_full_answers_are_read_and_anything_else_is_held() -> None:
    broker, transport, _ = connected([])
    encoder = Encoder(PB_VOCABULARY)
    results: list[Any] = []
    call = broker.sendRemoteCall(b"", None, b"root", b"echo", (1,), {})  # request 1
    call.addCallback(results.append)
    broker._flow.pauseProducing()  # as the transport does when its buffer passes the limit
    broker.dataReceived(encoder.encode([b"answer", 1, 7]))
    assert results == [7]  # an answer makes no output: read and handled at once
    assert transport.producerState == "producing"
    bogus = encoder.encode([b"bogus"])  # answered didNotUnderstand: it would make output
    broker.dataReceived(bogus + encoder.encode([b"answer", 2, 8]) + bogus)
    assert len(broker._backlog) == 3  # held in order, the answer after it too
    assert transport.producerState == "paused"  # and nothing more is read
    sent = len(transport.value())
    broker._flow.resumeProducing()  # the peer read our output
    assert not broker._backlog
    assert transport.producerState == "producing"
    assert transport.value()[sent:].count(b"didNotUnderstand") == 2
