"""The DuckPond example (examples/cache_*.py) run as docs/howto-cacheable.md tells readers to
run it, and against the same program written with real twisted.spread, in both directions:
initial state, observe_ updates, decache -> stoppedObserving, and connection loss."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import pytest_twisted
from support import EXAMPLES, PEERS, TIMEOUT, PeerProcess, Program, run_program
from twisted.internet import endpoints, reactor

from spread import pb

pytestmark = pytest.mark.interop

SENDER_SAYS = [
    "I have [2] ducks",
    "I have [3] ducks",
    "I have [2] ducks",
    "a replica stopped watching",
]
RECEIVER_SAYS = [
    " cache - sitting, er, setting ducks",
    "got pond: SlaveDuckPond",
    "[2] ducks: ['one duck', 'two duck']",
    " cache - addDuck",
    "[3] ducks: ['one duck', 'two duck', 'ugly duckling']",
    " cache - removeDuck",
    "[2] ducks: ['two duck', 'ugly duckling']",
    "dropping pond",
]
TWISTED = PEERS / "twisted_duckpond.py"


def start(programs: list[Program], script: Any, *args: str) -> Program:
    programs.append(Program(script, *args))
    return programs[-1]


def spread_receiver(programs: list[Program]) -> tuple[Program, str]:
    receiver = start(programs, "cache_receiver.py", "tcp:0:interface=127.0.0.1")
    return receiver, receiver.port()


def twisted_receiver(programs: list[Program]) -> tuple[Program, str]:
    receiver = start(programs, TWISTED, "receive")
    return receiver, receiver.port()


def spread_send(port: str) -> list[str]:
    return run_program("cache_sender.py", f"tcp:host=127.0.0.1:port={port}")


def twisted_send(port: str) -> list[str]:
    return run_program(TWISTED, "send", port)


def received(receiver: Program) -> list[str]:
    receiver.expect("^dropping pond$")
    return receiver.lines[1:]


@pytest.mark.parametrize(
    ("receive", "send"),
    [
        (spread_receiver, spread_send),
        (twisted_receiver, spread_send),
        (spread_receiver, twisted_send),
    ],
    ids=["spread-to-spread", "spread-to-twisted", "twisted-to-spread"],
)
def test_duckpond(programs: list[Program], receive: Any, send: Any) -> None:
    receiver, port = receive(programs)
    assert send(port) == SENDER_SAYS
    assert received(receiver) == RECEIVER_SAYS


def test_twisted_master_stops_observing_when_spread_receiver_dies(
    programs: list[Program],
) -> None:
    receiver, port = spread_receiver(programs)
    sender = start(programs, TWISTED, "send", port, "hold")
    sender.expect("^holding$")
    receiver.expect(r"^\[3\] ducks")
    receiver.process.kill()
    sender.expect("^a replica stopped watching$")
    assert sender.end_input() == 0


@pytest_twisted.ensureDeferred
async def test_spread_master_stops_observing_when_twisted_receiver_dies() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from cache_classes import MasterDuckPond
    finally:
        sys.path.remove(str(EXAMPLES))
    peer = PeerProcess.spawn(TWISTED, "receive")
    try:
        port = (await peer.line("twisted receiver listening on port ")).split()[-1]
        factory = pb.PBClientFactory()
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", int(port))
        await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
        root = await factory.getRootObject()
        master = MasterDuckPond(["one duck"])
        await root.callRemote("takePond", master).addTimeout(TIMEOUT, reactor)
        assert len(master.observers) == 1
        peer.kill()
        await master.unwatched.addTimeout(TIMEOUT, reactor)
        assert master.observers == []
    finally:
        peer.kill()
        await peer.ended()
