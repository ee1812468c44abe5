"""Drop-in fidelity: after the import swap a Twisted PB program sees what it saw with Twisted.

Each test pins one behaviour a Twisted program may rely on (or, where spread differs on purpose,
the error that says so at once) to the place Twisted shows it.
"""

from __future__ import annotations

from typing import Any

import pytest
from support import Realm
from test_pb import Loop
from twisted.cred import checkers, credentials, portal
from twisted.internet import defer
from twisted.logger import LogLevel, capturedLogs
from twisted.spread import flavors as tflavors
from twisted.spread import pb as tpb

from spread import banana, jelly, pb


class Echo(pb.Root):
    def remote_echo(self, value: Any) -> Any:
        return value

    def remote_twistedCopy(self) -> Any:
        return HalfMigrated()


class HalfMigrated(tpb.Copyable):
    """A class the import swap missed: it still derives from Twisted's Copyable."""

    def __init__(self) -> None:
        self.x = 1


class HalfMigratedReference(tflavors.Referenceable):
    def remote_ping(self) -> str:
        return "pong"


# -- a half-migrated program (point 3) --------------------------------------------------------


@pytest.mark.parametrize("value", [HalfMigrated(), [1, HalfMigratedReference()]])
def test_sending_a_twisted_flavor_fails_the_call_naming_the_fix(value: Any) -> None:
    loop = Loop(Echo())
    failure = loop.result(loop.root().callRemote("echo", value))
    assert failure.check(TypeError)
    message = str(failure.value)
    assert "twisted.spread" in message and "from spread.pb" in message
    assert type(value if not isinstance(value, list) else value[1]).__name__ in message
    assert loop.call("echo", 1) == 1  # and the connection goes on


def test_answering_with_a_twisted_flavor_fails_the_call_naming_the_fix() -> None:
    loop = Loop(Echo())
    failure = loop.call("twistedCopy")
    assert failure.check(TypeError)
    assert "HalfMigrated" in failure.value and "from spread.pb" in failure.value


# -- what the server answers and logs (point 4) -----------------------------------------------


def twistedLoop(root: Any) -> Loop:
    """The same in-memory pair, but both brokers Twisted's own."""
    return Loop.between(tpb.PBServerFactory(root), tpb.PBClientFactory())


def serverRoot(flavors: Any) -> Any:
    """A root, built from ``flavors`` (spread.pb or twisted.spread.pb), whose methods fail."""

    class Member(flavors.Avatar):
        def perspective_fail(self) -> None:
            raise ValueError("member failed")

    class Root(flavors.Root):
        def remote_fail(self) -> None:
            raise ValueError("remote failed")

        def remote_refuse(self) -> None:
            raise flavors.Error("refused on purpose")

        def remote_member(self) -> Any:
            return flavors.AsReferenceable(Member(), "perspective")

    return Root()


def outcome(loop: Loop, path: tuple[str, ...]) -> tuple[str, list[bool]]:
    """The failure's remote type name for calling ``path`` (a chain of calls), and which log
    events were written, each True if it is an error."""
    target = loop.result(loop.client_factory.getRootObject())
    with capturedLogs() as events:
        for name in path[:-1]:
            target = loop.result(target.callRemote(name))
        failure = loop.result(target.callRemote(path[-1]))
    remoteType = failure.type.decode() if isinstance(failure.type, bytes) else failure.type
    errors = (LogLevel.error, LogLevel.critical)
    return remoteType, [event.get("log_level") in errors for event in events]


@pytest.mark.parametrize(
    ("path", "typeName", "logged"),
    [
        (("nothing",), "twisted.spread.flavors.NoSuchMethod", True),
        (("fail",), "builtins.ValueError", True),
        (("refuse",), "twisted.spread.pb.Error", False),
        (("member", "nothing"), "builtins.AttributeError", True),
        (("member", "fail"), "builtins.ValueError", True),
    ],
)
def test_the_server_answers_and_logs_failures_as_twisted_does(
    path: tuple[str, ...], typeName: str, logged: bool
) -> None:
    theirs = outcome(twistedLoop(serverRoot(tpb)), path)
    ours = outcome(Loop(serverRoot(pb)), path)
    assert theirs[0] == ours[0] == typeName
    assert any(theirs[1]) is logged
    assert any(ours[1]) is logged


# -- a peer past the reference limit (point 8) ------------------------------------------------


class Things(pb.Root):
    def remote_newThing(self) -> pb.Referenceable:
        return pb.Referenceable()


def test_the_fourth_refusal_past_the_reference_limit_disconnects_as_in_twisted() -> None:
    loop = Loop(Things(), maxBrokerRefs=1)
    root = loop.root()
    kept = loop.result(root.callRemote("newThing"))
    for violation in (1, 2, 3):
        assert loop.result(root.callRemote("newThing")).check(pb.Error)
        assert loop.server.maxBrokerRefsViolations == violation
        assert not loop.client.disconnected
    last = loop.result(root.callRemote("newThing"))
    # Over TCP the "Goodbye" error arrives before the close; iosim drops writes after it.
    assert last.check(pb.Error, pb.PBConnectionLost)
    assert loop.server.disconnected and loop.client.disconnected
    assert pb.Broker.maxBrokerRefsViolations == 0  # counted per connection
    del kept


# -- the text of a remote error (point 5) -----------------------------------------------------


class InsufficientFunds(Exception):
    pass


def failingRoot(flavors: Any) -> Any:
    class Bank(flavors.Root):
        def remote_withdraw(self) -> None:
            raise InsufficientFunds("alice has 6, needs 40")

        def remote_refuse(self) -> None:
            raise flavors.Error("refused")

    return Bank()


def awaited(loop: Loop, name: str) -> Exception:
    """What ``await root.callRemote(name)`` raises."""
    root = loop.result(loop.client_factory.getRootObject())

    async def call() -> Exception:
        try:
            await root.callRemote(name)
        except Exception as error:
            return error
        raise AssertionError("the call succeeded")

    result: Exception = loop.result(defer.ensureDeferred(call()))
    return result


@pytest.mark.parametrize("name", ["withdraw", "refuse"])
def test_str_of_an_awaited_remote_error_is_twisteds(name: str) -> None:
    theirs = awaited(twistedLoop(failingRoot(tpb)), name)
    ours = awaited(Loop(failingRoot(pb)), name)
    assert isinstance(ours, pb.RemoteError)
    assert str(ours) == str(theirs) and ours.args == theirs.args
    assert ours.remoteType == theirs.remoteType  # the type: an attribute, and in repr
    assert ours.typeName in repr(ours)


def test_a_failed_login_reads_as_in_twisted() -> None:
    outcomes = []
    for makeLoop in (twistedLoop, Loop):
        checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
        loop = makeLoop(portal.Portal(Realm(), [checker]))
        wrong = credentials.UsernamePassword(b"alice", b"wrong")
        failure = loop.result(loop.client_factory.login(wrong))

        async def login(factory: Any = loop.client_factory, wrong: Any = wrong) -> str:
            try:
                await factory.login(wrong)
            except Exception as error:
                return str(error)
            raise AssertionError("logged in with the wrong password")

        text = loop.result(defer.ensureDeferred(login()))
        outcomes.append((failure.type, failure.getErrorMessage(), str(failure), text))
    assert outcomes[0] == outcomes[1]


# -- placeholders are sent as in Twisted, but not silently ------------------------------------


class Plain:
    """Neither Copyable nor Referenceable."""


class Other:
    pass


def test_a_placeholder_is_sent_as_twisted_does_and_warned_once_per_class() -> None:
    loop = Loop(Echo())
    root = loop.root()
    with capturedLogs() as events:
        for value in (Plain(), Plain(), Other()):
            echoed = loop.result(root.callRemote("echo", value))
            assert isinstance(echoed, jelly.Unpersistable)
    warnings = [event for event in events if "placeholder" in event.get("log_format", "")]
    assert [event["cls"] for event in warnings] == ["test_fidelity.Plain", "test_fidelity.Other"]
    assert all(event["log_level"] is LogLevel.warn for event in warnings)


# -- outgoing size (point 12) -----------------------------------------------------------------


def test_a_call_too_large_for_the_peer_raises_before_anything_is_sent() -> None:
    loop = Loop(Echo())
    root = loop.root()
    pending = root.callRemote("echo", "still waiting")  # must survive the refusal below
    chunks = [b"x" * 600_000] * 30  # each string is allowed; the 18 MB message is not
    with pytest.raises(banana.BananaError, match="too long to send"):
        root.callRemote("echo", chunks)
    assert loop.result(pending) == "still waiting"
    assert not loop.client.disconnected
    assert loop.call("echo", 1) == 1
