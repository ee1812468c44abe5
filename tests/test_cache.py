"""Cacheable masters and their RemoteCache replicas: state, updates, release, disconnects.

Between two spread peers in memory, and against twisted.spread.pb in the same
process (bytes compared message by message, as in test_pb_wire).
"""

from __future__ import annotations

import gc
import types
from typing import Any

import pytest
from test_pb_wire import Wire, _canonical  # the in-memory wire and its comparison
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.spread import jelly as tjelly
from twisted.spread import pb as tpb

from spread import jelly as sjelly
from spread import pb as spb
from spread import publish


def make_ponds(pb: types.ModuleType) -> types.SimpleNamespace:
    """The seed's DuckPond, written once, built on ``pb`` (Twisted's or ours)."""

    class MasterDuckPond(pb.Cacheable):  # type: ignore[name-defined,misc]
        def __init__(self, ducks: list[str]) -> None:
            self.observers: list[Any] = []
            self.stopped: list[Any] = []
            self.ducks = ducks

        def getTypeToCopy(self) -> bytes:
            return b"cache.DuckPond"

        def addDuck(self, duck: str) -> list[Any]:
            self.ducks.append(duck)
            return [o.callRemote("addDuck", duck) for o in self.observers]

        def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> Any:
            self.observers.append(observer)
            return {"ducks": list(self.ducks)}

        def stoppedObserving(self, perspective: Any, observer: Any) -> None:
            self.stopped.append(observer)
            self.observers.remove(observer)

    class SlaveDuckPond(pb.RemoteCache):  # type: ignore[name-defined,misc]
        def setCopyableState(self, state: Any) -> None:
            self.cacheducks = state["ducks"]

        def observe_addDuck(self, duck: str) -> int:
            self.cacheducks.append(duck)
            return len(self.cacheducks)

    class Root(pb.Root):  # type: ignore[name-defined,misc]
        def __init__(self, pond: Any = None) -> None:
            self.pond = pond if pond is not None else MasterDuckPond(["one duck", "two duck"])
            self.held: Any = None

        def remote_pond(self) -> Any:
            return self.pond

        def remote_ponds(self) -> Any:
            return [self.pond, self.pond]

        def remote_isPond(self, value: Any) -> bool:
            return value is self.pond

        def remote_hold(self, ref: Any) -> None:
            self.held = ref

        def remote_broken(self) -> Any:
            return [self.pond, "\ud800"]  # the lone surrogate cannot be encoded

    return types.SimpleNamespace(Master=MasterDuckPond, Slave=SlaveDuckPond, Root=Root)


TWISTED = make_ponds(tpb)
SPREAD = make_ponds(spb)
tjelly.setUnjellyableForClass("cache.DuckPond", TWISTED.Slave)
sjelly.setUnjellyableForClass("cache.DuckPond", SPREAD.Slave)


def connect(server_pb: types.ModuleType = spb, client_pb: types.ModuleType = spb) -> Wire:
    objects = TWISTED if server_pb is tpb else SPREAD
    return Wire(server_pb, client_pb, objects.Root())


def master(wire: Wire) -> Any:
    return wire.server.factory.root.pond


# -- state and updates -------------------------------------------------------------------


def test_replica_receives_the_masters_state() -> None:
    wire = connect()
    replica = wire.result(wire.root().callRemote("pond"))
    assert isinstance(replica, SPREAD.Slave)
    assert replica.cacheducks == ["one duck", "two duck"]


def test_observer_calls_run_observe_methods_on_the_replica() -> None:
    wire = connect()
    replica = wire.result(wire.root().callRemote("pond"))
    (update,) = master(wire).addDuck("ugly duckling")
    assert wire.result(update) == 3
    assert replica.cacheducks == ["one duck", "two duck", "ugly duckling"]


def test_same_master_twice_is_the_same_replica_with_one_observer() -> None:
    wire = connect()
    root = wire.root()
    first = wire.result(root.callRemote("pond"))
    second = wire.result(root.callRemote("pond"))
    both = wire.result(root.callRemote("ponds"))
    assert first is second is both[0] is both[1]
    assert len(master(wire).observers) == 1


def test_same_master_over_two_connections_has_two_observers() -> None:
    pond = SPREAD.Master(["solo"])
    wires = [Wire(spb, spb, SPREAD.Root(pond)) for _ in range(2)]
    replicas = [w.result(w.root().callRemote("pond")) for w in wires]
    assert len(pond.observers) == 2
    assert pond.observers[0] != pond.observers[1]
    updates = pond.addDuck("shared")
    assert [w.result(d) for w, d in zip(wires, updates, strict=True)] == [2, 2]
    assert [r.cacheducks for r in replicas] == [["solo", "shared"], ["solo", "shared"]]


def test_replica_sent_back_arrives_as_the_master() -> None:
    wire = connect()
    root = wire.root()
    replica = wire.result(root.callRemote("pond"))
    assert wire.result(root.callRemote("isPond", replica)) is True


def test_observe_methods_are_the_only_callable_ones() -> None:
    wire = connect()
    wire.result(wire.root().callRemote("pond"))
    observer = master(wire).observers[0]
    failure = wire.result(observer.callRemote("setCopyableState", {}))
    # Twisted's answer to a missing observe_ method: a plain AttributeError.
    assert failure.check(AttributeError) and not failure.check(spb.NoSuchMethod)
    assert "observe_setCopyableState" in failure.value


# -- release -----------------------------------------------------------------------------


def test_dropping_the_replica_stops_observing_once() -> None:
    wire = connect()
    root = wire.root()
    replica = wire.result(root.callRemote("pond"))
    again = wire.result(root.callRemote("ponds"))
    observer = master(wire).observers[0]
    del replica, again
    wire.pump(collect=True)
    assert master(wire).stopped == [observer]
    assert master(wire).observers == []
    assert wire.server._cacheExports.locals == {}
    assert wire.client._cacheImports.entries == {}


class Catcher(spb.Referenceable):
    def __init__(self) -> None:
        self.caught: list[Any] = []

    def remote_catch(self, replica: Any) -> None:
        self.caught.append(replica)


def test_master_sent_again_while_release_is_in_flight_is_rebuilt() -> None:
    wire = connect()
    root = wire.root()
    catcher = Catcher()
    wire.result(root.callRemote("hold", catcher))
    replica = wire.result(root.callRemote("pond"))
    del replica
    gc.collect()
    wire.client.flushReleases()  # our decache is written, not yet delivered...
    server_root = wire.server.factory.root
    server_root.held.callRemote("catch", server_root.pond)  # ...when [cached, id] comes in
    wire.pump()
    (again,) = catcher.caught
    assert again.cacheducks == ["one duck", "two duck"]
    assert master(wire).stopped == []
    catcher.caught.clear()
    del again
    wire.pump(collect=True)
    assert len(master(wire).stopped) == 1
    assert wire.client._cacheImports.entries == {}


def test_master_in_a_message_that_fails_to_jelly_is_not_left_observed() -> None:
    wire = connect()
    failure = wire.result(wire.root().callRemote("broken"))
    assert isinstance(failure, Failure)
    assert len(master(wire).stopped) == 1
    assert master(wire).observers == []
    assert wire.server._cacheExports.locals == {}


def test_connection_loss_stops_every_observer() -> None:
    wire = connect()
    replica = wire.result(wire.root().callRemote("pond"))
    observer = master(wire).observers[0]
    wire.client.transport.loseConnection()
    wire.server.connectionLost(Failure(ConnectionError("gone")))
    assert master(wire).stopped == [observer]
    del replica


def _unhandled_errors() -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") is not None and "Unhandled" in str(event.get("log_format")):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    seen.append({"remove": lambda: globalLogPublisher.removeObserver(observe)})
    return seen


def test_observer_call_after_loss_is_a_quiet_dead_reference() -> None:
    wire = connect()
    wire.result(wire.root().callRemote("pond"))
    observer = master(wire).observers[0]
    wire.server.connectionLost(Failure(ConnectionError("gone")))
    events = _unhandled_errors()
    try:
        ignored = observer.callRemote("addDuck", "late")
        seen: list[Any] = []
        observer.callRemote("addDuck", "later").addErrback(seen.append)
        del ignored
        gc.collect()
    finally:
        events.pop()["remove"]()
    assert seen[0].check(spb.DeadReferenceError)
    assert events == []


def test_pending_observer_call_at_loss_is_not_reported_unhandled() -> None:
    wire = connect()
    wire.result(wire.root().callRemote("pond"))
    master(wire).addDuck("in flight")  # sent, never answered
    events = _unhandled_errors()
    try:
        wire.server.connectionLost(Failure(ConnectionError("gone")))
        gc.collect()
    finally:
        events.pop()["remove"]()
    assert events == []


# -- against twisted.spread ------------------------------------------------------------------


def _duck_scenario(wire: Wire) -> list[Any]:
    """The seed's DuckPond story: state, an update, sent back, sent twice, released."""
    root = wire.root()
    replica = wire.result(root.callRemote("pond"))
    out: list[Any] = [list(replica.cacheducks)]
    out.append([wire.result(d) for d in master(wire).addDuck("ugly duckling")])
    out.append(list(replica.cacheducks))
    out.append(wire.result(root.callRemote("isPond", replica)))
    out.append(len(wire.result(root.callRemote("ponds"))))
    del replica
    wire.pump(collect=True)
    out.append(len(master(wire).stopped))
    return out


EXPECTED = [
    ["one duck", "two duck"], [3], ["one duck", "two duck", "ugly duckling"], True, 2, 1
]


@pytest.mark.parametrize(
    ("server_pb", "client_pb"), [(tpb, tpb), (spb, tpb), (tpb, spb), (spb, spb)],
    ids=["twisted-twisted", "spread-server", "spread-client", "spread-spread"],
)
def test_duck_pond_story(server_pb: types.ModuleType, client_pb: types.ModuleType) -> None:
    wire = connect(server_pb, client_pb)
    assert _duck_scenario(wire) == EXPECTED


def test_spread_master_sends_what_a_twisted_master_sends() -> None:
    reference, ours = connect(tpb, tpb), connect(spb, tpb)
    _duck_scenario(reference)
    _duck_scenario(ours)
    assert _canonical(ours.to_client) == _canonical(reference.to_client)
    assert _canonical(ours.to_server) == _canonical(reference.to_server)


def test_spread_replica_sends_what_a_twisted_replica_sends() -> None:
    reference, ours = connect(tpb, tpb), connect(tpb, spb)
    _duck_scenario(reference)
    _duck_scenario(ours)
    assert _canonical(ours.to_server) == _canonical(reference.to_server)
    assert _canonical(ours.to_client) == _canonical(reference.to_client)


def test_twisted_master_connection_loss_reaches_spread_replica_side() -> None:
    wire = connect(spb, tpb)
    wire.result(wire.root().callRemote("pond"))
    observer = master(wire).observers[0]
    wire.client.transport.loseConnection()
    wire.server.connectionLost(Failure(ConnectionError("gone")))
    assert master(wire).stopped == [observer]


# -- spread.publish ------------------------------------------------------------------------


class Bulletin(publish.Publishable):
    def __init__(self, publishedID: str, text: str) -> None:
        super().__init__(publishedID)
        self.text = text
        self.fetches = 0

    def getStateToPublish(self) -> dict[str, Any]:
        self.fetches += 1
        return {"text": self.text}


class BulletinCopy(publish.RemotePublished):
    pass


sjelly.setUnjellyableForClass(Bulletin, BulletinCopy)


class Board(spb.Root):
    def __init__(self, bulletin: Bulletin) -> None:
        self.bulletin = bulletin

    def remote_bulletin(self) -> Bulletin:
        return self.bulletin


def _ready(wire: Wire) -> Any:
    return wire.result(publish.whenReady(wire.root().callRemote("bulletin")))


def test_whenReady_fires_once_the_published_state_is_in(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bulletin = Bulletin("news", "hello")
    copy = _ready(Wire(spb, spb, Board(bulletin)))
    assert isinstance(copy, BulletinCopy)
    assert copy.isActivated
    assert copy.text == "hello"
    assert bulletin.fetches == 1


class Unreadable(Bulletin):
    def getStateToPublish(self) -> dict[str, Any]:
        raise OSError("the archive is offline")


sjelly.setUnjellyableForClass(Unreadable, BulletinCopy)


def test_whenReady_fails_when_the_state_cannot_be_fetched(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = _ready(Wire(spb, spb, Board(Unreadable("news", "hello"))))
    assert isinstance(outcome, Failure) and outcome.check(OSError)


def test_published_state_is_reused_from_the_file_when_fresh(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bulletin = Bulletin("news", "hello")
    _ready(Wire(spb, spb, Board(bulletin)))
    again = _ready(Wire(spb, spb, Board(bulletin)))
    assert again.text == "hello"
    assert again._wasCleanWhenLoaded
    assert bulletin.fetches == 1


def test_republished_state_is_fetched_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bulletin = Bulletin("news", "hello")
    _ready(Wire(spb, spb, Board(bulletin)))
    bulletin.text = "changed"
    bulletin.republish()
    assert _ready(Wire(spb, spb, Board(bulletin))).text == "changed"
    assert bulletin.fetches == 2
