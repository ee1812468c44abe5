"""Login on the wire between spread and a real twisted.spread peer in another process, both ways:
a spread client against a Twisted login server, and a Twisted client against a spread one."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from support import TIMEOUT, Mind, PeerProcess, Realm
from twisted.cred import checkers, credentials, portal
from twisted.internet import defer, endpoints, error, reactor, task
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.spread import banana as twisted_banana
from twisted.spread import pb as twisted_pb

from spread import pb

pytestmark = pytest.mark.interop



# ---------------------------------------------------------------------------------------------
# A spread client against a Twisted login server


@pytest_twisted.async_yield_fixture
async def twisted_login_server() -> AsyncIterator[tuple[PeerProcess, str]]:
    """A Twisted login server of this test's own (peers/twisted_login_server.py): the process,
    whose lines report the logins and logouts, and its client endpoint."""
    peer = PeerProcess.spawn("twisted_login_server.py")
    try:
        port = (await peer.line("PORT ")).split()[1]
        yield peer, f"tcp:127.0.0.1:{port}"
    finally:
        await peer.finish()


class Client:
    """One spread client connection, closed and awaited at the end of the test."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.factory = pb.PBClientFactory()
        self.closed: defer.Deferred[None] = defer.Deferred()

    async def connect(self) -> Client:
        endpoint = endpoints.clientFromString(reactor, self.description)
        broker = await endpoint.connect(self.factory).addTimeout(TIMEOUT, reactor)
        broker.notifyOnDisconnect(lambda: self.closed.callback(None))
        return self

    async def login(self, creds: Any, mind: object = None) -> Any:
        """The avatar reference, or the Failure itself when the login is refused."""
        results: list[Any] = []
        await self.factory.login(creds, client=mind).addTimeout(TIMEOUT, reactor).addBoth(
            results.append
        )
        return results[0]

    async def close(self) -> None:
        if not self.closed.called:
            self.factory.disconnect()
        await self.closed.addTimeout(TIMEOUT, reactor)


@pytest_twisted.async_yield_fixture
async def client_of_twisted(twisted_login_server: tuple[PeerProcess, str]) -> AsyncIterator[Client]:
    client = await Client(twisted_login_server[1]).connect()
    yield client
    await client.close()


def alice() -> credentials.UsernamePassword:
    return credentials.UsernamePassword(b"alice", b"secret")


@pytest_twisted.ensureDeferred
async def test_spread_client_logs_in_to_twisted_server(client_of_twisted: Client) -> None:
    avatar = await client_of_twisted.login(alice())
    assert await avatar.callRemote("whoami") == "alice"


@pytest_twisted.ensureDeferred
async def test_spread_client_calls_twisted_avatar(client_of_twisted: Client) -> None:
    avatar = await client_of_twisted.login(alice())
    assert await avatar.callRemote("add", 2, 3) == 5


@pytest_twisted.ensureDeferred
async def test_twisted_server_calls_spread_mind(client_of_twisted: Client) -> None:
    avatar = await client_of_twisted.login(alice(), mind=Mind())
    assert await avatar.callRemote("tellMind", "ping") == "heard:ping"


@pytest_twisted.ensureDeferred
async def test_twisted_server_refuses_wrong_password(client_of_twisted: Client) -> None:
    refused = await client_of_twisted.login(credentials.UsernamePassword(b"alice", b"guess"))
    assert isinstance(refused, Failure)
    assert refused.check("twisted.cred.error.UnauthorizedLogin")


@pytest_twisted.ensureDeferred
async def test_twisted_server_refusal_creates_no_avatar(
    twisted_login_server: tuple[PeerProcess, str], client_of_twisted: Client
) -> None:
    await client_of_twisted.login(credentials.UsernamePassword(b"alice", b"guess"))
    await client_of_twisted.login(credentials.UsernamePassword(b"bob", b"hunter2"))
    peer, _ = twisted_login_server
    await peer.line("LOGIN bob")
    assert [line for line in peer.lines if line.startswith("LOGIN")] == ["LOGIN bob mind=no"]


@pytest_twisted.ensureDeferred
async def test_twisted_server_accepts_anonymous_spread_client(client_of_twisted: Client) -> None:
    avatar = await client_of_twisted.login(credentials.Anonymous())
    assert await avatar.callRemote("whoami") == "anonymous"


@pytest_twisted.ensureDeferred
async def test_twisted_server_logs_out_spread_client_on_disconnect(
    twisted_login_server: tuple[PeerProcess, str], client_of_twisted: Client
) -> None:
    peer, _ = twisted_login_server
    avatar = await client_of_twisted.login(alice(), mind=Mind())
    await peer.line("LOGIN alice mind=yes")
    await client_of_twisted.close()
    await peer.line("LOGOUT alice")
    del avatar


@pytest_twisted.ensureDeferred
async def test_twisted_server_logs_out_spread_client_that_drops_its_avatar(
    twisted_login_server: tuple[PeerProcess, str], client_of_twisted: Client
) -> None:
    peer, _ = twisted_login_server
    avatar = await client_of_twisted.login(alice())
    await peer.line("LOGIN alice")
    del avatar  # spread sends the decref; Twisted's server logs out on it
    await peer.line("LOGOUT alice")
    assert not client_of_twisted.closed.called


# ---------------------------------------------------------------------------------------------
# A Twisted client against a spread login server; realm, a support.Realm, comes from conftest.py


@pytest_twisted.async_yield_fixture
async def spread_server(realm: Realm) -> AsyncIterator[str]:
    accounts = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret", bob=b"hunter2")
    the_portal = portal.Portal(realm, [accounts, checkers.AllowAnonymousAccess()])
    endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    port = await endpoint.listen(pb.PBServerFactory(the_portal))
    try:
        yield str(port.getHost().port)
    finally:
        await port.stopListening()


async def run_twisted_client(port: str, *logins: str) -> list[str]:
    """Run the Twisted client to completion; the lines it printed."""
    peer = PeerProcess.spawn("twisted_login_client.py", port, *logins)
    await peer.line("DONE")
    exit_code = await peer.finish()
    assert exit_code == 0, peer.stderr.decode()
    return peer.lines[:-1]


@pytest_twisted.ensureDeferred
async def test_twisted_client_logs_in_to_spread_server(spread_server: str) -> None:
    assert await run_twisted_client(spread_server, "alice:secret") == ["OK alice 5 heard:ping"]


@pytest_twisted.ensureDeferred
async def test_twisted_client_refused_by_spread_server(spread_server: str) -> None:
    assert await run_twisted_client(spread_server, "alice:guess") == [
        "FAILED twisted.cred.error.UnauthorizedLogin True"
    ]


@pytest_twisted.ensureDeferred
async def test_twisted_client_unknown_user_refused(spread_server: str, realm: Realm) -> None:
    assert await run_twisted_client(spread_server, "mallory:x") == [
        "FAILED twisted.cred.error.UnauthorizedLogin True"
    ]
    assert realm.logins == []


@pytest_twisted.ensureDeferred
async def test_twisted_client_anonymous_on_spread_server(spread_server: str) -> None:
    assert await run_twisted_client(spread_server, "anonymous") == ["OK anonymous 5 heard:ping"]


@pytest_twisted.ensureDeferred
async def test_twisted_client_retries_after_refusal(spread_server: str) -> None:
    assert await run_twisted_client(spread_server, "alice:guess", "bob:hunter2") == [
        "FAILED twisted.cred.error.UnauthorizedLogin True",
        "OK bob 5 heard:ping",
    ]


@pytest_twisted.ensureDeferred
async def test_spread_server_logs_out_twisted_client_on_disconnect(
    spread_server: str, realm: Realm
) -> None:
    await run_twisted_client(spread_server, "alice:secret", "anonymous")
    await realm.logged_out("alice")
    await realm.logged_out("anonymous")
    assert sorted(realm.logouts) == ["alice", "anonymous"]


# ---------------------------------------------------------------------------------------------
# Message by message: spread's side of a login is what Twisted's would have sent


class Transcript(twisted_banana.Banana):
    """Decodes one direction of a PB byte stream into its expressions, with Twisted's codec."""

    def __init__(self, data: bytes) -> None:
        super().__init__(isClient=True)
        self.expressions: list[Any] = []
        self.currentDialect = b"pb"
        self.setPrefixLimit(64)  # what a connected Banana would use
        self.dataReceived(data)

    def connectionReady(self) -> None:
        pass

    def expressionReceived(self, obj: Any) -> None:
        self.expressions.append(obj)


def comparable(expressions: list[Any]) -> list[Any]:
    """Hide what is random (the challenge, first in the answer to ``login``, and the response,
    first in the arguments of ``respond``) and drop decref messages, whose timing depends on
    each side's garbage collection."""

    def masked(sexp: Any) -> Any:
        if not isinstance(sexp, list):
            return sexp
        random_first = len(sexp) > 1 and type(sexp[1]) is bytes and len(sexp[1]) == 16
        if sexp[0:1] == [b"tuple"] and random_first:
            return [b"tuple", b"<16 random bytes>", *map(masked, sexp[2:])]
        return [masked(item) for item in sexp]

    return [masked(e) for e in expressions if not (isinstance(e, list) and e[:1] == [b"decref"])]


async def transcript(
    server_factory: Any, client_factory: Any, creds: Any
) -> tuple[list[Any], list[Any]]:
    """Log in over in-memory transports; return (server's messages, client's messages)."""
    server = server_factory.buildProtocol(None)
    client = client_factory.buildProtocol(None)
    to_client, to_server = StringTransport(), StringTransport()
    server.makeConnection(to_client)
    client.makeConnection(to_server)
    outcomes: list[Any] = []
    client_factory.login(creds, client=None).addBoth(outcomes.append)
    sent: dict[str, list[bytes]] = {"server": [], "client": []}
    quiet_turns = 0
    while quiet_turns < 3:  # both sides silent across reactor turns: the exchange is over
        moved = False
        for side, transport, receiver in (
            ("server", to_client, client),
            ("client", to_server, server),
        ):
            data = transport.value()
            if data:
                transport.clear()
                sent[side].append(data)
                receiver.dataReceived(data)
                moved = True
        quiet_turns = 0 if moved else quiet_turns + 1
        await task.deferLater(reactor, 0, lambda: None)
    assert outcomes, "the login never finished"
    outcomes.clear()  # release the avatar while the transports can still carry the decref
    gc.collect()
    for broker in (client, server):
        broker.connectionLost(Failure(error.ConnectionDone()))
    server_said = Transcript(b"".join(sent["server"])).expressions
    client_said = Transcript(b"".join(sent["client"])).expressions
    return comparable(server_said), comparable(client_said)


def twisted_portal() -> portal.Portal:
    """A portal for both a spread and a Twisted server, which ask for different IPerspectives."""
    accounts = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    realm = Realm(pb.IPerspective, twisted_pb.IPerspective)
    return portal.Portal(realm, [accounts, checkers.AllowAnonymousAccess()])


def failure_fields(message: Any) -> dict[str, Any]:
    """The state of the copied failure in an ``error`` message, by field name."""
    tag, state = message[2]
    assert tag == b"twisted.spread.pb.CopyableFailure"
    assert state[0] == b"dictionary"
    return {key[1].decode(): value for key, value in state[1:]}


CREDENTIALS = {
    "password": credentials.UsernamePassword(b"alice", b"secret"),
    "anonymous": credentials.Anonymous(),
}


@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
@pytest_twisted.ensureDeferred
async def test_spread_server_sends_what_twisted_sends(kind: str) -> None:
    creds = CREDENTIALS[kind]
    twisted_said, _ = await transcript(
        twisted_pb.PBServerFactory(twisted_portal()), twisted_pb.PBClientFactory(), creds
    )
    spread_said, _ = await transcript(
        pb.PBServerFactory(twisted_portal()), twisted_pb.PBClientFactory(), creds
    )
    # The offer names the spread dialect first, which a Twisted client skips; then the same.
    assert spread_said[0] == [b"spread", *twisted_said[0]]
    assert spread_said[1:] == twisted_said[1:]


@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
@pytest_twisted.ensureDeferred
async def test_spread_client_sends_what_twisted_sends(kind: str) -> None:
    creds = CREDENTIALS[kind]
    _, twisted_said = await transcript(
        twisted_pb.PBServerFactory(twisted_portal()), twisted_pb.PBClientFactory(), creds
    )
    _, spread_said = await transcript(
        twisted_pb.PBServerFactory(twisted_portal()), pb.PBClientFactory(), creds
    )
    assert spread_said == twisted_said


@pytest_twisted.ensureDeferred
async def test_spread_server_refuses_in_twisted_words() -> None:
    wrong = credentials.UsernamePassword(b"alice", b"guess")
    twisted_said, _ = await transcript(
        twisted_pb.PBServerFactory(twisted_portal()), twisted_pb.PBClientFactory(), wrong
    )
    spread_said, _ = await transcript(
        pb.PBServerFactory(twisted_portal()), twisted_pb.PBClientFactory(), wrong
    )
    # Everything up to the refusal is identical; the refusal names the same error the same way.
    assert spread_said[0] == [b"spread", *twisted_said[0]]
    assert spread_said[1:-1] == twisted_said[1:-1]
    assert spread_said[-1][:2] == twisted_said[-1][:2] == [b"error", 2]
    ours, theirs = failure_fields(spread_said[-1]), failure_fields(twisted_said[-1])
    assert ours["type"] == theirs["type"] == b"twisted.cred.error.UnauthorizedLogin"
    assert ours["parents"] == theirs["parents"]
