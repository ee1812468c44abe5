"""What an idle connection holds: few objects, so that a server of thousands of connections
stays small and the garbage collector, which walks every object it tracks on each full
collection, does not make accepting the next connection slower (issue 14, point 3).

Counts, not timings: the objects the collector tracks that only a server broker reaches.
"""

from __future__ import annotations

import gc
from typing import Any

from test_pb import Loop

from spread import pb
from spread.banana import Decoder, Encoder
from spread.limits import Limits

IDLE_SERVER_OBJECTS = 8
"""At most this many collector-tracked objects per idle server connection (6 today over an
in-memory transport: the broker, its dict, its codec, its names; Twisted's broker holds 12)."""


class Point(pb.Copyable):
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class PointCopy(pb.RemoteCopy):
    pass


pb.setUnjellyableForClass(Point, PointCopy)


class Service(pb.Root):
    def remote_add(self, a: int, b: int) -> int:
        return a + b


def reachable_only_from(root: Any, elsewhere: list[Any]) -> list[Any]:
    """Tracked objects reachable from ``root`` but from none of ``elsewhere`` (shared things:
    the factory, the root object, the modules)."""
    shared: set[int] = set()
    todo = list(elsewhere)
    while todo:
        obj = todo.pop()
        if id(obj) in shared or obj is root or not gc.is_tracked(obj):
            continue
        shared.add(id(obj))
        todo.extend(gc.get_referents(obj))
    found: dict[int, Any] = {}
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in found or id(obj) in shared or not gc.is_tracked(obj):
            continue
        if isinstance(obj, type) or type(obj).__name__ == "module":
            continue
        found[id(obj)] = obj
        todo.extend(gc.get_referents(obj))
    return list(found.values())


def test_an_idle_connection_makes_no_tables_it_does_not_use() -> None:
    loop = Loop(Service())
    assert loop.call("add", 1, 2) == 3
    made = vars(loop.server)
    # The root is published by name; no reference, cache or release table was needed, and
    # nobody asked to be told of a disconnect, nor paged.
    assert made["_names"] == {b"root": loop.server_factory.root}
    for table in (
        "_exports", "_ids", "_imports", "_cacheExports", "_cacheImports", "_releases",
        "disconnects", "failures", "connects", "pageProducers",
    ):  # fmt: skip
        assert not made.get(table), f"{table} was made for a connection that never used it"
    loop.close()


def test_an_idle_server_connection_holds_few_objects() -> None:
    loop = Loop(Service())
    loop.root()
    shared = [loop.server_factory, loop.client, loop.server.transport, loop.pump]
    held = reachable_only_from(loop.server, shared)
    assert len(held) <= IDLE_SERVER_OBJECTS, sorted(type(o).__name__ for o in held)
    loop.close()


def test_jelly_shortcuts_are_probed_on_the_first_message_not_on_accepting() -> None:
    loop = Loop(Service())
    loop.root()
    assert "_fastJelly" not in vars(loop.server) and "_fastUnjelly" not in vars(loop.server)
    assert loop.call("add", 1, 2) == 3
    assert vars(loop.server)["_fastJelly"] is True and vars(loop.server)["_fastUnjelly"] is True
    loop.close()


class NameWatcher(pb.Broker):
    def setNameForLocal(self, name: str | bytes, object: Any) -> None:
        vars(self).setdefault("named", []).append(name)
        super().setNameForLocal(name, object)


def test_the_root_is_published_by_name_with_or_without_setNameForLocal() -> None:
    factory = pb.PBServerFactory(Service())
    plain = factory.buildProtocol(None)
    factory.protocol = NameWatcher
    watched = factory.buildProtocol(None)
    assert watched.named == ["root"]  # a subclass that overrides it still sees the root go by
    for broker in (plain, watched):
        assert broker.localObjectForID(b"root") is factory.root
        assert broker.localObjectForID("root") is factory.root


def test_the_tables_made_late_still_work_and_keep_the_limit() -> None:
    loop = Loop(Service(), maxBrokerRefs=5)
    loop.root()
    loop.server.setReferenceLimit(2)
    loop.server.registerReference(pb.Referenceable())
    loop.server.registerReference(pb.Referenceable())
    try:
        loop.server.registerReference(pb.Referenceable())
    except pb.Error as error:
        assert "limit 2" in str(error)
    else:
        raise AssertionError("the limit set before the table existed was not applied")
    loop.close()


def test_a_closed_idle_connection_makes_no_tables_to_clear_them() -> None:
    loop = Loop(Service())
    loop.root()
    loop.close()
    assert loop.server.disconnected
    assert "_imports" not in vars(loop.server)


def test_the_decoder_keeps_nothing_it_returned() -> None:
    decoder = Decoder()
    message = decoder.feed(Encoder().encode([b"version", [1, 2]]))
    assert message == [[b"version", [1, 2]]]
    holders = [r for r in gc.get_referrers(message) if r is not message]
    assert all(not isinstance(r, (list, tuple)) for r in holders), holders


def test_connections_waiting_to_log_in_share_one_set_of_limits() -> None:
    limits = Limits(maxMessageSize=10_000_000)
    before = limits.beforeLogin()
    assert before.maxMessageSize == limits.maxMessageSizeBeforeLogin
    assert limits.beforeLogin() is before  # worked out once, not per connection
    assert before.beforeLogin().maxMessageSize == before.maxMessageSize


def cyclic_garbage(action: Any, times: int = 20) -> list[Any]:
    """What ``action()`` leaves for the cyclic garbage collector (not freed by refcounting)."""
    for _ in range(3):
        action()
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(times):
            action()
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_unjelly_leaves_no_cycles_to_collect() -> None:
    # The general path (a registered class, which the C shortcut leaves to Python): the
    # unjellier's dispatch caches hold bound methods of itself until it is released.
    from spread import jelly

    sexp = jelly.jelly(("text", Point(1, 2)), jelly.globalSecurity)
    assert cyclic_garbage(lambda: jelly.unjelly(sexp)) == []


def test_a_login_leaves_no_cycles_to_collect() -> None:
    from support import Realm
    from test_login import make_portal
    from twisted.cred import credentials

    realm = Realm()
    connected: list[Any] = []  # kept: a whole connection is a cycle (transport, protocol)

    def login() -> None:
        loop = Loop.between(pb.PBServerFactory(make_portal(realm)), pb.PBClientFactory())
        avatar = loop.result(
            loop.client_factory.login(credentials.UsernamePassword(b"alice", b"secret"))
        )
        assert isinstance(avatar, pb.RemoteReference)
        loop.server.flushReleases()
        loop.client.flushReleases()
        loop.pump.flush()
        connected.append((loop, avatar))

    leftovers = cyclic_garbage(login)
    assert [o for o in leftovers if "spread" in type(o).__module__] == [], leftovers[:20]


class Failing(pb.Root):
    def remote_fail(self) -> None:
        raise pb.Error("refused")


def test_a_failed_call_leaves_no_cycles_to_collect() -> None:
    # Twisted's broker leaves none either: a failure held by a frame of its own traceback
    # would keep every frame of the failed call for the cyclic collector.
    loop = Loop(Failing())
    root = loop.root()

    def fail() -> None:
        outcome = loop.result(root.callRemote("fail"))
        assert outcome.check(pb.Error)

    assert cyclic_garbage(fail) == []


def test_a_local_as_remote_failure_leaves_no_cycles_to_collect() -> None:
    from spread.util import LocalAsRemote

    class Local(LocalAsRemote):
        reportAllTracebacks = False

        def async_fail(self) -> None:
            raise ValueError("no")

    local = Local()

    def fail() -> None:
        local.callRemote("fail").addErrback(lambda failure: None)

    assert cyclic_garbage(fail) == []


def test_a_call_waiting_for_its_answer_holds_two_objects() -> None:
    # Its Deferred and that Deferred's callback list; the canceller needs no closure per call.
    loop = Loop(Service())
    root = loop.root()
    gc.collect()
    before = len(gc.get_objects())
    waiting = [root.callRemote("add", n, 1) for n in range(200)]
    gc.collect()
    per_call = (len(gc.get_objects()) - before - 1) / len(waiting)  # (- the list itself)
    assert per_call <= 2.1, per_call
    loop.pump.flush()
    assert [loop.result(d) for d in waiting] == [n + 1 for n in range(200)]
    waiting[0].cancel()  # (answered already: nothing to cancel, nothing breaks)


def test_a_reference_makes_its_callback_list_only_when_asked() -> None:
    loop = Loop(Service())
    root = loop.root()
    assert "disconnectCallbacks" not in vars(root)
    told: list[Any] = []
    root.notifyOnDisconnect(told.append)
    assert root.disconnectCallbacks == [told.append]
    loop.close()
    assert told == [root]
