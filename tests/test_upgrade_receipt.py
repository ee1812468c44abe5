"""Upgrade on receipt: a RemoteCopy that is also Versioned upgrades state sent by older code
before setCopyableState sees it, refuses state from newer code, and stays wire-compatible with
Twisted peers (which send no versions, so count as version 0), over real connections."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_twisted
from support import TIMEOUT, PeerProcess
from twisted.internet import endpoints, reactor
from twisted.python.failure import Failure

from spread import jelly, pb
from spread.styles import Versioned

WIRE_NAME = "inventory.Thing"


class ThingV1(pb.Copyable, Versioned):
    """The sender as version 1 of the code left it: one field, ``name``."""

    persistenceVersion = 1

    def __init__(self, name: str) -> None:
        self.name = name

    def getTypeToCopy(self) -> bytes:
        return WIRE_NAME.encode()


class ThingV5(ThingV1):
    persistenceVersion = 5


class PlainThing(pb.Copyable):
    """An unversioned sender: counts as version 0."""

    def __init__(self, title: str) -> None:
        self.title = title

    def getTypeToCopy(self) -> bytes:
        return WIRE_NAME.encode()


class ReceivedThing(pb.RemoteCopy, Versioned):
    """Version 3 of the receiving code: ``title`` (v1 renamed it ``name``), then a ``tags`` list
    (v2), then ``label`` derived from both (v3). Records the state setCopyableState saw."""

    persistenceVersion = 3
    seen: dict[str, Any]

    def upgradeToVersion1(self) -> None:
        self.name = self.__dict__.pop("title")

    def upgradeToVersion2(self) -> None:
        self.tags = []

    def upgradeToVersion3(self) -> None:
        self.label = f"{self.name} {self.tags}"

    def setCopyableState(self, state: dict[str, Any]) -> None:
        seen = dict(state)
        super().setCopyableState(state)
        self.seen = seen


class Receiver(pb.Root):
    def remote_take(self, thing: ReceivedThing) -> dict[str, Any]:
        return thing.seen

    def remote_ping(self) -> str:
        return "pong"


pytestmark = pytest.mark.usefixtures("clean_registries")  # (registered() alone missed some)


@pytest.fixture
def registered() -> Iterator[None]:
    """Bind the wire name for one test, then put back whatever was there."""
    names = [WIRE_NAME, "twisted_types.Pond"]
    saved = {name: jelly.unjellyableRegistry.get(name) for name in names}
    pb.setUnjellyableForClass(WIRE_NAME, ReceivedThing)
    yield
    for name, previous in saved.items():
        if previous is None:
            jelly.unjellyableRegistry.pop(name, None)
        else:
            jelly.unjellyableRegistry[name] = previous


@pytest_twisted.async_yield_fixture
async def receiver(registered: None) -> AsyncIterator[Any]:
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        pb.PBServerFactory(Receiver())
    )
    factory = pb.PBClientFactory()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
    root = await factory.getRootObject()
    try:
        yield root
    finally:
        factory.disconnect()
        await port.stopListening()


async def call(root: Any, method: str, *args: object) -> Any:
    return await root.callRemote(method, *args).addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_state_from_an_older_sender_is_upgraded_before_setCopyableState(
    receiver: Any,
) -> None:
    seen = await call(receiver, "take", ThingV1("lamp"))
    assert seen == {"name": "lamp", "tags": [], "label": "lamp []"}


@pytest_twisted.ensureDeferred
async def test_unversioned_sender_counts_as_version_0(receiver: Any) -> None:
    seen = await call(receiver, "take", PlainThing("desk"))
    assert seen == {"name": "desk", "tags": [], "label": "desk []"}


@pytest_twisted.ensureDeferred
async def test_version_keys_do_not_reach_setCopyableState(receiver: Any) -> None:
    seen = await call(receiver, "take", ThingV1("lamp"))
    assert not [key for key in seen if key.endswith("persistenceVersion")]


@pytest_twisted.ensureDeferred
async def test_state_from_a_newer_sender_is_refused_naming_both_versions(receiver: Any) -> None:
    outcome: list[Any] = []
    d = receiver.callRemote("take", ThingV5("lamp"))
    await d.addTimeout(TIMEOUT, reactor).addBoth(outcome.append)
    failure = outcome[0]
    assert isinstance(failure, Failure)
    message = failure.getErrorMessage()
    assert "version 5" in message
    assert "version 3" in message


@pytest_twisted.ensureDeferred
async def test_connection_keeps_working_after_a_refused_newer_state(receiver: Any) -> None:
    d = receiver.callRemote("take", ThingV5("lamp"))
    await d.addTimeout(TIMEOUT, reactor).addErrback(lambda failure: None)
    assert await call(receiver, "ping") == "pong"


# -- against a real twisted.spread peer ------------------------------------------------------


class UpgradedPond(pb.RemoteCopy, Versioned):
    """The spread side's newer idea of a Twisted peer's Pond: v1 renamed ``frogsAndToads``."""

    persistenceVersion = 1

    def upgradeToVersion1(self) -> None:
        self.count = self.__dict__.pop("frogsAndToads")


class VersionedPond(pb.Copyable, Versioned):
    """A versioned spread Copyable sent to a Twisted peer that knows nothing of versions."""

    persistenceVersion = 2

    def getTypeToCopy(self) -> bytes:
        return b"spread_types.Pond"

    def getStateToCopy(self) -> dict[str, Any]:
        return {"frogsAndToads": 9, "origin": "spread"}


@pytest_twisted.async_yield_fixture
async def twisted_root(registered: None) -> AsyncIterator[Any]:
    peer = PeerProcess.spawn("twisted_server.py")
    factory = pb.PBClientFactory()
    try:
        port = int((await peer.line("PORT ")).split()[1])
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
        yield await factory.getRootObject()
    finally:
        factory.disconnect()
        await peer.finish()


@pytest.mark.interop
@pytest_twisted.ensureDeferred
async def test_copy_from_twisted_is_taken_at_the_receivers_version(twisted_root: Any) -> None:
    # A Twisted sender stamps no version whatever its version: as in Twisted, its state is
    # taken as current, and no upgrade re-runs on it (that would corrupt current data).
    pb.setUnjellyableForClass("twisted_types.Pond", UpgradedPond)
    pond = await call(twisted_root, "makePond", 3, 4)
    assert isinstance(pond, UpgradedPond)
    assert vars(pond) == {"frogsAndToads": 7, "origin": "twisted"}


class VersionedState(pb.Copyable, Versioned):
    persistenceVersion = 3

    def getTypeToCopy(self) -> bytes:
        return b"spread_types.State"

    def getStateToCopy(self) -> dict[str, Any]:
        return {"frogs": 2}


@pytest.mark.interop
@pytest_twisted.ensureDeferred
async def test_a_twisted_receiver_gets_exactly_what_twisted_sends(twisted_root: Any) -> None:
    assert await call(twisted_root, "stateOf", VersionedState()) == {"frogs": 2}


@pytest.mark.interop
@pytest_twisted.ensureDeferred
async def test_twisted_peer_accepts_a_versioned_copy(twisted_root: Any) -> None:
    described = await call(twisted_root, "pondCount", VersionedPond())
    assert described == {"type": "twisted_types.PondCopy", "origin": "spread", "count": 9}
