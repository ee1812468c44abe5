"""Faults: the connection dropped at every point of a call.

A client and a server broker on in-memory transports, with every byte relayed by hand, so the
connection can be cut after any number of bytes of the call or of its answer. Wherever it is
cut, every pending call must fail with PBConnectionLost, notifyOnDisconnect callbacks must run
exactly once, and neither side may keep any reference, cache or pending call.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from spread import pb

HELD = 3  # references the server holds of the client's objects during a call


class Listener(pb.Referenceable):
    def remote_hear(self, text: str) -> str:
        return text


class Board(pb.Cacheable):
    def __init__(self) -> None:
        self.stopped = 0

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> list[int]:
        return [1, 2, 3]

    def stoppedObserving(self, perspective: Any, observer: Any) -> None:
        self.stopped += 1


class Replica(pb.RemoteCache):
    def setCopyableState(self, state: list[int]) -> None:
        self.numbers = state


pb.setUnjellyableForClass(Board, Replica)


class Service(pb.Root):
    def __init__(self) -> None:
        self.board = Board()
        self.kept: list[Any] = []

    def remote_everything(self, listeners: list[Any]) -> list[Any]:
        self.kept = listeners  # held by the server until the connection goes
        return [self.board, Listener(), "x" * 300]


class Pair:
    """A server and a client broker; bytes move only when ``relay`` says so."""

    def __init__(self) -> None:
        self.service = Service()
        self.server = pb.PBServerFactory(self.service).buildProtocol(None)
        self.client_factory = pb.PBClientFactory()
        self.client = self.client_factory.buildProtocol(None)
        self.to_client, self.to_server = StringTransport(), StringTransport()
        self.server.makeConnection(self.to_client)
        self.client.makeConnection(self.to_server)
        self.disconnects = {"client": 0, "server": 0}
        self.client.notifyOnDisconnect(lambda: self._count("client"))
        self.server.notifyOnDisconnect(lambda: self._count("server"))
        while self.to_client.value() or self.to_server.value():
            self.relay(self.to_client, self.client)
            self.relay(self.to_server, self.server)

    def _count(self, side: str) -> None:
        self.disconnects[side] += 1

    @staticmethod
    def relay(transport: StringTransport, receiver: pb.Broker, limit: int | None = None) -> int:
        """Deliver what ``transport`` holds (at most ``limit`` bytes); how many were delivered."""
        data = transport.value()[:limit]
        transport.clear()
        receiver.dataReceived(data)
        return len(data)

    def root(self) -> Any:
        return self.client.remoteForName("root")

    def cut(self) -> None:
        """The connection drops: both sides hear of it."""
        self.client.connectionLost(Failure(ConnectionError("cut")))
        self.server.connectionLost(Failure(ConnectionError("cut")))


def outcome_of(d: Any) -> list[Any]:
    outcomes: list[Any] = []
    d.addBoth(outcomes.append)
    return outcomes


def empty(broker: pb.Broker) -> bool:
    return not (
        broker._exports.locals or broker._imports.entries or broker._cacheExports.locals
        or broker._cacheImports.entries or broker.waitingForAnswers
    )


def call_bytes() -> int:
    pair = Pair()
    pair.root().callRemote("everything", [Listener() for _ in range(HELD)])
    return len(pair.to_server.value())


def answer_bytes() -> int:
    pair = Pair()
    pair.root().callRemote("everything", [Listener() for _ in range(HELD)])
    pair.relay(pair.to_server, pair.server)
    return len(pair.to_client.value())


def check_after_cut(pair: Pair, outcomes: list[Any]) -> None:
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], Failure) and outcomes[0].check(pb.PBConnectionLost)
    assert pair.disconnects == {"client": 1, "server": 1}
    assert empty(pair.client) and empty(pair.server)
    assert pair.service.board.stopped == (1 if pair.service.kept else 0)


@pytest.mark.parametrize("offset", range(0, call_bytes(), 7))
def test_cut_while_the_call_is_on_its_way(offset: int) -> None:
    pair = Pair()
    outcomes = outcome_of(pair.root().callRemote("everything", [Listener() for _ in range(HELD)]))
    pair.relay(pair.to_server, pair.server, limit=offset)
    pair.cut()
    check_after_cut(pair, outcomes)


@pytest.mark.parametrize("offset", range(0, answer_bytes(), 7))
def test_cut_while_the_answer_is_on_its_way(offset: int) -> None:
    pair = Pair()
    outcomes = outcome_of(pair.root().callRemote("everything", [Listener() for _ in range(HELD)]))
    pair.relay(pair.to_server, pair.server)
    assert len(pair.service.kept) == HELD
    pair.relay(pair.to_client, pair.client, limit=offset)
    pair.cut()
    check_after_cut(pair, outcomes)


def test_whole_answer_arrives_before_the_cut() -> None:
    pair = Pair()
    outcomes = outcome_of(pair.root().callRemote("everything", [Listener() for _ in range(HELD)]))
    pair.relay(pair.to_server, pair.server)
    pair.relay(pair.to_client, pair.client)
    assert not isinstance(outcomes[0], Failure)
    pair.cut()
    assert pair.disconnects == {"client": 1, "server": 1}
    assert empty(pair.client) and empty(pair.server)


def test_second_loss_notice_changes_nothing() -> None:
    pair = Pair()
    outcomes = outcome_of(pair.root().callRemote("everything", []))
    pair.cut()
    pair.cut()
    assert len(outcomes) == 1
    assert pair.disconnects == {"client": 1, "server": 1}


def test_calls_after_the_cut_raise_dead_reference() -> None:
    pair = Pair()
    root = pair.root()
    pair.cut()
    with pytest.raises(pb.DeadReferenceError, match="Calling Stale Broker"):
        root.callRemote("everything", [])
