"""``broadcast``: one call to many peers, its arguments serialized once where that is exact
(issue 14, point 4). Each test counts the serializer's work or checks what every peer got."""

from __future__ import annotations

from typing import Any

from test_pb import Loop
from twisted.internet import defer
from twisted.spread import pb as tpb

from spread import pb
from spread.styles import Versioned


class Note(pb.Copyable):
    copies = 0  # how many times a Note was serialized, all connections together

    def __init__(self, text: str) -> None:
        self.text = text

    def getStateToCopy(self) -> dict[str, Any]:
        Note.copies += 1
        return {"text": self.text}


class NoteCopy(pb.RemoteCopy):
    pass


class Personal(pb.Copyable):
    """A copy that may differ per perspective: never shared."""

    asked = 0

    def getStateToCopyFor(self, perspective: Any) -> dict[str, Any]:
        Personal.asked += 1
        return {"for": repr(perspective)}


class PersonalCopy(pb.RemoteCopy):
    pass


class Stamped(pb.Copyable, Versioned):
    persistenceVersion = 2

    def __init__(self) -> None:
        self.value = 1


class StampedCopy(pb.RemoteCopy):
    pass


class Master(pb.Cacheable):
    def __init__(self) -> None:
        self.observers: list[Any] = []

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> dict[str, Any]:
        self.observers.append(observer)
        return {}


class Replica(pb.RemoteCache):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def setCopyableState(self, state: dict[str, Any]) -> None:
        self.seen = []

    def observe_update(self, value: Any, number: Any = None) -> str:
        self.seen.append(value if number is None else (value, number))
        return "ok"


class TwistedReplica(tpb.RemoteCache):  # type: ignore[misc]
    def setCopyableState(self, state: dict[str, Any]) -> None:
        self.seen: list[Any] = []

    def observe_update(self, value: Any) -> str:
        self.seen.append(value)
        return "ok"


class TwistedStampedCopy(tpb.RemoteCopy):  # type: ignore[misc]
    pass


class Mind(pb.Referenceable):
    def __init__(self) -> None:
        self.heard: list[Any] = []

    def remote_hear(self, value: Any) -> str:
        self.heard.append(value)
        return "heard"


class Service(pb.Root):
    def __init__(self) -> None:
        self.master = Master()
        self.minds: list[Any] = []

    def remote_subscribe(self) -> Master:
        return self.master

    def remote_join(self, mind: Any) -> None:
        self.minds.append(mind)


for local, remote in ((Note, NoteCopy), (Personal, PersonalCopy), (Stamped, StampedCopy),
                      (Master, Replica)):  # fmt: skip
    pb.setUnjellyableForClass(local, remote)


def subscribed(service: Service, count: int) -> tuple[list[Loop], list[Replica]]:
    loops = [Loop(service) for _ in range(count)]
    replicas = [loop.result(loop.root().callRemote("subscribe")) for loop in loops]
    return loops, replicas


def flush(loops: list[Loop]) -> None:
    for _ in range(2):
        for loop in loops:
            loop.pump.flush()


def test_an_update_to_many_connections_is_serialized_once() -> None:
    service = Service()
    loops, replicas = subscribed(service, 3)
    Note.copies = 0
    calls = pb.broadcast(service.master.observers, "update", Note("hello"), 7)
    flush(loops)
    assert Note.copies == 1
    assert [loop.result(d) for loop, d in zip(loops, calls, strict=True)] == ["ok"] * 3
    for replica in replicas:
        note, number = replica.seen[0]
        assert isinstance(note, NoteCopy) and note.text == "hello" and number == 7
    # The same updates one callRemote at a time serialize once per observer.
    for observer in service.master.observers:
        observer.callRemote("update", Note("again"))
    flush(loops)
    assert Note.copies == 4
    assert [replica.seen[-1].text for replica in replicas] == ["again"] * 3


def test_keyword_arguments_are_shared_too() -> None:
    service = Service()
    loops, replicas = subscribed(service, 2)
    Note.copies = 0
    pb.broadcast(service.master.observers, "update", value=Note("kw"))
    flush(loops)
    assert Note.copies == 1
    assert [replica.seen[0].text for replica in replicas] == ["kw", "kw"]


def test_a_copy_that_depends_on_the_perspective_is_made_for_each_connection() -> None:
    service = Service()
    loops, replicas = subscribed(service, 3)
    Personal.asked = 0
    pb.broadcast(service.master.observers, "update", Personal())
    flush(loops)
    assert Personal.asked == 3
    assert all(isinstance(replica.seen[0], PersonalCopy) for replica in replicas)


def test_references_are_exported_on_each_connection() -> None:
    service = Service()
    loops, replicas = subscribed(service, 3)
    mind = Mind()
    pb.broadcast(service.master.observers, "update", mind)
    flush(loops)
    for loop, replica in zip(loops, replicas, strict=True):
        reference = replica.seen[0]
        assert isinstance(reference, pb.RemoteReference)
        assert loop.result(reference.callRemote("hear", loop.client.transport is not None))
    assert mind.heard == [True, True, True]


def test_remote_references_as_targets_and_a_closed_connection_fails_only_its_call() -> None:
    service = Service()
    loops = [Loop(service) for _ in range(3)]
    minds = [Mind() for _ in loops]
    for loop, mind in zip(loops, minds, strict=True):
        loop.result(loop.root().callRemote("join", mind))
    loops[1].close()
    calls = pb.broadcast(service.minds, "hear", [1, 2])
    flush(loops)
    outcomes = [loop.result(d) for loop, d in zip(loops, calls, strict=True)]
    assert outcomes[0] == outcomes[2] == "heard"
    assert outcomes[1].check(pb.DeadReferenceError)
    assert [mind.heard for mind in minds] == [[[1, 2]], [], [[1, 2]]]


def test_a_twisted_peer_gets_twisteds_forms_even_after_a_spread_peer() -> None:
    # Versioned copies carry their versions only in the spread dialect: a serialization
    # made for the spread peer must not reach the Twisted one.
    tpb.setUnjellyableForClass(f"{__name__}.Master", TwistedReplica)
    tpb.setUnjellyableForClass(f"{__name__}.Stamped", TwistedStampedCopy)
    service = Service()
    ours = Loop(service)
    theirs = Loop.between(pb.PBServerFactory(service), tpb.PBClientFactory())
    loops = [ours, theirs]
    replicas = [
        loop.result(loop.result(loop.client_factory.getRootObject()).callRemote("subscribe"))
        for loop in loops
    ]
    assert ours.server.spreadDialect and not theirs.server.spreadDialect
    pb.broadcast(service.master.observers, "update", Stamped())
    flush(loops)
    assert isinstance(replicas[1], TwistedReplica)
    received = replicas[1].seen[0]
    assert received.__dict__ == {"value": 1}  # no version key: exactly Twisted's protocol
    # (the spread peer, served first, did get the versions)
    assert replicas[0].seen[0].__dict__ == {"value": 1, f"{__name__}.Stamped.persistenceVersion": 2}


def test_broadcast_to_no_one_does_nothing() -> None:
    assert pb.broadcast([], "update", 1) == []


def test_a_failed_serialization_fails_every_call_without_raising() -> None:
    service = Service()
    loops, _ = subscribed(service, 2)
    # A Twisted flavor in a spread program: refused (a TypeError that names the fix).
    calls = pb.broadcast(service.master.observers, "update", tpb.Referenceable())
    flush(loops)
    failures: list[Any] = []
    for d in calls:
        d.addErrback(failures.append)
    assert len(failures) == 2 and all(f.check(TypeError) for f in failures), failures
    assert isinstance(calls[0], defer.Deferred)
