"""The PB session, driven with plain function calls: no reactor, no transport, no sockets.

Two ``PBSession`` objects are joined by lists: whatever one sends (through its ``send`` hook)
goes through banana's encoder and decoder and into the other's ``expressionReceived``.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from spread import flavors
from spread._errors import DeadReferenceError, PBConnectionLost
from spread._session import PBSession, SessionState
from spread.banana import decode, encode
from spread.jelly import InsecureJelly

LOST = Failure(ConnectionError("test closed it"))


class Echo(flavors.Root):
    def remote_echo(self, value: Any) -> Any:
        return value

    def remote_later(self) -> defer.Deferred[str]:
        self.pending: defer.Deferred[str] = defer.Deferred()
        return self.pending

    def remote_thing(self) -> Thing:
        return Thing()


class Thing(flavors.Referenceable):
    def remote_name(self) -> str:
        return "thing"


class Pair:
    """A client and a server session joined by two in-memory queues."""

    def __init__(self) -> None:
        self.to_server: list[Any] = []
        self.to_client: list[Any] = []
        self.flushes: list[Callable[[], None]] = []
        self.drops: list[str] = []
        self.client = PBSession(
            send=lambda sexp: self.to_server.append(decode(encode(sexp))),
            schedule=self.flushes.append,
            drop=lambda: self.drops.append("client"),
        )
        self.server = PBSession(
            send=lambda sexp: self.to_client.append(decode(encode(sexp))),
            schedule=self.flushes.append,
            drop=lambda: self.drops.append("server"),
        )
        self.server.setNameForLocal("root", Echo())
        self.client.connectionReady()
        self.server.connectionReady()
        self.pump()

    def pump(self) -> None:
        while self.to_server or self.to_client:
            for queue, session in ((self.to_server, self.server), (self.to_client, self.client)):
                while queue:
                    session.expressionReceived(queue.pop(0))

    def result(self, d: defer.Deferred[Any]) -> Any:
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        self.pump()
        assert outcome, "the Deferred never fired"
        return outcome[0]

    def root(self) -> Any:
        return self.client.remoteForName("root")


def test_a_session_is_driven_without_a_reactor() -> None:
    program = textwrap.dedent(
        """
        import sys
        from spread._session import PBSession
        from spread import flavors

        class Echo(flavors.Root):
            def remote_echo(self, value):
                return value

        to_server, to_client, results = [], [], []
        client = PBSession(send=to_server.append)
        server = PBSession(send=to_client.append)
        server.setNameForLocal("root", Echo())
        client.connectionReady(); server.connectionReady()
        client.remoteForName("root").callRemote("echo", "hi").addCallback(results.append)
        while to_server or to_client:
            for queue, session in ((to_server, server), (to_client, client)):
                while queue:
                    session.expressionReceived(queue.pop(0))
        assert results == ["hi"], results
        assert "twisted.internet.reactor" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_version_is_the_first_message_each_side_sends() -> None:
    sent: list[Any] = []
    session = PBSession(send=sent.append)
    session.connectionReady()
    assert sent == [[b"version", 6]]


def test_a_call_and_its_answer() -> None:
    pair = Pair()
    assert pair.result(pair.root().callRemote("echo", {"a": [1, 2.5, None]})) == {
        "a": [1, 2.5, None]
    }


def test_lifecycle_goes_negotiating_ready_closed() -> None:
    session = PBSession(send=lambda sexp: None)
    assert session.state is SessionState.NEGOTIATING and not session.disconnected
    session.connectionReady()
    assert session.state is SessionState.READY and not session.disconnected
    session.connectionLost(LOST)
    assert session.state is SessionState.CLOSED and session.disconnected == 1


def test_disconnected_is_a_read_only_view() -> None:
    session = PBSession(send=lambda sexp: None)
    with pytest.raises(AttributeError):
        session.disconnected = 1  # type: ignore[misc]


def test_closing_fails_pending_calls_and_notifies_once() -> None:
    pair = Pair()
    waiting = pair.root().callRemote("later")
    pair.pump()
    notified: list[str] = []
    pair.client.notifyOnDisconnect(lambda: notified.append("gone"))
    pair.client.connectionLost(LOST)
    pair.client.connectionLost(LOST)
    outcome = pair.result(waiting)
    assert isinstance(outcome, Failure) and outcome.check(PBConnectionLost)
    assert notified == ["gone"]


def test_calls_after_closing_raise_dead_reference() -> None:
    pair = Pair()
    root = pair.root()
    pair.client.connectionLost(LOST)
    with pytest.raises(DeadReferenceError):
        root.callRemote("echo", 1)


def test_a_malformed_message_calls_the_drop_hook() -> None:
    pair = Pair()
    pair.server.expressionReceived([b"message", b"not an id", b"root", b"echo", 1, [], []])
    assert pair.drops == ["server"]


def test_an_unknown_message_kind_is_answered() -> None:
    pair = Pair()
    pair.server.expressionReceived([b"frobnicate", 1])
    assert pair.to_client == [[b"didNotUnderstand", b"frobnicate"]]


def test_a_collected_reference_is_released_when_the_scheduler_flushes() -> None:
    pair = Pair()
    thing = pair.result(pair.root().callRemote("thing"))
    assert pair.result(thing.callRemote("name")) == "thing"
    assert len(pair.server.localObjects) == 2  # root and the thing
    del thing
    gc.collect()
    assert len(pair.flushes) == 1  # one drain scheduled, nothing sent from the finalizer
    assert pair.to_server == []
    pair.flushes.pop()()
    assert pair.to_server == [[b"decref", 1]]
    pair.pump()
    assert list(pair.server.localObjects) == [b"root"]


def test_without_a_scheduler_releases_wait_for_flush() -> None:
    pair = Pair()
    pair.client._schedule = None
    thing = pair.result(pair.root().callRemote("thing"))
    del thing
    gc.collect()
    assert pair.to_server == []
    pair.client.flushReleases()
    assert pair.to_server == [[b"decref", 1]]


@pytest.mark.parametrize("luid", [-1, 2**61 - 1, (2**61 - 1) * 3])
def test_remote_reference_ids_that_could_collide_are_refused(luid: int) -> None:
    session = PBSession(send=lambda sexp: None)
    with pytest.raises(InsecureJelly, match="out of range"):
        session.unserialize([b"tuple", [b"remote", luid]])
    assert session._imports.entries == {}
