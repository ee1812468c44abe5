"""A message that cannot be sent takes back exactly what it exported, and nothing else.

Each message part is jellied with its own log of the objects it exported by reference (or as
caches); when the message cannot leave (an argument that fails to serialize, a result too
large to encode), that log, and only it, is rolled back. An earlier spread kept the last log
in a slot on the broker, so a failing call could take back what an earlier *answer* had
exported, and the peer's next call on that object failed with "Invalid Object ID".
"""

from __future__ import annotations

from typing import Any

from test_pb_wire import Wire
from twisted.python.failure import Failure

from spread import pb
from spread.banana import SIZE_LIMIT

TOO_BIG = b"x" * (SIZE_LIMIT + 1)  # banana refuses to encode it, after jelly exported the rest


class Thing(pb.Referenceable):
    def remote_ping(self) -> str:
        return "pong"


class Unsendable(pb.Copyable):
    def getStateToCopy(self) -> dict[str, Any]:
        raise RuntimeError("this object cannot be copied")


class Board(pb.Cacheable):
    def __init__(self) -> None:
        self.observers: list[Any] = []

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> dict[str, int]:
        self.observers.append(observer)
        return {"n": 1}


class BoardReplica(pb.RemoteCache):
    def observe_update(self, *args: Any) -> None:
        pass


pb.setUnjellyableForClass(Board, BoardReplica)


class HeavyError(pb.Error, pb.Copyable):
    """An error that travels as itself, and cannot: it holds a reference and too many bytes."""

    def getStateToCopy(self) -> dict[str, Any]:
        return {"thing": Thing(), "blob": TOO_BIG}


class Server(pb.Root):
    def __init__(self) -> None:
        self.callback_outcome: Any = None
        self.board = Board()

    def remote_make(self) -> Thing:
        return Thing()

    def remote_callMeBack(self, client: Any) -> str:
        d = client.callRemote("take", Unsendable(), k=1)
        d.addErrback(lambda failure: failure.getErrorMessage())
        d.addCallback(self._keep)
        return "called"

    def _keep(self, outcome: Any) -> None:
        self.callback_outcome = outcome

    def remote_tooBig(self) -> tuple[Thing, bytes]:
        return Thing(), TOO_BIG

    def remote_heavyError(self) -> None:
        raise HeavyError("heavy")

    def remote_board(self) -> Board:
        return self.board


class Client(pb.Referenceable):
    def remote_take(self, *args: Any, **kw: Any) -> None:
        raise AssertionError("the call should never have been sent")


def exported(broker: Any) -> int:
    """How many objects (other than named ones such as root) the peer holds of ``broker``'s."""
    return len(broker.localObjects) - 1 if b"root" in broker.localObjects else len(
        broker.localObjects
    )


def test_failing_callback_with_kwargs_keeps_what_an_earlier_answer_exported() -> None:
    wire = Wire(pb, pb, Server())
    root = wire.root()
    thing = wire.result(root.callRemote("make"))
    assert wire.result(root.callRemote("callMeBack", Client())) == "called"
    assert "cannot be copied" in wire.server.factory.root.callback_outcome
    assert wire.result(thing.callRemote("ping")) == "pong"


def test_kwargs_exported_before_the_arguments_failed_are_taken_back() -> None:
    wire = Wire(pb, pb, Server())
    root = wire.root()
    before = exported(wire.client)
    outcome = wire.result(root.callRemote("anything", Unsendable(), k=Thing()))
    assert isinstance(outcome, Failure) and outcome.check(RuntimeError)
    assert exported(wire.client) == before


def test_an_answer_too_large_to_send_takes_back_its_exports_only() -> None:
    wire = Wire(pb, pb, Server())
    root = wire.root()
    kept = wire.result(root.callRemote("make"))
    outcome = wire.result(root.callRemote("tooBig"))
    assert isinstance(outcome, Failure)
    assert exported(wire.server) == 1  # the Thing from make(), not the one in the big answer
    assert wire.result(kept.callRemote("ping")) == "pong"


def test_an_error_too_large_to_send_takes_back_its_exports_only() -> None:
    wire = Wire(pb, pb, Server())
    root = wire.root()
    kept = wire.result(root.callRemote("make"))
    outcome = wire.result(root.callRemote("heavyError"))
    assert isinstance(outcome, Failure)
    assert "could not be sent" in outcome.getErrorMessage()
    assert exported(wire.server) == 1
    assert wire.result(kept.callRemote("ping")) == "pong"


def test_a_cache_message_that_cannot_be_sent_takes_back_its_exports_only() -> None:
    wire = Wire(pb, pb, Server())
    root = wire.root()
    kept = wire.result(root.callRemote("make"))
    replica = wire.result(root.callRemote("board"))
    [observer] = wire.server.factory.root.board.observers
    outcome = wire.result(observer.callRemote("update", Thing(), TOO_BIG))
    assert isinstance(outcome, Failure)
    assert exported(wire.server) == 1
    assert wire.result(kept.callRemote("ping")) == "pong"
    assert isinstance(replica, BoardReplica)
