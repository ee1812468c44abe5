"""spread and a real twisted.spread peer on one wire, both ways.

A Twisted PB program runs in its own process (tests/peers/), on 127.0.0.1 at an ephemeral port:

- spread client -> Twisted server: the test connects to peers/twisted_server.py and calls its
  root, whose methods echo, describe what Twisted decoded, call back our references, copy Ponds,
  fail in chosen ways or never answer.
- Twisted client -> spread server: the test serves SpreadRoot below; peers/twisted_client.py
  connects and hands it an Agent, through which the test makes the Twisted side call us and
  report what Twisted saw.

Peers shared by many tests live for the module; tests that kill their peer get their own.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from support import PEERS, TIMEOUT, PeerProcess, failure_of
from twisted.internet import defer, endpoints, reactor, task

from spread import pb
from spread.jelly import InsecureJelly

sys.path.insert(0, str(PEERS))
import spread_types

pytestmark = pytest.mark.interop

BASIC_VALUES: dict[str, object] = {
    "str": "héllo, ☃",
    "empty-str": "",
    "bytes": b"\x00\xff raw",
    "int": 42,
    "negative-int": -300,
    "int-2**31": 2**31,
    "big-int": 2**100,
    "big-negative-int": -(2**70),
    "float": 1.5,
    "tiny-negative-float": -2.25e-10,
    "infinity": float("inf"),
    "None": None,
    "True": True,
    "False": False,
    "list": [1, "two", b"three"],
    "tuple": (1, (2, 3)),
    "dict": {"a": 1, 2: [b"x"]},
    "set": {1, 2, 3},
    "frozenset": frozenset({"x"}),
    "datetime": datetime(2026, 11, 23, 12, 30, 15, 250),
    "date": date(2026, 11, 23),
    "time": time(23, 59, 1, 5),
    "timedelta": timedelta(days=1, seconds=5, microseconds=7),
    "Decimal": Decimal("3.14159"),
    "negative-Decimal": Decimal("-0.001"),
    "nested": {"k": [(1, frozenset({2})), None, {"inner": b""}]},
}
basic_values = pytest.mark.parametrize(
    "value", list(BASIC_VALUES.values()), ids=list(BASIC_VALUES.keys())
)


# ---------------------------------------------------------------------------------------------
# Helpers


async def call(ref: Any, method: str, *args: object, **kwargs: object) -> Any:
    """``ref.callRemote(...)``, bounded by TIMEOUT so a lost answer fails the test."""
    return await ref.callRemote(method, *args, **kwargs).addTimeout(TIMEOUT, reactor)


def assert_same(received: object, sent: object) -> None:
    assert type(received) is type(sent)
    assert received == sent


def type_name(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


class Disconnects:
    """Counts a reference's disconnect notifications and lets a test wait for the first."""

    def __init__(self, ref: Any) -> None:
        self.count = 0
        self.first: defer.Deferred[None] = defer.Deferred()
        ref.notifyOnDisconnect(self._notified)

    def _notified(self, _ref: object) -> None:
        self.count += 1
        if not self.first.called:
            self.first.callback(None)

    async def wait(self) -> None:
        await self.first.addTimeout(TIMEOUT, reactor)


# ---------------------------------------------------------------------------------------------
# A spread client against a Twisted server


class Connection:
    """One spread client connection to a peer's root, closed at the end of the test."""

    def __init__(self, root: Any, factory: pb.PBClientFactory) -> None:
        self.root = root
        self.factory = factory
        self.closed: defer.Deferred[None] = defer.Deferred()
        root.notifyOnDisconnect(lambda _ref: self.closed.called or self.closed.callback(None))

    @classmethod
    async def open(cls, description: str) -> Connection:
        """Connect to the client endpoint ``description`` and get the root object there."""
        factory = pb.PBClientFactory()
        endpoint = endpoints.clientFromString(reactor, description)
        await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
        root = await factory.getRootObject().addTimeout(TIMEOUT, reactor)
        return cls(root, factory)

    async def close(self) -> None:
        if not self.closed.called:
            self.factory.disconnect()
        await self.closed.addTimeout(TIMEOUT, reactor)


# twisted_server, the endpoint of the Twisted PB server (peers/twisted_server.py) that this
# module's non-destructive tests share, comes from conftest.py.


@pytest_twisted.async_yield_fixture
async def twisted_root(twisted_server: str) -> AsyncIterator[Any]:
    connection = await Connection.open(twisted_server)
    yield connection.root
    await connection.close()


@pytest_twisted.async_yield_fixture
async def doomed_twisted_server() -> AsyncIterator[tuple[PeerProcess, Any]]:
    """A Twisted server of this test's own (the test kills it) and our root reference to it."""
    peer = PeerProcess.spawn("twisted_server.py")
    port = (await peer.line("PORT ")).split()[1]
    connection = await Connection.open(f"tcp:host=127.0.0.1:port={port}")
    try:
        yield peer, connection.root
    finally:
        peer.kill()
        await peer.ended()
        await connection.close()


@basic_values
@pytest_twisted.ensureDeferred
async def test_twisted_server_echoes_basic_type(twisted_root: Any, value: object) -> None:
    assert_same(await call(twisted_root, "echo", value), value)


@basic_values
@pytest_twisted.ensureDeferred
async def test_twisted_server_decodes_basic_type(twisted_root: Any, value: object) -> None:
    described = await call(twisted_root, "describe", value)
    assert described == {"type": type_name(value), "repr": repr(value)}


@pytest_twisted.ensureDeferred
async def test_twisted_server_receives_keyword_arguments(twisted_root: Any) -> None:
    described = await call(twisted_root, "describeCall", 1, "a", flag=True, name="x")
    assert described == {"args": [1, "a"], "kwargs": {"flag": True, "name": "x"}}


@pytest_twisted.ensureDeferred
async def test_twisted_server_keeps_shared_references(twisted_root: Any) -> None:
    shared = [1]
    echoed = await call(twisted_root, "echo", [shared, shared])
    assert echoed == [[1], [1]]
    assert echoed[0] is echoed[1]


@pytest_twisted.ensureDeferred
async def test_twisted_server_calls_back_our_referenceable(twisted_root: Any) -> None:
    counter = spread_types.Counter()
    assert await call(twisted_root, "callBack", counter, "increment", 5) == 5
    assert counter.value == 5


@pytest_twisted.ensureDeferred
async def test_our_referenceable_comes_back_from_twisted_as_itself(twisted_root: Any) -> None:
    # The peer keeps the reference between calls: a Twisted peer that returns a reference it
    # got in the same call sends its decref before the answer, and the answer then names an
    # object the sender has already let go (Twisted does this to itself too).
    counter = spread_types.Counter()
    await call(twisted_root, "keep", counter)
    assert await call(twisted_root, "kept") is counter


@pytest_twisted.ensureDeferred
async def test_reference_twisted_released_before_answering_fails_cleanly(
    twisted_root: Any,
) -> None:
    # Twisted answers echo(ref) after sending the decref for ref, so its answer names an
    # object we have let go. Twisted itself then answers None; we fail the call instead.
    failure = await failure_of(twisted_root.callRemote("echo", spread_types.Counter()))
    assert failure.check(InsecureJelly)
    assert await call(twisted_root, "echo", 1) == 1


@pytest_twisted.ensureDeferred
async def test_spread_client_calls_twisted_referenceable(twisted_root: Any) -> None:
    counter = await call(twisted_root, "counter")
    assert await call(counter, "increment") == 1
    assert await call(counter, "increment", 2) == 3


@pytest_twisted.ensureDeferred
async def test_twisted_server_receives_our_copyable(twisted_root: Any) -> None:
    counted = await call(twisted_root, "pondCount", spread_types.Pond(3, 4))
    assert counted == {"type": "twisted_types.PondCopy", "origin": "spread", "count": 7}


@pytest_twisted.ensureDeferred
async def test_spread_client_receives_twisted_copyable(twisted_root: Any) -> None:
    pond = await call(twisted_root, "makePond", 3, 4)
    assert isinstance(pond, spread_types.PondCopy)
    assert (pond.count(), pond.origin) == (7, "twisted")


@pytest_twisted.ensureDeferred
async def test_twisted_pb_error_reaches_spread_caller(twisted_root: Any) -> None:
    failure = await failure_of(twisted_root.callRemote("fail", "pb", "no frogs"))
    assert failure.check("twisted_types.PeerError")
    assert failure.check(pb.Error)
    assert failure.getErrorMessage() == "no frogs"


@pytest_twisted.ensureDeferred
async def test_twisted_pb_error_from_deferred_reaches_spread_caller(twisted_root: Any) -> None:
    failure = await failure_of(twisted_root.callRemote("fail", "deferred", "later"))
    assert failure.check("twisted_types.PeerError")
    assert failure.getErrorMessage() == "later"


@pytest_twisted.ensureDeferred
async def test_twisted_other_exception_reaches_spread_caller(twisted_root: Any) -> None:
    failure = await failure_of(twisted_root.callRemote("fail", "value", "bad value"))
    assert failure.check("builtins.ValueError")
    assert not failure.check(pb.Error)
    assert failure.getErrorMessage() == "bad value"


@pytest_twisted.ensureDeferred
async def test_awaited_twisted_error_raises_remote_error(twisted_root: Any) -> None:
    with pytest.raises(pb.RemoteError) as raised:
        await call(twisted_root, "fail", "pb", "no frogs")
    assert raised.value.remoteType == b"twisted_types.PeerError"
    assert raised.value.args[0] == "no frogs"


@pytest_twisted.ensureDeferred
async def test_unknown_method_on_twisted_server(twisted_root: Any) -> None:
    failure = await failure_of(twisted_root.callRemote("noSuchThing"))
    assert failure.check("twisted.spread.flavors.NoSuchMethod")
    assert "noSuchThing" in failure.getErrorMessage()


@pytest_twisted.ensureDeferred
async def test_twisted_server_refuses_unregistered_class(twisted_root: Any) -> None:
    failure = await failure_of(twisted_root.callRemote("echo", spread_types.Stranger()))
    assert failure.check("twisted.spread.jelly.InsecureJelly")
    assert "spread_types" in failure.getErrorMessage()


@pytest_twisted.ensureDeferred
async def test_twisted_connection_survives_refused_class(twisted_root: Any) -> None:
    await failure_of(twisted_root.callRemote("echo", spread_types.Stranger()))
    assert await call(twisted_root, "echo", "still here") == "still here"


@pytest_twisted.ensureDeferred
async def test_spread_client_refuses_unregistered_class_in_answer(twisted_root: Any) -> None:
    failure = await failure_of(twisted_root.callRemote("stranger"))
    assert failure.check(InsecureJelly)
    assert "twisted_types.Stranger" in failure.getErrorMessage()


@pytest_twisted.ensureDeferred
async def test_pending_call_fails_when_twisted_server_dies(
    doomed_twisted_server: tuple[PeerProcess, Any],
) -> None:
    peer, root = doomed_twisted_server
    pending = root.callRemote("hang")
    peer.kill()
    failure = await failure_of(pending)
    assert failure.check(pb.PBConnectionLost)


@pytest_twisted.ensureDeferred
async def test_disconnect_notified_once_when_twisted_server_dies(
    doomed_twisted_server: tuple[PeerProcess, Any],
) -> None:
    peer, root = doomed_twisted_server
    disconnects = Disconnects(root)
    peer.kill()
    await disconnects.wait()
    await peer.ended()
    await task.deferLater(reactor, 0, lambda: None)  # let any duplicate notification run
    assert disconnects.count == 1


@pytest_twisted.ensureDeferred
async def test_dont_notify_on_disconnect_cancels_notification(
    doomed_twisted_server: tuple[PeerProcess, Any],
) -> None:
    peer, root = doomed_twisted_server
    cancelled = Disconnects(root)
    root.dontNotifyOnDisconnect(cancelled._notified)
    witness = Disconnects(root)
    peer.kill()
    await witness.wait()
    assert cancelled.count == 0


@pytest_twisted.ensureDeferred
async def test_call_after_twisted_server_died_raises_dead_reference(
    doomed_twisted_server: tuple[PeerProcess, Any],
) -> None:
    peer, root = doomed_twisted_server
    disconnects = Disconnects(root)
    peer.kill()
    await disconnects.wait()
    with pytest.raises(pb.DeadReferenceError):
        root.callRemote("echo", 1)


# ---------------------------------------------------------------------------------------------
# A Twisted client against a spread server


class SpreadRoot(pb.Root):
    """peers/twisted_server.py's PeerRoot, in spread, plus async methods and ``attach``."""

    def __init__(self) -> None:
        self.received: list[object] = []
        self.attached: defer.DeferredQueue[Any] = defer.DeferredQueue()
        self.unanswered: list[defer.Deferred[Any]] = []

    def remote_attach(self, agent: Any) -> None:
        """A Twisted client hands over its Agent, the test's way to drive it."""
        self.attached.put(agent)

    def remote_echo(self, value: object) -> object:
        self.received.append(value)
        return value

    def remote_describeCall(self, *args: object, **kwargs: object) -> dict[str, object]:
        return {"args": list(args), "kwargs": kwargs}

    def remote_callBack(self, ref: Any, method: str, *args: object) -> Any:
        return ref.callRemote(method, *args)

    def remote_pondCount(self, pond: spread_types.PondCopy) -> int:
        self.received.append(pond)
        return pond.count()

    def remote_makePond(self, frogs: int, toads: int) -> spread_types.Pond:
        return spread_types.Pond(frogs, toads)

    def remote_fail(self, kind: str, message: str) -> Any:
        if kind == "pb":
            raise spread_types.SpreadError(message)
        raise ValueError(message)

    async def remote_asyncEcho(self, value: object) -> object:
        await task.deferLater(reactor, 0, lambda: None)
        return value

    async def remote_asyncFail(self, message: str) -> None:
        await task.deferLater(reactor, 0, lambda: None)
        raise spread_types.SpreadError(message)


class TwistedClients:
    """Twisted client processes attached to one spread server, all finished at teardown."""

    def __init__(self, root: SpreadRoot, port: str) -> None:
        self.root = root
        self.port = port
        self.peers: list[PeerProcess] = []
        self.shared: tuple[Any, Disconnects] | None = None

    async def spawn(self) -> tuple[PeerProcess, Any]:
        """A new Twisted client process and the Agent it attached."""
        peer = PeerProcess.spawn("twisted_client.py", self.port)
        self.peers.append(peer)
        await peer.line("ATTACHED")
        agent = await self.root.attached.get().addTimeout(TIMEOUT, reactor)
        return peer, agent

    async def shared_agent(self) -> Any:
        """The Agent shared by non-destructive tests; a fresh one if a test broke the last."""
        if self.shared is None or self.shared[1].count:
            _peer, agent = await self.spawn()
            self.shared = (agent, Disconnects(agent))
        return self.shared[0]

    async def finish(self) -> None:
        for peer in self.peers:
            await peer.finish()


async def serve_spread(**factory_options: Any) -> AsyncIterator[TwistedClients]:
    """Serve a SpreadRoot on 127.0.0.1 for Twisted clients; stop them and it afterwards."""
    root = SpreadRoot()
    endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    port = await endpoint.listen(pb.PBServerFactory(root, **factory_options))
    clients = TwistedClients(root, str(port.getHost().port))
    try:
        yield clients
    finally:
        await clients.finish()
        await port.stopListening()


@pytest_twisted.async_yield_fixture(scope="module")
async def spread_server() -> AsyncIterator[TwistedClients]:
    async for clients in serve_spread():
        yield clients


@pytest_twisted.async_yield_fixture
async def indiscreet_spread_server() -> AsyncIterator[TwistedClients]:
    """A spread server that sends tracebacks along with errors (unsafeTracebacks=True)."""
    async for clients in serve_spread(unsafeTracebacks=True):
        yield clients


@pytest.fixture
def spread_root(spread_server: TwistedClients) -> SpreadRoot:
    spread_server.root.received.clear()
    return spread_server.root


@pytest_twisted.async_fixture
async def agent(spread_server: TwistedClients, spread_root: SpreadRoot) -> Any:
    return await spread_server.shared_agent()


@pytest_twisted.async_fixture
async def doomed_agent(spread_server: TwistedClients) -> tuple[PeerProcess, Any]:
    """A Twisted client of this test's own (the test kills it) and its Agent."""
    return await spread_server.spawn()


@basic_values
@pytest_twisted.ensureDeferred
async def test_twisted_client_decodes_basic_type_from_spread(agent: Any, value: object) -> None:
    report = await call(agent, "call", "echo", value)
    assert report == {"ok": True, "type": type_name(value), "repr": repr(value)}


@basic_values
@pytest_twisted.ensureDeferred
async def test_spread_server_decodes_basic_type_from_twisted(
    agent: Any, spread_root: SpreadRoot, value: object
) -> None:
    await call(agent, "call", "echo", value)
    [received] = spread_root.received
    assert_same(received, value)


@basic_values
@pytest_twisted.ensureDeferred
async def test_twisted_client_answers_basic_type(agent: Any, value: object) -> None:
    assert_same(await call(agent, "echo", value), value)


@pytest_twisted.ensureDeferred
async def test_spread_server_receives_keyword_arguments(agent: Any) -> None:
    report = await call(agent, "call", "describeCall", 1, flag=True)
    assert report["repr"] == repr({"args": [1], "kwargs": {"flag": True}})


@pytest_twisted.ensureDeferred
async def test_spread_server_calls_back_twisted_referenceable(agent: Any) -> None:
    report = await call(agent, "passCounter", 5)
    assert report == {"ok": True, "type": "builtins.int", "repr": "5"}


@pytest_twisted.ensureDeferred
async def test_twisted_client_calls_back_our_referenceable(agent: Any) -> None:
    counter = spread_types.Counter()
    assert await call(agent, "callBack", counter, "increment", 2) == 2
    assert counter.value == 2


@pytest_twisted.ensureDeferred
async def test_our_referenceable_comes_back_from_twisted_client_as_itself(agent: Any) -> None:
    counter = spread_types.Counter()
    await call(agent, "keep", counter)
    assert await call(agent, "kept") is counter


@pytest_twisted.ensureDeferred
async def test_spread_server_receives_twisted_copyable(agent: Any, spread_root: SpreadRoot) -> None:
    report = await call(agent, "sendPond", 3, 4)
    assert report["repr"] == "7"
    [pond] = spread_root.received
    assert isinstance(pond, spread_types.PondCopy)
    assert pond.origin == "twisted"


@pytest_twisted.ensureDeferred
async def test_twisted_client_receives_spread_copyable(agent: Any) -> None:
    report = await call(agent, "call", "makePond", 3, 4)
    assert report == {
        "ok": True,
        "type": "twisted_types.PondCopy",
        "repr": "PondCopy(count=7, origin='spread')",
    }


@pytest_twisted.ensureDeferred
async def test_spread_pb_error_reaches_twisted_caller(agent: Any) -> None:
    report = await call(agent, "call", "fail", "pb", "no frogs")
    assert (report["type"], report["message"]) == ("spread_types.SpreadError", "no frogs")


@pytest_twisted.ensureDeferred
async def test_spread_other_exception_reaches_twisted_caller(agent: Any) -> None:
    report = await call(agent, "call", "fail", "value", "bad value")
    assert (report["type"], report["message"]) == ("builtins.ValueError", "bad value")


@pytest_twisted.ensureDeferred
async def test_spread_server_keeps_tracebacks_from_twisted_caller(agent: Any) -> None:
    report = await call(agent, "call", "fail", "value", "bad value")
    assert "Traceback unavailable" in report["traceback"]
    assert "test_interop.py" not in report["traceback"]


@pytest_twisted.ensureDeferred
async def test_spread_server_sends_tracebacks_when_unsafe(
    indiscreet_spread_server: TwistedClients,
) -> None:
    _peer, agent = await indiscreet_spread_server.spawn()
    report = await call(agent, "call", "fail", "value", "bad value")
    assert "test_interop.py" in report["traceback"]
    assert "remote_fail" in report["traceback"]


@pytest_twisted.ensureDeferred
async def test_unknown_method_on_spread_server(agent: Any) -> None:
    report = await call(agent, "call", "noSuchThing")
    assert report["type"] == "twisted.spread.flavors.NoSuchMethod"
    assert "noSuchThing" in report["message"]


@pytest_twisted.ensureDeferred
async def test_unknown_method_on_twisted_client(agent: Any) -> None:
    failure = await failure_of(agent.callRemote("noSuchThing"))
    assert failure.check("twisted.spread.flavors.NoSuchMethod")
    assert "noSuchThing" in failure.getErrorMessage()


@pytest_twisted.ensureDeferred
async def test_spread_server_refuses_unregistered_class(agent: Any) -> None:
    report = await call(agent, "sendStranger")
    assert report["type"] == "twisted.spread.jelly.InsecureJelly"
    assert "twisted_types.Stranger" in report["message"]


@pytest_twisted.ensureDeferred
async def test_spread_connection_survives_refused_class(agent: Any) -> None:
    await call(agent, "sendStranger")
    report = await call(agent, "call", "echo", "still here")
    assert report["repr"] == repr("still here")


@pytest_twisted.ensureDeferred
async def test_async_remote_method_answers_twisted_caller(agent: Any) -> None:
    report = await call(agent, "call", "asyncEcho", "hi")
    assert report == {"ok": True, "type": "builtins.str", "repr": "'hi'"}


@pytest_twisted.ensureDeferred
async def test_async_remote_method_error_reaches_twisted_caller(agent: Any) -> None:
    report = await call(agent, "call", "asyncFail", "too late")
    assert (report["type"], report["message"]) == ("spread_types.SpreadError", "too late")


@pytest_twisted.ensureDeferred
async def test_pending_call_fails_when_twisted_client_dies(
    doomed_agent: tuple[PeerProcess, Any],
) -> None:
    peer, agent = doomed_agent
    pending = agent.callRemote("hang")
    peer.kill()
    failure = await failure_of(pending)
    assert failure.check(pb.PBConnectionLost)


@pytest_twisted.ensureDeferred
async def test_disconnect_notified_once_when_twisted_client_dies(
    doomed_agent: tuple[PeerProcess, Any],
) -> None:
    peer, agent = doomed_agent
    disconnects = Disconnects(agent)
    peer.kill()
    await disconnects.wait()
    await peer.ended()
    await task.deferLater(reactor, 0, lambda: None)
    assert disconnects.count == 1


@pytest_twisted.ensureDeferred
async def test_call_after_twisted_client_died_raises_dead_reference(
    doomed_agent: tuple[PeerProcess, Any],
) -> None:
    peer, agent = doomed_agent
    disconnects = Disconnects(agent)
    peer.kill()
    await disconnects.wait()
    with pytest.raises(pb.DeadReferenceError):
        agent.callRemote("echo", 1)
