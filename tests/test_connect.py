"""Nothing waits forever: every Deferred a client factory hands out fires.

With the root, or with why there is none: the connection was refused, the server closed it
before PB was ready, the server was killed mid-handshake, or it accepted and never spoke PB
(the handshake timeout). Real sockets on 127.0.0.1 where the case needs them, a
``MemoryReactorClock`` where it does not.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest_twisted
from support import TIMEOUT, failure_of, refusing_port, wait_until
from twisted.application.internet import ClientService
from twisted.internet import endpoints, error, protocol, reactor, task
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from spread import pb


class Root(pb.Root):
    def remote_ping(self) -> str:
        return "pong"


class Silent(protocol.Protocol):
    """A server that accepts and never says a word."""


class Slammer(protocol.Protocol):
    """A server that accepts and closes at once."""

    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


async def listening(factory: protocol.Factory) -> Any:
    return await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


def client(port: int) -> endpoints.TCP4ClientEndpoint:
    return endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=int(TIMEOUT))


# -- refused ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_asked_before_an_endpoint_connects_to_a_closed_port() -> None:
    factory = pb.PBClientFactory()
    waiting = factory.getRootObject()
    with refusing_port() as port:
        attempt = client(port).connect(factory)
        assert (await failure_of(attempt)).check(error.ConnectionRefusedError)
    assert (await failure_of(waiting)).check(error.ConnectError)


@pytest_twisted.ensureDeferred
async def test_asked_during_and_after_a_refused_connectTCP() -> None:
    factory = pb.PBClientFactory()
    with refusing_port() as port:
        reactor.connectTCP("127.0.0.1", port, factory)
        during = factory.getRootObject()
        assert (await failure_of(during)).check(error.ConnectionRefusedError)
    after = factory.getRootObject()
    assert after.called, "a factory whose attempt failed answers at once"
    assert (await failure_of(after)).check(error.ConnectionRefusedError)


@pytest_twisted.ensureDeferred
async def test_a_new_attempt_after_a_failure_is_waited_for() -> None:
    factory = pb.PBClientFactory()
    with refusing_port() as port:
        reactor.connectTCP("127.0.0.1", port, factory)
        await failure_of(factory.getRootObject())
    server = await listening(pb.PBServerFactory(Root()))
    try:
        reactor.connectTCP("127.0.0.1", server.getHost().port, factory)
        root = await factory.getRootObject().addTimeout(TIMEOUT, reactor)
        assert await root.callRemote("ping").addTimeout(TIMEOUT, reactor) == "pong"
    finally:
        factory.disconnect()
        await server.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_service_to_a_closed_port_fails_the_waiting_call() -> None:
    factory = pb.PBClientFactory()
    with refusing_port() as port:
        service = ClientService(client(port), factory, retryPolicy=lambda attempt: 3600.0)
        waiting = factory.getRootObject()
        service.startService()
        try:
            assert (await failure_of(waiting)).check(error.ConnectError)
        finally:
            await service.stopService()


# -- connected, but no PB -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_server_that_closes_at_once() -> None:
    server = await listening(protocol.Factory.forProtocol(Slammer))
    try:
        factory = pb.PBClientFactory()
        waiting = factory.getRootObject()
        await client(server.getHost().port).connect(factory).addTimeout(TIMEOUT, reactor)
        assert (await failure_of(waiting)).check(error.ConnectionDone, error.ConnectionLost)
        assert factory.getRootObject().called
    finally:
        await server.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_speaks_times_out_with_a_clear_error() -> None:
    server = await listening(protocol.Factory.forProtocol(Silent))
    try:
        port = server.getHost().port
        factory = pb.PBClientFactory(handshakeTimeout=0.5)
        waiting = factory.getRootObject()
        await client(port).connect(factory).addTimeout(TIMEOUT, reactor)
        failure = await failure_of(waiting)
        assert failure.check(error.TimeoutError)
        assert f"no PB answer from 127.0.0.1:{port} within 0.5 s" in str(failure.value)
        assert failure.check(error.TimeoutError)
        assert (await failure_of(factory.login(object()))).check(TypeError, error.TimeoutError)
    finally:
        await server.stopListening()


def test_the_handshake_timeout_runs_on_the_factory_reactor() -> None:
    clock = MemoryReactorClock()
    factory = pb.PBClientFactory(reactor=clock, handshakeTimeout=5)
    clock.connectTCP("192.0.2.1", 8787, factory)
    factory.doStart()  # what a real connector does when it starts
    waiting = factory.getRootObject()
    broker = factory.buildProtocol(None)
    transport = StringTransport()
    broker.makeConnection(transport)
    clock.advance(4.9)
    assert not waiting.called
    clock.advance(0.2)
    outcome: list[Any] = []
    waiting.addErrback(outcome.append)
    assert outcome and outcome[0].check(error.TimeoutError)
    assert "no PB answer from 192.0.2.1:8787 within 5 s" in str(outcome[0].value)
    assert transport.disconnecting


def test_no_timer_is_left_once_connected() -> None:
    clock = MemoryReactorClock()
    factory = pb.PBClientFactory(reactor=clock)
    factory.doStart()
    assert len(clock.getDelayedCalls()) == 1
    factory.clientConnectionMade(pb.PBServerFactory(Root()).buildProtocol(None))
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_server_killed_mid_handshake() -> None:
    program = textwrap.dedent(
        """
        import socket, time
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        print(server.getsockname()[1], flush=True)
        connection, _ = server.accept()
        time.sleep(3600)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        factory = pb.PBClientFactory()
        waiting = factory.getRootObject()
        await client(port).connect(factory).addTimeout(TIMEOUT, reactor)
        child.kill()
        assert (await failure_of(waiting)).check(error.ConnectionDone, error.ConnectionLost)
    finally:
        child.kill()
        child.wait(timeout=TIMEOUT)


@pytest_twisted.ensureDeferred
async def test_after_a_ready_connection_closes_the_next_call_waits_for_a_new_one() -> None:
    server = await listening(pb.PBServerFactory(Root()))
    try:
        factory = pb.PBClientFactory()
        reactor.connectTCP("127.0.0.1", server.getHost().port, factory)
        await factory.getRootObject().addTimeout(TIMEOUT, reactor)
        factory.disconnect()
        await wait_until(lambda: factory._broker is None)
        await task.deferLater(reactor, 0.05, lambda: None)  # let the connector stop
        later = factory.getRootObject()
        assert not later.called
        reactor.connectTCP("127.0.0.1", server.getHost().port, factory)
        root = await later.addTimeout(TIMEOUT, reactor)
        assert await root.callRemote("ping").addTimeout(TIMEOUT, reactor) == "pong"
        factory.disconnect()
    finally:
        await server.stopListening()


def test_a_reconnecting_factory_keeps_its_callers_waiting() -> None:
    factory = pb.PBClientFactory(reactor=MemoryReactorClock())
    factory.continueTrying = 1  # what ReconnectingClientFactory sets while it retries
    waiting = factory.getRootObject()
    factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))
    assert not waiting.called
    assert not factory.getRootObject().called


@pytest_twisted.ensureDeferred
async def test_connect_unix_to_a_missing_socket(tmp_path: Any) -> None:
    factory = pb.PBClientFactory()
    waiting = factory.getRootObject()
    reactor.connectUNIX(str(tmp_path / "nobody-listens"), factory)
    assert (await failure_of(waiting)).check(error.ConnectError)
    assert factory.getRootObject().called
