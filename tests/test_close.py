"""A closed connection's memory returns at close, without waiting for the cyclic collector.

A peer can leave half a message in our decoder (megabytes of it) and disconnect. The broker
holds bound methods of itself (its dispatch table, its release queue), which would make it a
reference cycle: its buffers would stay until the next full collection. On close it lets go
of them, so reference counting frees the broker and its buffers at once. The test runs with
the cyclic collector disabled, over real TCP on 127.0.0.1.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest_twisted
from support import TIMEOUT, wait_until
from twisted.internet import endpoints, protocol, reactor, task

from spread import pb
from spread.banana import PB_VOCABULARY, Encoder, encode


class Echo(pb.Root):
    def remote_echo(self, value: Any) -> Any:
        return value


class Silent(protocol.Protocol):
    pass


@pytest_twisted.ensureDeferred
async def test_a_closed_broker_and_its_half_message_are_freed_by_reference_counting() -> None:
    factory = pb.PBServerFactory(Echo())
    brokers: list[weakref.ref[pb.Broker]] = []
    build = factory.buildProtocol

    def buildProtocol(addr: Any) -> pb.Broker:
        broker = build(addr)
        brokers.append(weakref.ref(broker))
        return broker

    factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
    server = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = await server.listen(factory)
    gc.collect()
    gc.disable()
    try:
        client = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        peer = await endpoints.connectProtocol(client, Silent()).addTimeout(TIMEOUT, reactor)
        message = Encoder(PB_VOCABULARY).encode(
            [b"message", 1, b"root", b"echo", 1, [b"tuple", [b"list"] + [[b"list"]] * 200_000],
             [b"dictionary"]]
        )
        peer.transport.write(encode(b"pb") + message[: len(message) // 2])  # type: ignore[union-attr]
        await wait_until(lambda: brokers and getattr(brokers[0](), "currentDialect", None))
        await task.deferLater(reactor, 0.2, lambda: None)  # let the half message arrive
        peer.transport.loseConnection()  # type: ignore[union-attr]
        await wait_until(lambda: brokers[0]() is None)
    finally:
        gc.enable()
        await port.stopListening()
