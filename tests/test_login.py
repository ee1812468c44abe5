"""Login with twisted.cred over PB, spread on both ends: challenge/response, anonymous login,
minds, logout, refusals, and the TCP, UNIX-socket and TLS endpoints."""

from __future__ import annotations

import datetime
import gc
import hashlib
import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from support import TIMEOUT, Mind, Realm, wait_until
from twisted.cred import checkers, credentials, portal
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet import defer, endpoints, reactor
from twisted.protocols import policies
from twisted.python.failure import Failure
from twisted.spread import pb as twisted_pb
from zope.interface import implementer

from spread import _login, pb

ACCOUNTS = {"alice": b"secret", "bob": b"hunter2"}


# ---------------------------------------------------------------------------------------------
# A portal in front of support.Realm, which records what happens to it


def make_portal(realm: Realm, *, anonymous: bool = True) -> portal.Portal:
    accounts = checkers.InMemoryUsernamePasswordDatabaseDontUse(**ACCOUNTS)
    extra = [checkers.AllowAnonymousAccess()] if anonymous else []
    return portal.Portal(realm, [accounts, *extra])


# ---------------------------------------------------------------------------------------------
# Servers and clients on real endpoints, always cleaned up


class LoginServer:
    """A spread PB server for a portal on one endpoint, and the clients connected to it."""

    def __init__(self, port: Any, client_description: str) -> None:
        self.port = port
        self.client_description = client_description
        self.clients: list[tuple[pb.PBClientFactory, Any, defer.Deferred[None]]] = []

    @classmethod
    async def start(
        cls,
        root: object,
        server_description: str,
        client_description: Callable[[Any], str],
        wrap: Callable[[Any], Any] = lambda factory: factory,
    ) -> LoginServer:
        endpoint = endpoints.serverFromString(reactor, server_description)
        port = await endpoint.listen(wrap(pb.PBServerFactory(root)))
        return cls(port, client_description(port))

    async def connect(self) -> pb.PBClientFactory:
        factory = pb.PBClientFactory()
        endpoint = endpoints.clientFromString(reactor, self.client_description)
        broker = await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
        closed: defer.Deferred[None] = defer.Deferred()
        broker.notifyOnDisconnect(lambda: closed.callback(None))
        self.clients.append((factory, broker, closed))
        return factory

    async def disconnect(self, factory: pb.PBClientFactory) -> None:
        for known, broker, closed in self.clients:
            if known is factory:
                await self._close(broker, closed)

    async def stop(self) -> None:
        for _factory, broker, closed in self.clients:
            await self._close(broker, closed)
        await self.port.stopListening()

    @staticmethod
    async def _close(broker: Any, closed: defer.Deferred[None]) -> None:
        # Closing the transport works even before PB's handshake has finished.
        if not closed.called:
            broker.transport.loseConnection()
        await closed.addTimeout(TIMEOUT, reactor)


def tcp_client(port: Any) -> str:
    return f"tcp:127.0.0.1:{port.getHost().port}"


@pytest_twisted.async_yield_fixture
async def server(realm: Realm) -> AsyncIterator[LoginServer]:
    running = await LoginServer.start(make_portal(realm), "tcp:0:interface=127.0.0.1", tcp_client)
    yield running
    await running.stop()


async def outcome(d: defer.Deferred[Any]) -> Any:
    """The result of ``d``, or its Failure itself (so tests can call ``check`` on it)."""
    results: list[Any] = []
    await d.addBoth(results.append)
    return results[0]


async def log_in(
    server: LoginServer, creds: credentials.ICredentials, mind: object = None
) -> Any:
    factory = await server.connect()
    return await factory.login(creds, client=mind).addTimeout(TIMEOUT, reactor)


def alice() -> credentials.UsernamePassword:
    return credentials.UsernamePassword(b"alice", b"secret")


# ---------------------------------------------------------------------------------------------
# The challenge and the response


@given(challenge=st.binary(max_size=64), password=st.binary(max_size=64))
def test_respond_matches_twisted(challenge: bytes, password: bytes) -> None:
    assert pb.respond(challenge, password) == twisted_pb.respond(challenge, password)


def test_respond_is_md5_of_password_digest_and_challenge() -> None:
    digest = hashlib.md5(b"secret").digest()
    assert pb.respond(b"nonce", b"secret") == hashlib.md5(digest + b"nonce").digest()


def test_respond_encodes_str_password_as_utf8() -> None:
    assert pb.respond(b"nonce", "s\u00e9cret") == pb.respond(b"nonce", "s\u00e9cret".encode())


def test_challenge_is_sixteen_bytes_like_twisted() -> None:
    assert len(pb.challenge()) == len(twisted_pb.challenge()) == 16


def test_challenges_differ() -> None:
    assert len({pb.challenge() for _ in range(100)}) == 100


# ---------------------------------------------------------------------------------------------
# Password login


@pytest_twisted.ensureDeferred
async def test_password_login_returns_the_avatar(server: LoginServer) -> None:
    avatar = await log_in(server, alice())
    assert await avatar.callRemote("whoami") == "alice"


@pytest_twisted.ensureDeferred
async def test_avatar_methods_take_arguments(server: LoginServer) -> None:
    avatar = await log_in(server, alice())
    assert await avatar.callRemote("add", 2, 3) == 5


@pytest_twisted.ensureDeferred
async def test_realm_gets_the_username_as_avatar_id(server: LoginServer, realm: Realm) -> None:
    await log_in(server, credentials.UsernamePassword(b"bob", b"hunter2"))
    assert realm.logins == ["bob"]


@pytest_twisted.ensureDeferred
async def test_login_accepts_the_root_reference(server: LoginServer) -> None:
    factory = await server.connect()
    root = await factory.getRootObject()
    avatar = await _login.login(root, alice())
    assert await avatar.callRemote("whoami") == "alice"


@pytest_twisted.ensureDeferred
async def test_login_before_the_connection_is_made(server: LoginServer) -> None:
    factory = pb.PBClientFactory()
    pending = factory.login(alice())
    endpoint = endpoints.clientFromString(reactor, server.client_description)
    broker = await endpoint.connect(factory)
    try:
        avatar = await pending.addTimeout(TIMEOUT, reactor)
        assert await avatar.callRemote("whoami") == "alice"
    finally:
        closed: defer.Deferred[None] = defer.Deferred()
        broker.notifyOnDisconnect(lambda: closed.callback(None))
        factory.disconnect()
        await closed.addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_checker_storing_md5_digests_accepts_pb_login(realm: Realm) -> None:
    @implementer(checkers.ICredentialsChecker)
    class DigestChecker:
        credentialInterfaces = (pb.IUsernameMD5Password,)

        def requestAvatarId(self, creds: Any) -> Any:
            if creds.checkMD5Password(hashlib.md5(b"secret").digest()):
                return defer.succeed(creds.username)
            return defer.fail(UnauthorizedLogin())

    running = await LoginServer.start(
        portal.Portal(realm, [DigestChecker()]), "tcp:0:interface=127.0.0.1", tcp_client
    )
    try:
        avatar = await log_in(running, alice())
        assert await avatar.callRemote("whoami") == "alice"
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_password_never_crosses_the_wire(realm: Realm) -> None:
    seen: list[bytes] = []

    class Recorder(policies.ProtocolWrapper):
        def dataReceived(self, data: bytes) -> None:
            seen.append(data)
            super().dataReceived(data)

        def write(self, data: bytes) -> None:
            seen.append(data)
            super().write(data)

    def spy(factory: Any) -> Any:
        wrapper = policies.WrappingFactory(factory)
        wrapper.protocol = Recorder
        return wrapper

    running = await LoginServer.start(
        make_portal(realm), "tcp:0:interface=127.0.0.1", tcp_client, wrap=spy
    )
    try:
        await log_in(running, alice())
    finally:
        await running.stop()
    traffic = b"".join(seen)
    assert b"alice" in traffic  # the recorder did see the login
    assert b"secret" not in traffic
    assert hashlib.md5(b"secret").digest() not in traffic


# ---------------------------------------------------------------------------------------------
# Refusals


@pytest_twisted.ensureDeferred
async def test_wrong_password_fails_with_unauthorized_login(server: LoginServer) -> None:
    factory = await server.connect()
    failure = await outcome(factory.login(credentials.UsernamePassword(b"alice", b"guess")))
    assert isinstance(failure, Failure)
    assert failure.check("twisted.cred.error.UnauthorizedLogin")


@pytest_twisted.ensureDeferred
async def test_refusal_checks_against_the_exception_class(server: LoginServer) -> None:
    factory = await server.connect()
    failure = await outcome(factory.login(credentials.UsernamePassword(b"alice", b"guess")))
    assert failure.check(UnauthorizedLogin)


@pytest_twisted.ensureDeferred
async def test_unknown_user_fails_with_unauthorized_login(server: LoginServer) -> None:
    factory = await server.connect()
    failure = await outcome(factory.login(credentials.UsernamePassword(b"mallory", b"x")))
    assert failure.check("twisted.cred.error.UnauthorizedLogin")


@pytest_twisted.ensureDeferred
async def test_failed_login_creates_no_avatar(server: LoginServer, realm: Realm) -> None:
    factory = await server.connect()
    await outcome(factory.login(credentials.UsernamePassword(b"alice", b"guess")))
    assert realm.logins == []


@pytest_twisted.ensureDeferred
async def test_failed_login_leaves_no_challenger_behind(server: LoginServer) -> None:
    factory = await server.connect()
    await outcome(factory.login(credentials.UsernamePassword(b"alice", b"guess")))
    # The client releases the challenger; the server then drops it.
    await wait_until(lambda: live_instances(_login._Challenger) == 0)


@pytest_twisted.ensureDeferred
async def test_server_keeps_serving_after_a_refusal(server: LoginServer) -> None:
    intruder = await server.connect()
    await outcome(intruder.login(credentials.UsernamePassword(b"alice", b"guess")))
    avatar = await log_in(server, alice())
    assert await avatar.callRemote("whoami") == "alice"


@pytest_twisted.ensureDeferred
async def test_same_connection_can_log_in_after_a_refusal(server: LoginServer) -> None:
    factory = await server.connect()
    await outcome(factory.login(credentials.UsernamePassword(b"alice", b"guess")))
    avatar = await factory.login(alice())
    assert await avatar.callRemote("whoami") == "alice"


@pytest_twisted.ensureDeferred
async def test_a_challenge_can_be_answered_only_once(server: LoginServer, realm: Realm) -> None:
    factory = await server.connect()
    root = await factory.getRootObject()
    nonce, challenger = await root.callRemote("login", b"alice")
    await outcome(challenger.callRemote("respond", pb.respond(nonce, b"guess"), None))
    second = await outcome(challenger.callRemote("respond", pb.respond(nonce, b"secret"), None))
    assert second.check("twisted.cred.error.UnauthorizedLogin")
    assert realm.logins == []


@pytest_twisted.ensureDeferred
async def test_unanswered_challenges_are_limited(server: LoginServer) -> None:
    factory = await server.connect()
    root = await factory.getRootObject()
    limit = _login.MAX_UNANSWERED_CHALLENGES
    offers = [await root.callRemote("login", b"alice") for _ in range(limit)]
    refused = await outcome(root.callRemote("login", b"alice"))
    assert refused.check("twisted.cred.error.LoginFailed")
    del offers


@pytest_twisted.ensureDeferred
async def test_credentials_without_password_are_a_type_error(server: LoginServer) -> None:
    factory = await server.connect()
    failure = await outcome(factory.login(object()))  # type: ignore[arg-type]
    assert failure.check(TypeError)


# ---------------------------------------------------------------------------------------------
# Anonymous login


@pytest_twisted.ensureDeferred
async def test_anonymous_login(server: LoginServer) -> None:
    avatar = await log_in(server, credentials.Anonymous())
    assert await avatar.callRemote("whoami") == "anonymous"


@pytest_twisted.ensureDeferred
async def test_anonymous_login_refused_without_an_anonymous_checker(realm: Realm) -> None:
    running = await LoginServer.start(
        make_portal(realm, anonymous=False), "tcp:0:interface=127.0.0.1", tcp_client
    )
    try:
        factory = await running.connect()
        failure = await outcome(factory.login(credentials.Anonymous()))
        assert failure.check(UnhandledCredentials)
        assert realm.logins == []
    finally:
        await running.stop()


# ---------------------------------------------------------------------------------------------
# The mind, perspectives, logout


@pytest_twisted.ensureDeferred
async def test_the_realm_can_call_the_mind(server: LoginServer) -> None:
    avatar = await log_in(server, alice(), mind=Mind())
    assert await avatar.callRemote("tellMind", "ping") == "heard:ping"


@pytest_twisted.ensureDeferred
async def test_no_mind_reaches_the_realm_as_none(server: LoginServer, realm: Realm) -> None:
    await log_in(server, alice())
    assert realm.minds == [None]


@pytest_twisted.ensureDeferred
async def test_viewable_sees_the_avatar_as_perspective(server: LoginServer) -> None:
    avatar = await log_in(server, alice())
    board = await avatar.callRemote("noticeboard")
    assert await board.callRemote("whoIsReading") == "alice"


@pytest_twisted.ensureDeferred
async def test_referenceable_avatar_is_sent_as_itself(server: LoginServer, realm: Realm) -> None:
    class Desk(pb.Referenceable):
        def __init__(self, name: str, mind: Any) -> None:
            self.name = name

        def remote_whoami(self) -> str:
            return self.name

    realm.avatar_factory = Desk
    avatar = await log_in(server, alice())
    assert await avatar.callRemote("whoami") == "alice"


@pytest_twisted.ensureDeferred
async def test_avatar_pb_cannot_send_fails_the_login_and_logs_out(
    server: LoginServer, realm: Realm
) -> None:
    realm.avatar_factory = lambda name, mind: object()
    factory = await server.connect()
    failure = await outcome(factory.login(alice()))
    assert failure.check(TypeError)
    assert "pb.Avatar" in failure.getErrorMessage()
    await realm.logged_out("alice")


@pytest_twisted.ensureDeferred
async def test_logout_runs_when_the_connection_closes(server: LoginServer, realm: Realm) -> None:
    factory = await server.connect()
    avatar = await factory.login(alice())
    await server.disconnect(factory)
    await realm.logged_out("alice")
    assert realm.logouts == ["alice"]
    del avatar


@pytest_twisted.ensureDeferred
async def test_logout_runs_when_the_client_releases_the_avatar(
    server: LoginServer, realm: Realm
) -> None:
    factory = await server.connect()
    avatar = await factory.login(alice())
    del avatar  # the client's reference goes, a decref tells the server
    await realm.logged_out("alice")
    assert realm.logouts == ["alice"]


@pytest_twisted.ensureDeferred
async def test_logout_runs_once(server: LoginServer, realm: Realm) -> None:
    factory = await server.connect()
    avatar = await factory.login(alice())
    del avatar
    await realm.logged_out("alice")
    await server.disconnect(factory)
    assert realm.logouts == ["alice"]


@pytest_twisted.ensureDeferred
async def test_each_login_on_a_connection_logs_out(server: LoginServer, realm: Realm) -> None:
    factory = await server.connect()
    first = await factory.login(alice())
    second = await factory.login(credentials.Anonymous())
    await server.disconnect(factory)
    await realm.logged_out("anonymous")
    assert sorted(realm.logouts) == ["alice", "anonymous"]
    del first, second


@pytest_twisted.ensureDeferred
async def test_a_failing_logout_does_not_stop_the_others(
    server: LoginServer, realm: Realm
) -> None:
    working_logout = realm._logout

    def logout(name: str) -> None:
        if name == "alice":
            raise RuntimeError("the realm's logout for alice is broken")
        working_logout(name)

    realm._logout = logout  # type: ignore[method-assign]
    factory = await server.connect()
    first = await factory.login(alice())  # logged out first, and fails
    second = await factory.login(credentials.UsernamePassword(b"bob", b"hunter2"))
    await server.disconnect(factory)
    await realm.logged_out("bob")
    assert realm.logouts == ["bob"]
    del first, second


@pytest_twisted.ensureDeferred
async def test_client_leaving_during_the_check_is_logged_out(realm: Realm) -> None:
    """A checker still deciding when the client hangs up must not leave an avatar behind."""
    asked: defer.Deferred[None] = defer.Deferred()
    decision: defer.Deferred[bytes] = defer.Deferred()

    @implementer(checkers.ICredentialsChecker)
    class SlowChecker:
        credentialInterfaces = (credentials.IUsernameHashedPassword,)

        def requestAvatarId(self, creds: Any) -> defer.Deferred[bytes]:
            asked.callback(None)
            return decision

    running = await LoginServer.start(
        portal.Portal(realm, [SlowChecker()]), "tcp:0:interface=127.0.0.1", tcp_client
    )
    try:
        factory = await running.connect()
        pending = factory.login(alice())
        pending.addErrback(lambda _: None)  # the client's side of this ends with the connection
        await asked.addTimeout(TIMEOUT, reactor)
        await running.disconnect(factory)
        decision.callback(b"alice")
        await realm.logged_out("alice")
        assert realm.logouts == ["alice"]
    finally:
        await running.stop()


def live_instances(cls: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, cls))


# ---------------------------------------------------------------------------------------------
# Endpoints


@pytest_twisted.ensureDeferred
async def test_login_over_a_unix_socket(realm: Realm, tmp_path: Path) -> None:
    if not hasattr(reactor, "listenUNIX"):
        pytest.skip("this platform has no UNIX sockets")
    path = tmp_path / "pb.sock"
    running = await LoginServer.start(
        make_portal(realm), f"unix:{path}", lambda _port: f"unix:path={path}"
    )
    try:
        avatar = await log_in(running, alice())
        assert await avatar.callRemote("whoami") == "alice"
    finally:
        await running.stop()


def tls_missing() -> str | None:
    """Why TLS cannot be tested here, or None if it can."""
    for module in ("OpenSSL", "service_identity", "cryptography"):
        try:
            __import__(module)
        except ImportError:
            return (
                f"TLS needs the {module!r} module, which comes with Twisted's tls extra; "
                "pip install 'twisted[tls]' to run this test"
            )
    return None


def write_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a throwaway certificate and key for 127.0.0.1; return (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.skipif(tls_missing() is not None, reason=str(tls_missing()))
@pytest_twisted.ensureDeferred
async def test_login_over_tls(realm: Realm, tmp_path: Path) -> None:
    cert_file, key_file = write_self_signed_certificate(tmp_path)
    trust = tmp_path / "trusted"
    trust.mkdir()
    (trust / "server.pem").write_bytes(cert_file.read_bytes())
    running = await LoginServer.start(
        make_portal(realm),
        f"ssl:0:interface=127.0.0.1:privateKey={key_file}:certKey={cert_file}",
        lambda port: f"tls:127.0.0.1:{port.getHost().port}:trustRoots={trust}",
    )
    try:
        avatar = await log_in(running, alice())
        assert await avatar.callRemote("whoami") == "alice"
    finally:
        await running.stop()
