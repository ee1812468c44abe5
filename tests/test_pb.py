"""The broker between two spread peers: calls, answers, errors, references, disconnects.

Most tests connect a server and a client broker in memory (twisted.test.iosim)
and pump bytes by hand, so they are deterministic; a few run over real TCP.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task
from twisted.python.failure import Failure
from twisted.test import iosim

from spread import banana, jelly, pb, util
from spread._session import SessionState

# -- helpers -----------------------------------------------------------------------------


class Loop:
    """A server and a client broker joined in memory."""

    def __init__(self, root: Any, reactor: Any = None, **server_options: Any) -> None:
        self.join(
            pb.PBServerFactory(root, reactor=reactor, **server_options),
            pb.PBClientFactory(reactor=reactor),
        )

    @classmethod
    def between(cls, server_factory: Any, client_factory: Any) -> Loop:
        """Any two factories joined in memory (spread's, Twisted's, or one of each)."""
        loop = cls.__new__(cls)
        loop.join(server_factory, client_factory)
        return loop

    def join(self, server_factory: Any, client_factory: Any) -> None:
        self.server_factory, self.client_factory = server_factory, client_factory
        self.server: pb.Broker = server_factory.buildProtocol(None)
        self.client: pb.Broker = client_factory.buildProtocol(None)
        self.pump = iosim.connect(
            self.server, iosim.FakeTransport(self.server, isServer=True),
            self.client, iosim.FakeTransport(self.client, isServer=False),
        )

    def root(self) -> pb.RemoteReference:
        return self.result(self.client_factory.getRootObject())

    def result(self, d: defer.Deferred[Any]) -> Any:
        """Pump until ``d`` fires; return its result (a Failure if it failed)."""
        outcome: list[Any] = []
        d.addBoth(outcome.append)
        self.pump.flush()
        assert outcome, "the Deferred never fired"
        return outcome[0]

    def call(self, name: str, *args: Any, **kw: Any) -> Any:
        return self.result(self.root().callRemote(name, *args, **kw))

    def release(self) -> None:
        """Collect garbage and send/deliver the releases it caused, both ways."""
        for _ in range(3):
            gc.collect()
            self.client.flushReleases()
            self.server.flushReleases()
            self.pump.flush()

    def close(self) -> None:
        self.client.transport.loseConnection()
        self.pump.flush()


class MyError(pb.Error):
    pass


class Thing(pb.Referenceable):
    def __init__(self, name: str = "thing") -> None:
        self.name = name

    def remote_name(self) -> str:
        return self.name


class Echo(pb.Root):
    def __init__(self) -> None:
        self.kept: list[Any] = []
        self.things: dict[str, Thing] = {}

    def remote_echo(self, value: Any) -> Any:
        return value

    def remote_kw(self, a: Any, b: Any = None) -> Any:
        return [a, b]

    def remote_fail(self) -> None:
        raise MyError("boom")

    def remote_bug(self) -> None:
        raise ValueError("bad value")

    def remote_later(self, value: Any) -> defer.Deferred[Any]:
        return task.deferLater(reactor, 0, lambda: value)

    def remote_ready(self, value: Any) -> defer.Deferred[Any]:
        return defer.succeed(value)

    def remote_failLater(self) -> defer.Deferred[Any]:
        return defer.fail(MyError("later"))

    async def remote_double(self, value: int) -> int:
        return value * 2

    async def remote_asyncFail(self) -> None:
        raise MyError("async boom")

    def remote_thing(self, name: str = "thing") -> Thing:
        return self.things.setdefault(name, Thing(name))

    def remote_newThing(self) -> Thing:
        return Thing("fresh")

    def remote_keep(self, value: Any) -> int:
        self.kept.append(value)
        return len(self.kept)

    def remote_callBack(self, ref: pb.RemoteReference, *args: Any) -> defer.Deferred[Any]:
        return ref.callRemote("hello", *args)

    def remote_pending(self) -> defer.Deferred[Any]:
        return defer.Deferred()

    def remote_huge(self) -> bytes:
        return b"x" * (banana.SIZE_LIMIT + 1)

    def remote_hugeLater(self) -> defer.Deferred[bytes]:
        return defer.succeed(b"x" * (banana.SIZE_LIMIT + 1))

    def remote_broken(self) -> Any:
        return [Thing("doomed"), "\ud800"]  # the lone surrogate cannot be encoded

    def remote_identity(self, value: Any) -> bool:
        return value is self.things.get("thing")

    def notCallable(self) -> str:
        return "secret"

    remote_attribute = "not a method"


class Caller(pb.Referenceable):
    def remote_hello(self, *args: Any) -> Any:
        return ["hello", *args]


class Unregistered:
    """A class nobody allowed."""

    def __init__(self) -> None:
        self.x = 1


class UnregisteredCopy(pb.Copyable):
    pass


# -- calls and answers -------------------------------------------------------------------


def test_call_returns_result() -> None:
    loop = Loop(Echo())
    assert loop.call("echo", 42) == 42


@pytest.mark.parametrize(
    "value",
    [0, -5, 2**70, 1.5, b"bytes", "text \u00e9", None, True, [1, [2]], (1, "a"), {"k": [1]},
     {1, 2}, [], ()],
)
def test_basic_values_round_trip(value: Any) -> None:
    loop = Loop(Echo())
    assert loop.call("echo", value) == value


def test_keyword_arguments_are_passed() -> None:
    loop = Loop(Echo())
    assert loop.call("kw", 1, b=2) == [1, 2]


def test_callRemote_always_returns_a_deferred() -> None:
    loop = Loop(Echo())
    d = loop.root().callRemote("echo", 1)
    assert isinstance(d, defer.Deferred)
    loop.result(d)


def test_remoteMethod_calls_the_named_method() -> None:
    loop = Loop(Echo())
    method = loop.root().remoteMethod("echo")
    assert loop.result(method("via method")) == "via method"


def test_pbanswer_false_sends_without_waiting() -> None:
    root = Echo()
    loop = Loop(root)
    d = loop.root().callRemote("keep", 5, pbanswer=False)
    assert loop.result(d) is None
    assert root.kept == [5]
    assert loop.client.waitingForAnswers == {}


def test_method_returning_a_deferred_answers_when_it_fires() -> None:
    loop = Loop(Echo())
    assert loop.call("ready", "soon") == "soon"


def test_async_def_method_is_awaited() -> None:
    loop = Loop(Echo())
    assert loop.call("double", 21) == 42


def test_async_def_failure_is_sent_back() -> None:
    loop = Loop(Echo())
    failure = loop.call("asyncFail")
    assert failure.check(MyError)
    assert failure.value == "async boom"


@pytest_twisted.ensureDeferred
async def test_callRemote_can_be_awaited_over_tcp() -> None:
    server_endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    port = await server_endpoint.listen(pb.PBServerFactory(Echo()))
    try:
        factory = pb.PBClientFactory()
        client_endpoint = endpoints.clientFromString(
            reactor, f"tcp:127.0.0.1:{port.getHost().port}:timeout=30"
        )
        await client_endpoint.connect(factory)
        root = await factory.getRootObject()
        assert await root.callRemote("echo", "over tcp") == "over tcp"
        assert await root.callRemote("later", 7) == 7
        with pytest.raises(pb.RemoteError) as caught:
            await root.callRemote("fail")
        assert caught.value.typeName.endswith("MyError")
        factory.disconnect()
    finally:
        await port.stopListening()


# -- security of dispatch ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["notCallable", "__init__", "__class__", "attribute", "missing"])
def test_only_remote_methods_are_callable(name: str) -> None:
    loop = Loop(Echo())
    failure = loop.call(name)
    assert failure.check(pb.NoSuchMethod)
    assert failure.check(AttributeError)


def test_unknown_object_id_is_an_error() -> None:
    loop = Loop(Echo())
    bogus = pb.RemoteReference(None, loop.client, 999, 0)
    failure = loop.result(bogus.callRemote("echo", 1))
    assert failure.check(pb.Error)
    assert "Invalid Object ID" in failure.value


# -- errors ------------------------------------------------------------------------------


def test_pb_error_arrives_with_type_name_and_message() -> None:
    loop = Loop(Echo())
    failure = loop.call("fail")
    assert isinstance(failure, pb.CopiedFailure)
    assert failure.type == b"tests.test_pb.MyError" or failure.typeName.endswith("test_pb.MyError")
    assert failure.value == "boom"
    assert failure.check(MyError) is MyError
    assert failure.check(pb.Error) is pb.Error


def test_failure_check_accepts_dotted_names() -> None:
    loop = Loop(Echo())
    failure = loop.call("bug")
    assert failure.check("builtins.ValueError") == "builtins.ValueError"
    assert failure.check(ValueError) is ValueError
    assert failure.check(KeyError) is None


def test_copied_failure_repr_is_readable() -> None:
    loop = Loop(Echo())
    failure = loop.call("bug")
    assert repr(failure) == "<spread.pb.CopiedFailure builtins.ValueError: bad value>"
    assert "builtins.ValueError: bad value" in str(failure)


def test_no_traceback_unless_unsafe() -> None:
    loop = Loop(Echo())
    assert loop.call("bug").traceback == "Traceback unavailable\n"


def test_unsafe_tracebacks_are_sent_when_asked() -> None:
    loop = Loop(Echo(), unsafeTracebacks=True)
    failure = loop.call("bug")
    assert "remote_bug" in failure.traceback
    assert "ValueError" in failure.traceback


def test_deferred_failure_arrives_as_error() -> None:
    loop = Loop(Echo())
    failure = loop.call("failLater")
    assert failure.check(MyError)
    assert failure.value == "later"


def test_raising_a_copied_failure_raises_remote_error() -> None:
    loop = Loop(Echo())
    failure = loop.call("fail")
    with pytest.raises(pb.RemoteError) as caught:
        failure.raiseException()
    assert caught.value.remoteType == failure.type
    assert caught.value.args == ("boom",)
    assert caught.value.failure is failure


def test_insecure_arguments_fail_the_call_and_keep_the_connection() -> None:
    loop = Loop(Echo())
    failure = loop.call("echo", UnregisteredCopy())
    assert failure.check(jelly.InsecureJelly)
    assert "UnregisteredCopy" in failure.value
    assert loop.call("echo", "still here") == "still here"


def test_instance_of_unallowed_class_never_arrives_as_itself() -> None:
    loop = Loop(Echo())
    outcome = loop.call("echo", Unregistered())
    assert isinstance(outcome, jelly.Unpersistable)
    assert loop.call("echo", 1) == 1


def test_undecodable_answer_errbacks_naming_the_class() -> None:
    class Sender(pb.Root):
        def remote_get(self) -> UnregisteredCopy:
            return UnregisteredCopy()

    loop = Loop(Sender())
    failure = loop.call("get")
    assert failure.check(jelly.InsecureJelly)
    assert "UnregisteredCopy" in failure.getErrorMessage()
    assert loop.call("get").check(jelly.InsecureJelly)


def test_oversized_result_errbacks_and_connection_survives() -> None:
    loop = Loop(Echo())
    failure = loop.call("huge")
    assert isinstance(failure, Failure)
    assert failure.check(banana.BananaError)
    assert loop.call("echo", "alive") == "alive"


def test_oversized_deferred_result_errbacks_too() -> None:
    loop = Loop(Echo())
    assert loop.call("hugeLater").check(banana.BananaError)
    assert loop.call("echo", "alive") == "alive"


def test_oversized_arguments_raise_from_the_call_and_send_nothing() -> None:
    loop = Loop(Echo())
    root = loop.root()
    with pytest.raises(banana.BananaError):
        root.callRemote("echo", b"x" * (banana.SIZE_LIMIT + 1))
    assert loop.client.waitingForAnswers == {}
    assert loop.call("echo", "alive") == "alive"


# -- disconnects -------------------------------------------------------------------------


def test_call_after_disconnect_raises_dead_reference() -> None:
    loop = Loop(Echo())
    root = loop.root()
    loop.close()
    with pytest.raises(pb.DeadReferenceError, match="Calling Stale Broker"):
        root.callRemote("echo", 1)


def test_pending_calls_errback_connection_lost() -> None:
    loop = Loop(Echo())
    root = loop.root()
    first, second = root.callRemote("pending"), root.callRemote("pending")
    loop.pump.flush()
    loop.close()
    for d in (first, second):
        assert loop.result(d).check(pb.PBConnectionLost)


def test_notifyOnDisconnect_fires_exactly_once() -> None:
    loop = Loop(Echo())
    root = loop.root()
    calls: list[Any] = []
    root.notifyOnDisconnect(calls.append)
    loop.close()
    loop.server.connectionLost(Failure(Exception("again")))
    loop.client.connectionLost(Failure(Exception("again")))
    assert calls == [root]


def test_dontNotifyOnDisconnect_cancels() -> None:
    loop = Loop(Echo())
    root = loop.root()
    calls: list[Any] = []
    root.notifyOnDisconnect(calls.append)
    root.dontNotifyOnDisconnect(calls.append)
    loop.close()
    assert calls == []


def test_notifyOnDisconnect_after_disconnect_fires_at_once() -> None:
    loop = Loop(Echo())
    root = loop.root()
    loop.close()
    calls: list[Any] = []
    root.notifyOnDisconnect(calls.append)
    assert calls == [root]


def test_getRootObject_after_disconnect_waits_for_a_new_connection() -> None:
    loop = Loop(Echo())
    loop.root()
    loop.close()
    assert not loop.client_factory.getRootObject().called


def test_closed_connection_can_be_collected() -> None:
    root = Echo()
    loop = Loop(root)
    ref = loop.call("thing")
    loop.call("keep", Caller())
    client_ref = weakref.ref(loop.client)
    server_ref = weakref.ref(loop.server)
    loop.close()
    root.kept.clear()
    del ref, loop
    gc.collect()
    assert client_ref() is None
    assert server_ref() is None


# -- the protocol itself -----------------------------------------------------------------


def test_unknown_message_kind_gets_didNotUnderstand_and_service_continues() -> None:
    loop = Loop(Echo())
    heard: list[Any] = []
    loop.client.proto_didNotUnderstand = heard.append  # type: ignore[method-assign]
    loop.client.sendEncoded([b"frobnicate", 1, 2])
    loop.pump.flush()
    assert heard == [b"frobnicate"]
    assert loop.call("echo", "fine") == "fine"


def test_malformed_message_drops_the_connection() -> None:
    loop = Loop(Echo())
    loop.client.sendEncoded([b"message", 1])
    loop.pump.flush()
    assert loop.server.disconnected
    assert loop.client.disconnected


def test_version_mismatch_drops_the_connection() -> None:
    loop = Loop(Echo())
    loop.client.sendEncoded([b"version", 5])
    loop.pump.flush()
    assert loop.server.disconnected


def test_answer_to_unknown_request_is_ignored() -> None:
    loop = Loop(Echo())
    loop.server.sendEncoded([b"answer", 12345, 1])
    loop.pump.flush()
    assert not loop.client.disconnected
    assert loop.call("echo", 3) == 3


# -- references --------------------------------------------------------------------------


def test_returned_referenceable_is_callable() -> None:
    loop = Loop(Echo())
    thing = loop.call("thing", "lamp")
    assert isinstance(thing, pb.RemoteReference)
    assert loop.result(thing.callRemote("name")) == "lamp"


def test_same_object_twice_is_the_same_reference() -> None:
    loop = Loop(Echo())
    first = loop.call("thing")
    second = loop.call("thing")
    assert first is second


def test_reference_sent_back_arrives_as_the_original() -> None:
    loop = Loop(Echo())
    thing = loop.call("thing")
    assert loop.call("identity", thing) is True


def test_peer_can_call_back_a_passed_reference() -> None:
    loop = Loop(Echo())
    assert loop.call("callBack", Caller(), 1) == ["hello", 1]


def test_dropping_a_reference_releases_it_on_the_server() -> None:
    loop = Loop(Echo())
    thing = loop.call("thing")
    loop.call("thing")
    assert len(loop.server._exports.locals) == 1
    del thing
    loop.release()
    assert loop.server._exports.locals == {}
    assert loop.client._imports.entries == {}


def test_many_passed_references_leave_no_tables_behind() -> None:
    root = Echo()
    loop = Loop(root)
    remote_root = loop.root()
    for _ in range(2000):
        loop.result(remote_root.callRemote("keep", Caller()))
        root.kept.clear()
        if len(loop.client._exports.locals) > 500:
            loop.release()
    loop.release()
    assert loop.server._imports.entries == {}
    assert loop.client._exports.locals == {}
    assert loop.client.localObjects == {}


def test_releases_are_sent_from_the_reactor_in_one_batch() -> None:
    loop = Loop(Echo())
    refs = [loop.call("newThing") for _ in range(3)]
    assert len(loop.server._exports.locals) == 3
    del refs
    gc.collect()
    assert len(loop.client._releases) == 3  # queued, nothing sent from the finalizer
    loop.pump.flush()
    assert len(loop.server._exports.locals) == 3
    loop.client.flushReleases()
    loop.pump.flush()
    assert loop.server._exports.locals == {}


def test_releases_flush_on_the_next_turn_of_the_factory_reactor() -> None:
    clock = task.Clock()
    loop = Loop(Echo(), reactor=clock)
    thing = loop.call("newThing")
    del thing
    gc.collect()
    loop.pump.flush()
    assert len(loop.server._exports.locals) == 1  # nothing sent until the clock turns
    clock.advance(0)
    loop.pump.flush()
    assert loop.server._exports.locals == {}


@pytest_twisted.ensureDeferred
async def test_releases_flush_on_the_global_reactor_by_default() -> None:
    loop = Loop(Echo())
    thing = loop.call("newThing")
    del thing
    gc.collect()
    await task.deferLater(reactor, 0, lambda: None)
    loop.pump.flush()
    assert loop.server._exports.locals == {}


def test_reference_in_a_result_that_fails_to_jelly_is_not_left_exported() -> None:
    loop = Loop(Echo())
    assert isinstance(loop.call("broken"), Failure)
    assert loop.server._exports.locals == {}


def test_reference_in_an_oversized_result_is_not_left_exported() -> None:
    class Big(pb.Root):
        def remote_big(self) -> Any:
            return [Thing("doomed"), b"x" * (banana.SIZE_LIMIT + 1)]

    loop = Loop(Big())
    assert loop.call("big").check(banana.BananaError)
    assert loop.server._exports.locals == {}


def test_reference_in_oversized_arguments_is_not_left_exported() -> None:
    loop = Loop(Echo())
    root = loop.root()
    with pytest.raises(banana.BananaError):
        root.callRemote("echo", [Caller(), b"x" * (banana.SIZE_LIMIT + 1)])
    assert loop.client._exports.locals == {}


def test_reference_limit_fails_the_call_not_the_connection() -> None:
    root = Echo()
    loop = Loop(root, maxBrokerRefs=2)
    refs = [loop.call("newThing") for _ in range(2)]
    failure = loop.call("newThing")
    assert failure.check(pb.Error)
    assert "limit" in failure.value
    assert loop.call("echo", 1) == 1
    del refs


def test_notifyOnRelease_runs_when_peer_drops_last_reference() -> None:
    class Publisher(pb.Root):
        def __init__(self) -> None:
            self.released: list[str] = []

        def remote_get(self) -> Thing:
            thing = Thing()
            self.broker.notifyOnRelease(thing, lambda: self.released.append("gone"))
            return thing

        def rootObject(self, broker: pb.Broker) -> Any:
            self.broker = broker
            return self

    root = Publisher()
    loop = Loop(root)
    thing = loop.call("get")
    assert root.released == []
    del thing
    loop.release()
    assert root.released == ["gone"]


# -- viewpoints and perspectives ---------------------------------------------------------


class Board(pb.Viewable):
    def view_whoami(self, perspective: Any) -> Any:
        return perspective.name


class User(pb.Avatar):
    def __init__(self, name: str) -> None:
        self.name = name

    def perspective_name(self) -> str:
        return self.name

    def perspective_board(self) -> Board:
        return Board()


def test_avatar_methods_are_perspective_methods() -> None:
    class AvatarRoot(pb.Root):
        def remote_login(self) -> pb.AsReferenceable:
            return pb.AsReferenceable(User("alice"), "perspective")

    loop = Loop(AvatarRoot())
    avatar = loop.call("login")
    assert loop.result(avatar.callRemote("name")) == "alice"


def test_viewable_methods_receive_the_perspective() -> None:
    perspective = User("carol")

    class AvatarRoot(pb.Root):
        def remote_login(self) -> pb.AsReferenceable:
            return pb.AsReferenceable(perspective, "perspective")

    loop = Loop(AvatarRoot())
    avatar = loop.call("login")
    board = loop.result(avatar.callRemote("board"))
    assert isinstance(board, pb.RemoteReference)
    assert loop.result(board.callRemote("whoami")) == "carol"


def test_viewpoint_passes_its_perspective_first() -> None:
    class Counter:
        def view_whoami(self, perspective: str, suffix: str) -> str:
            return perspective + suffix

    class ViewRoot(pb.Root):
        def remote_view(self) -> pb.ViewPoint:
            return pb.ViewPoint("bob", Counter())

    loop = Loop(ViewRoot())
    view = loop.call("view")
    assert loop.result(view.callRemote("whoami", "!")) == "bob!"
    missing = loop.result(view.callRemote("missing"))
    assert missing.check(AttributeError) and not missing.check(pb.NoSuchMethod)  # as Twisted


# -- endpoints and paging ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_works_over_a_unix_socket(tmp_path: Any) -> None:
    path = tmp_path / "pb.sock"
    port = await endpoints.serverFromString(reactor, f"unix:{path}").listen(
        pb.PBServerFactory(Echo())
    )
    try:
        factory = pb.PBClientFactory()
        await endpoints.clientFromString(reactor, f"unix:{path}:timeout=30").connect(factory)
        root = await factory.getRootObject()
        assert await root.callRemote("double", 4) == 8
        factory.disconnect()
    finally:
        await port.stopListening()


class Library(pb.Root):
    def remote_book(self, collector: pb.RemoteReference, text: bytes) -> None:
        util.StringPager(collector, text, chunkSize=4)

    def remote_lost(self, collector: pb.RemoteReference) -> None:
        raise KeyError("no such book")


def test_getAllPages_fails_when_the_call_fails() -> None:
    loop = Loop(Library())
    outcome = loop.result(util.getAllPages(loop.root(), "lost"))
    assert isinstance(outcome, Failure) and outcome.check(KeyError)


@pytest_twisted.ensureDeferred
async def test_getAllPages_collects_a_paged_string() -> None:
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        pb.PBServerFactory(Library())
    )
    try:
        factory = pb.PBClientFactory()
        await endpoints.clientFromString(
            reactor, f"tcp:127.0.0.1:{port.getHost().port}:timeout=30"
        ).connect(factory)
        root = await factory.getRootObject()
        pages = await util.getAllPages(root, "book", b"abcdefghij")
        assert pages == [b"abcd", b"efgh", b"ij"]
        factory.disconnect()
    finally:
        await port.stopListening()


def test_local_as_remote_answers_like_a_remote_object() -> None:
    class Local(util.LocalAsRemote):
        def async_add(self, a: int, b: int) -> int:
            return a + b

    outcome: list[Any] = []
    Local().remoteMethod("add")(2, 3).addCallback(outcome.append)
    assert outcome == [5]


# -- the public face ---------------------------------------------------------------------


TWISTED_NAMES = [
    "Root", "Referenceable", "PBServerFactory", "PBClientFactory", "Copyable", "RemoteCopy",
    "setUnjellyableForClass", "Error", "DeadReferenceError", "PBConnectionLost",
    "CopyableFailure", "CopiedFailure", "RemoteError", "NoSuchMethod", "Viewable", "ViewPoint",
    "IPBRoot", "Cacheable", "RemoteCache", "RemoteCacheObserver", "Avatar", "IPerspective",
    "Broker", "RemoteReference", "RemoteMethod", "ProtocolError", "AsReferenceable",
    "Jellyable", "Serializable", "Local", "MAX_BROKER_REFS", "portno", "failure2Copyable",
    "setUnjellyableForClassTree", "setUnjellyableFactoryForClass", "setCopierForClass",
    "setCopierForClassTree", "setFactoryForClass", "copyTags", "globalSecurity",
]


@pytest.mark.parametrize("name", TWISTED_NAMES)
def test_pb_offers_twisted_names(name: str) -> None:
    assert hasattr(pb, name)


class CopyableError(pb.Error, pb.Copyable, pb.RemoteCopy):
    """An error that travels as itself because both sides registered it."""


pb.setUnjellyableForClass(CopyableError, CopyableError)


def test_copyable_error_arrives_as_itself() -> None:
    class Raiser(pb.Root):
        def remote_raise(self) -> None:
            error = CopyableError("as itself")
            error.code = 7  # type: ignore[attr-defined]
            raise error

    failure = Loop(Raiser()).call("raise")
    assert isinstance(failure.value, CopyableError)
    assert failure.value.code == 7


def test_a_broker_shows_its_lifecycle_and_twisted_flags_read_only() -> None:
    loop = Loop(Echo())
    loop.root()
    assert loop.client.state is SessionState.READY
    assert loop.client.currentDialect == b"spread" and loop.client.disconnected == 0
    with pytest.raises(AttributeError):
        loop.client.currentDialect = b"none"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        loop.client.disconnected = 1  # type: ignore[misc]
    loop.close()
    assert loop.client.state is SessionState.CLOSED and loop.client.disconnected == 1
