"""The spread dialect: what two spread peers add to PB (here, cancellation that reaches the
callee), and that a Twisted peer on either side sees exactly Twisted's protocol."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import pytest_twisted
from support import ServerProgram, failure_of, wait_until
from test_pb import Loop
from twisted.internet import defer, endpoints, reactor, task, threads
from twisted.logger import LogLevel, capturedLogs
from twisted.spread import pb as tpb

from spread import pb


class Slow(pb.Root):
    """Methods that answer only when told to, recording what happened to them."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.pending: list[defer.Deferred[Any]] = []

    def remote_wait(self) -> defer.Deferred[str]:
        d: defer.Deferred[str] = defer.Deferred(lambda _: self.cancelled.append("deferred"))
        self.pending.append(d)
        return d

    async def remote_sleepy(self) -> str:
        try:
            await defer.Deferred()
        except defer.CancelledError:
            self.cancelled.append("coroutine")
            raise
        return "woke"

    def remote_stubborn(self) -> defer.Deferred[str]:
        # A canceller that answers anyway: the answer crosses the cancel.
        d: defer.Deferred[str] = defer.Deferred(lambda d: d.callback("answered anyway"))
        return d

    def remote_echo(self, value: Any) -> Any:
        return value


def errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_level") in (LogLevel.error, LogLevel.critical)]


@pytest.mark.parametrize("method", ["wait", "sleepy"])
def test_cancelling_a_call_cancels_the_callee(method: str) -> None:
    root_object = Slow()
    loop = Loop(root_object)
    root = loop.root()
    assert loop.client.spreadDialect
    with capturedLogs() as events:
        d = root.callRemote(method)
        loop.pump.flush()
        d.cancel()
        outcome = loop.result(d)
        loop.pump.flush()
    assert outcome.check(defer.CancelledError)
    assert root_object.cancelled == ["deferred" if method == "wait" else "coroutine"]
    assert loop.server._answering == {} and loop.server._cancelled == set()
    assert not errors(events)  # nobody waits for the cancelled answer: nothing to report
    assert loop.call("echo", 1) == 1


def test_a_timeout_is_a_cancel_that_reaches_the_callee() -> None:
    clock = task.Clock()
    root_object = Slow()
    loop = Loop(root_object)
    root = loop.root()
    d = root.callRemote("wait").addTimeout(5, clock)
    loop.pump.flush()
    clock.advance(5)
    outcome = loop.result(d)
    assert outcome.check(defer.TimeoutError)
    assert root_object.cancelled == ["deferred"]
    assert loop.call("echo", 2) == 2


def test_an_answer_that_crosses_the_cancel_is_dropped_quietly() -> None:
    loop = Loop(Slow())
    root = loop.root()
    d = root.callRemote("stubborn")
    loop.pump.flush()
    d.cancel()
    assert loop.result(d).check(defer.CancelledError)
    loop.pump.flush()
    assert loop.client.waitingForAnswers == {}
    assert loop.call("echo", 3) == 3


@pytest.mark.parametrize("twisted_side", ["server", "client"])
def test_with_a_twisted_peer_the_cancel_stays_local(twisted_side: str) -> None:
    if twisted_side == "server":
        server_pb, client_pb = tpb, pb
    else:
        server_pb, client_pb = pb, tpb

    class Root(server_pb.Root):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.cancelled: list[str] = []

        def remote_wait(self) -> defer.Deferred[str]:
            return defer.Deferred(lambda _: self.cancelled.append("deferred"))

        def remote_echo(self, value: Any) -> Any:
            return value

    root_object = Root()
    loop = mixedLoop(server_pb, client_pb, root_object)
    ours = loop.client if client_pb is pb else loop.server
    root = loop.result(loop.client_factory.getRootObject())
    assert not ours.spreadDialect and ours.currentDialect == b"pb"
    d = root.callRemote("wait")
    loop.pump.flush()
    d.cancel()
    assert loop.result(d).check(defer.CancelledError)
    loop.pump.flush()
    assert root_object.cancelled == []  # PB has no way to say it: the callee goes on
    assert loop.result(root.callRemote("echo", 4)) == 4


def mixedLoop(server_pb: Any, client_pb: Any, root_object: Any) -> Loop:
    """An in-memory pair whose server and client each come from ``spread.pb`` or Twisted's."""
    return Loop.between(server_pb.PBServerFactory(root_object), client_pb.PBClientFactory())


def test_a_cancel_in_the_pb_dialect_is_not_understood_as_in_twisted() -> None:
    loop = mixedLoop(pb, tpb, Slow())
    loop.result(loop.client_factory.getRootObject())
    sent: list[Any] = []
    loop.server.sendEncoded = sent.append  # type: ignore[method-assign]
    loop.server.expressionReceived([b"cancel", 1])
    assert sent == [[b"didNotUnderstand", b"cancel"]]


# -- dead peers -------------------------------------------------------------------------------


def keptAlive(clock: task.Clock, root_object: Any, **timings: float) -> Loop:
    """A spread pair on ``clock`` whose client factory has these timings."""
    return Loop.between(
        pb.PBServerFactory(root_object, reactor=clock),
        pb.PBClientFactory(reactor=clock, **timings),
    )


def test_a_quiet_peer_that_answers_pings_is_kept() -> None:
    clock = task.Clock()
    loop = keptAlive(clock, Slow(), keepaliveInterval=1.0, keepaliveTimeout=2.0)
    root = loop.root()
    for _ in range(10):
        clock.advance(1.0)
        loop.pump.flush()
    assert not loop.client.disconnected
    assert loop.result(root.callRemote("echo", 5)) == 5


def test_a_frozen_peer_is_dropped_and_its_calls_fail() -> None:
    clock = task.Clock()
    loop = keptAlive(clock, Slow(), keepaliveInterval=1.0, keepaliveTimeout=2.0)
    root = loop.root()
    gone: list[object] = []
    root.notifyOnDisconnect(gone.append)
    pending = root.callRemote("wait")  # the server froze: nothing it sends arrives any more
    outcome: list[Any] = []
    pending.addBoth(outcome.append)
    clock.advance(1.0)  # quiet for the interval: a ping goes out, unanswered
    assert not loop.client.disconnected
    clock.advance(2.0)  # and nothing within the timeout: the client aborts the connection
    assert loop.client.transport.disconnecting
    loop.pump.flush()  # (in memory the close takes effect on the next pump)
    assert loop.client.disconnected
    assert outcome[0].check(pb.PBConnectionLost)
    assert gone == [root]


def test_a_long_call_is_not_a_dead_peer() -> None:
    clock = task.Clock()
    server_root = Slow()
    loop = keptAlive(clock, server_root, keepaliveInterval=1.0, keepaliveTimeout=1.0)
    root = loop.root()
    d = root.callRemote("wait")
    for _ in range(20):  # the call runs for 20 s; the server's reactor answers the pings
        clock.advance(1.0)
        loop.pump.flush()
    server_root.pending[0].callback("done")
    assert loop.result(d) == "done"


def test_keepalive_timings_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keepaliveInterval"):
        pb.PBClientFactory(keepaliveInterval=0)
    with pytest.raises(ValueError, match="keepaliveTimeout"):
        pb.PBServerFactory(Slow(), keepaliveInterval=1, keepaliveTimeout=-1)


def test_with_a_twisted_peer_the_socket_keeps_alive_instead() -> None:
    import socket

    from spread._keepalive import tcpKeepalive

    class Transport:
        def __init__(self) -> None:
            self.sock = socket.socket()
            self.keepalive: list[int] = []

        def setTcpKeepAlive(self, on: int) -> None:
            self.keepalive.append(on)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, on)

        def getHandle(self) -> socket.socket:
            return self.sock

    transport = Transport()
    with transport.sock:
        assert tcpKeepalive(transport, 30, 9)
        assert transport.keepalive == [1]
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
    assert not tcpKeepalive(object(), 30, 9)


@pytest_twisted.ensureDeferred
async def test_a_frozen_server_process_is_noticed() -> None:
    server = ServerProgram("echo_server.py", "tcp:0:interface=127.0.0.1")
    try:
        factory = pb.PBClientFactory(keepaliveInterval=0.5, keepaliveTimeout=1.0)
        await endpoints.clientFromString(reactor, server.endpoint).connect(factory)
        root = await factory.getRootObject()
        assert await root.callRemote("echo", "alive") == "alive"
        gone: list[object] = []
        root.notifyOnDisconnect(gone.append)
        os.kill(server.process.pid, signal.SIGSTOP)  # frozen: the socket stays open
        try:
            failure = await failure_of(root.callRemote("echo", "anyone there?"))
            assert failure.check(pb.PBConnectionLost)
            await wait_until(lambda: gone)
            assert gone == [root]
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
    finally:
        server.stop()


def test_a_factory_call_timeout_applies_to_every_call_and_cancels_the_callee() -> None:
    clock = task.Clock()
    server_root = Slow()
    loop = keptAlive(clock, server_root, callTimeout=3.0)
    root = loop.root()
    assert loop.result(root.callRemote("echo", 6)) == 6  # an answer in time is untouched
    d = root.callRemote("wait")
    loop.pump.flush()
    clock.advance(3.0)
    assert loop.result(d).check(defer.TimeoutError)
    assert server_root.cancelled == ["deferred"]
    with pytest.raises(ValueError, match="callTimeout"):
        pb.PBClientFactory(callTimeout=0)


SLOW_SERVICE = '''
from twisted.internet import defer

from spread import pb


class Slow(pb.Root):
    def remote_wait(self):
        print("waiting", flush=True)
        return defer.Deferred(lambda _: print("cancelled", flush=True))

    def remote_echo(self, value):
        return value
'''


@pytest_twisted.ensureDeferred
async def test_between_two_spread_processes_a_cancel_reaches_the_callee(tmp_path: Any) -> None:
    (tmp_path / "slow.py").write_text(SLOW_SERVICE)
    server = ServerProgram(
        "spread", "serve", "slow:Slow", "--listen", "tcp:0:interface=127.0.0.1",
        cwd=tmp_path, module=True,
    )
    try:
        factory = pb.PBClientFactory()
        await endpoints.clientFromString(reactor, server.endpoint).connect(factory)
        root = await factory.getRootObject()
        d = root.callRemote("wait")
        await threads.deferToThread(server.expect, "^waiting$")
        d.cancel()
        assert (await failure_of(d)).check(defer.CancelledError)
        await threads.deferToThread(server.expect, "^cancelled$")  # its canceller ran
        assert await root.callRemote("echo", "still here") == "still here"
        factory.disconnect()
    finally:
        server.stop()
