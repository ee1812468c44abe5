"""What each flavor of object becomes on the other side: copies, views, custom jelly."""

from __future__ import annotations

from typing import Any

from twisted.test import iosim

from spread import flavors, jelly, pb

# -- a pair of brokers in memory ---------------------------------------------------------


def call(root: Any, name: str, *args: Any, client_security: Any = None,
         server_security: Any = None, **kw: Any) -> Any:
    """Connect a client to ``root`` in memory, call ``name`` once, and return the outcome."""
    server_options = {} if server_security is None else {"security": server_security}
    client_options = {} if client_security is None else {"security": client_security}
    server = pb.PBServerFactory(root, **server_options).buildProtocol(None)
    client_factory = pb.PBClientFactory(**client_options)
    client = client_factory.buildProtocol(None)
    pump = iosim.connect(
        server, iosim.FakeTransport(server, isServer=True),
        client, iosim.FakeTransport(client, isServer=False),
    )
    outcome: list[Any] = []
    client_factory.getRootObject().addCallback(
        lambda ref: ref.callRemote(name, *args, **kw)
    ).addBoth(outcome.append)
    pump.flush()
    assert outcome, "the call never finished"
    return outcome[0]


# -- the seed's copy examples --------------------------------------------------------------


class LilyPond:
    def setStuff(self, color: str, numFrogs: int) -> None:
        self.color = color
        self.numFrogs = numFrogs

    def countFrogs(self) -> str:
        return f"{self.numFrogs} frogs"


class CopyPond(LilyPond, pb.Copyable):
    pass


class ReceiverPond(pb.RemoteCopy, LilyPond):
    pass


pb.setUnjellyableForClass(CopyPond, ReceiverPond)


class FrogPond:
    def __init__(self, numFrogs: int, numToads: int) -> None:
        self.numFrogs = numFrogs
        self.numToads = numToads

    def count(self) -> int:
        return self.numFrogs + self.numToads


class SenderPond(FrogPond, pb.Copyable):
    def getStateToCopy(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["frogsAndToads"] = state.pop("numFrogs") + state.pop("numToads")
        return state


class CountingPond(pb.RemoteCopy):
    def setCopyableState(self, state: dict[str, Any]) -> None:
        self.__dict__ = state

    def count(self) -> int:
        return self.frogsAndToads  # type: ignore[no-any-return]


pb.setUnjellyableForClass(SenderPond, CountingPond)


class Receiver(pb.Root):
    def remote_takePond(self, pond: Any) -> Any:
        return [type(pond).__name__, pond.countFrogs()]

    def remote_takeCounted(self, pond: Any) -> Any:
        return [type(pond).__name__, pond.count(), sorted(vars(pond))]

    def remote_echo(self, value: Any) -> Any:
        return value

    def remote_describe(self, value: Any) -> Any:
        return [type(value).__name__, vars(value)]


def test_copyable_arrives_as_the_registered_remote_copy() -> None:
    pond = CopyPond()
    pond.setStuff("green", 7)
    assert call(Receiver(), "takePond", pond) == ["ReceiverPond", "7 frogs"]


def test_getStateToCopy_chooses_what_travels() -> None:
    assert call(Receiver(), "takeCounted", SenderPond(3, 4)) == [
        "CountingPond", 7, ["frogsAndToads"]
    ]


def test_remote_copy_is_made_without_calling_init() -> None:
    class Fussy(pb.RemoteCopy):
        def __init__(self, required: Any) -> None:
            raise AssertionError("RemoteCopy instances are made without __init__")

    class Plain(pb.Copyable):
        def __init__(self) -> None:
            self.x = 1

    pb.setUnjellyableForClass(Plain, Fussy)
    assert call(Receiver(), "describe", Plain()) == ["Fussy", {"x": 1}]


def test_unregistered_copyable_is_refused_by_the_receiver() -> None:
    class Stranger(pb.Copyable):
        pass

    failure = call(Receiver(), "echo", Stranger())
    assert failure.check(jelly.InsecureJelly)
    assert "Stranger" in failure.getErrorMessage()


def test_factory_security_decides_alone() -> None:
    strict = jelly.SecurityOptions()
    strict.allowBasicTypes()
    pond = CopyPond()
    pond.setStuff("blue", 1)
    failure = call(Receiver(), "takePond", pond, server_security=strict)
    assert failure.check(jelly.InsecureJelly)


def test_factory_security_can_allow_a_class() -> None:
    own = jelly.SecurityOptions()
    own.allowBasicTypes()
    own.allowInstancesOf(CopyPond)
    pond = CopyPond()
    pond.setStuff("blue", 2)
    assert call(Receiver(), "takePond", pond, server_security=own)[1] == "2 frogs"


# -- symmetric copies and perspectives ----------------------------------------------------


class Point(pb.Copyable, pb.RemoteCopy):
    def __init__(self, x: int = 0, y: int = 0) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


pb.setUnjellyableForClass(Point, Point)


def test_symmetric_copy_round_trips_unchanged() -> None:
    assert call(Receiver(), "echo", Point(3, 4)) == Point(3, 4)


def test_copies_inside_containers_travel_too() -> None:
    assert call(Receiver(), "echo", {"points": [Point(1, 2), (Point(5, 6),)]}) == {
        "points": [Point(1, 2), (Point(5, 6),)]
    }


class Secretive(pb.Copyable):
    def __init__(self) -> None:
        self.public = "shown"
        self.password = "hidden"

    def getStateToCopyFor(self, perspective: Any) -> dict[str, Any]:
        return {"public": self.public, "viewer": getattr(perspective, "name", None)}


class SecretiveCopy(pb.RemoteCopy):
    pass


pb.setUnjellyableForClass(Secretive, SecretiveCopy)


class Viewer(pb.Avatar):
    name = "dana"

    def perspective_secret(self) -> Secretive:
        return Secretive()


class AvatarDesk(pb.Root):
    def remote_login(self) -> pb.AsReferenceable:
        return pb.AsReferenceable(Viewer(), "perspective")


def test_getStateToCopyFor_sees_the_perspective() -> None:
    server = pb.PBServerFactory(AvatarDesk()).buildProtocol(None)
    client_factory = pb.PBClientFactory()
    client = client_factory.buildProtocol(None)
    pump = iosim.connect(
        server, iosim.FakeTransport(server, isServer=True),
        client, iosim.FakeTransport(client, isServer=False),
    )
    outcome: list[Any] = []
    (
        client_factory.getRootObject()
        .addCallback(lambda root: root.callRemote("login"))
        .addCallback(lambda avatar: avatar.callRemote("secret"))
        .addBoth(outcome.append)
    )
    pump.flush()
    (copy,) = outcome
    assert vars(copy) == {"public": "shown", "viewer": "dana"}


class Renamed(pb.Copyable):
    def getTypeToCopy(self) -> bytes:
        return b"an.agreed.Name"


class RenamedCopy(pb.RemoteCopy):
    pass


pb.setUnjellyableForClass("an.agreed.Name", RenamedCopy)


def test_getTypeToCopy_names_the_type_on_the_wire() -> None:
    class Check(pb.Root):
        def remote_kind(self, value: Any) -> str:
            return type(value).__name__

    assert call(Check(), "kind", Renamed()) == "RenamedCopy"


# -- identity helpers ---------------------------------------------------------------------


def test_referenceable_identity_is_its_id() -> None:
    thing = pb.Referenceable()
    assert thing.processUniqueID() == id(thing)


def test_viewpoint_identity_is_the_pair() -> None:
    perspective, target = object(), object()
    assert pb.ViewPoint(perspective, target).processUniqueID() == (id(perspective), id(target))


def test_root_is_its_own_root_object() -> None:
    root = pb.Root()
    assert root.rootObject(None) is root
    assert flavors.IPBRoot.providedBy(root)


def test_flavors_keeps_twisted_aliases() -> None:
    assert flavors.setCopierForClass is jelly.setUnjellyableForClass
    assert flavors.copyTags is jelly.unjellyableRegistry


class Loop(pb.Copyable, pb.RemoteCopy):
    """A copy whose state refers back to itself."""

    def __init__(self) -> None:
        self.me = self
        self.label = "loop"


pb.setUnjellyableForClass(Loop, Loop)


def test_copy_referring_to_itself_arrives_as_itself() -> None:
    class Check(pb.Root):
        def remote_check(self, value: Any) -> list[Any]:
            return [type(value).__name__, value.me is value, value.label]

    assert call(Check(), "check", Loop()) == ["Loop", True, "loop"]


class Shape(jelly.Jellyable):
    """Custom jelly: travels as [b"flavors.Shape", sides]."""

    def __init__(self, sides: int) -> None:
        self.sides = sides

    def jellyFor(self, jellier: Any) -> Any:
        return [b"flavors.Shape", self.sides]


class ShapeCopy(jelly.Unjellyable):
    def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
        self.sides = jellyList[1]
        return self


jelly.setUnjellyableForClass("flavors.Shape", ShapeCopy)


def test_custom_jellyable_arguments_travel() -> None:
    class Check(pb.Root):
        def remote_sides(self, shape: Any) -> list[Any]:
            return [type(shape).__name__, shape.sides]

    assert call(Check(), "sides", Shape(5)) == ["ShapeCopy", 5]
