"""The server ``spread demo`` starts in a child process: ``python -m spread._demo ENDPOINT``.

Its own module, not a hidden subcommand, so the command line lists exactly what users may run.
It prints the port it listens on and serves until its parent closes its stdin (or dies) or
calls ``shutdown``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer, endpoints, protocol
from twisted.python.failure import Failure

from spread import pb

DEMO_SERVER_ENDPOINT = "tcp:0:interface=127.0.0.1"


class DemoError(pb.Error):
    """What the demo server raises for a division by zero: a pb.Error reaches the caller."""


class DemoPond(pb.Copyable):
    """Sent by copy: the client receives the state below and builds its own DemoPondCopy."""

    def __init__(self, frogs: int) -> None:
        self.frogs = frogs

    def getStateToCopy(self) -> dict[str, int]:
        return {"frogs": self.frogs}


class DemoPondCopy(pb.RemoteCopy):
    frogs: int

    def setCopyableState(self, state: dict[str, int]) -> None:
        self.frogs = state["frogs"]

    def __repr__(self) -> str:
        return f"<DemoPondCopy with {self.frogs} frogs>"


class DemoRoot(pb.Root):
    """The demo server's root object: one method per thing the demo shows."""

    def __init__(self, stop: Callable[[], object]) -> None:
        self._stop = stop

    def remote_greet(self, name: str) -> str:
        return f"Hello, {name}!"

    def remote_makePond(self, frogs: int) -> DemoPond:
        return DemoPond(frogs)

    def remote_divide(self, a: float, b: float) -> float:
        if b == 0:
            raise DemoError(f"cannot divide {a} by {b}")
        return a / b

    def remote_shutdown(self) -> None:
        self._stop()


def allowDemoCopies() -> None:
    pb.setUnjellyableForClass(DemoPond, DemoPondCopy)


class _StopOnStdinClose(protocol.Protocol):
    """The demo server ends when its parent closes our stdin (or dies)."""

    def __init__(self, stop: Callable[[], object]) -> None:
        self._stop = stop

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._stop()


async def serve_demo(reactor: Any, description: str) -> int:
    """The demo's server process: print the port, serve until shutdown or stdin closes."""
    from twisted.internet import stdio

    stopped: defer.Deferred[None] = defer.Deferred()

    def stop() -> None:
        if not stopped.called:
            reactor.callLater(0, stopped.callback, None)  # after the shutdown call's answer

    endpoint = cast(Any, endpoints.serverFromString)(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(DemoRoot(stop)))
    print(f"demo server listening on port {listening.getHost().port}", flush=True)
    cast(Any, stdio.StandardIO)(_StopOnStdinClose(stop), reactor=reactor)
    await stopped
    await listening.stopListening()
    return 0


DemoError.__module__ = "spread.cli"  # users meet it as the demo command's error


if __name__ == "__main__":
    # Run as a script this file is __main__; the classes must be spread._demo's, the names
    # the client registered.
    from spread import _demo
    from spread._run import run

    _demo.allowDemoCopies()
    endpoint = sys.argv[1] if len(sys.argv) > 1 else DEMO_SERVER_ENDPOINT
    raise SystemExit(run(lambda reactor: _demo.serve_demo(reactor, endpoint)))
