"""A real twisted.spread PB client, run in its own process by tests/test_interop.py.

    python twisted_client.py PORT

It connects to the spread server on 127.0.0.1:PORT, gets its root and hands it an Agent by
calling ``root.callRemote("attach", agent)``, then prints ``ATTACHED``. From then on the test
drives this client through the agent: each agent method makes the Twisted side do one thing
against the spread server (call a root method, send a Pond or a Stranger, pass a Counter) and
answers with a report of what Twisted saw. ``DISCONNECTED`` is printed if the connection drops.
The process stops when its stdin closes, or after a safety timeout.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, reactor, stdio
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted_types import Counter, Pond, Stranger, type_name

TIMEOUT = 30.0
SAFETY_TIMEOUT = 300.0


def report_result(result: object) -> dict[str, object]:
    return {"ok": True, "type": type_name(result), "repr": repr(result)}


def report_failure(failure: Failure) -> dict[str, object]:
    """A failure as plain data: its type's dotted name, message and (remote) traceback text."""
    failure_type = failure.type
    if isinstance(failure_type, bytes):  # a CopiedFailure names the remote type
        name = failure_type.decode()
    else:
        name = f"{failure_type.__module__}.{failure_type.__qualname__}"
    return {
        "ok": False,
        "type": name,
        "message": failure.getErrorMessage(),
        "traceback": getattr(failure, "traceback", None) if isinstance(failure_type, bytes) else "",
    }


def reported(call: defer.Deferred[Any]) -> defer.Deferred[dict[str, object]]:
    return call.addCallbacks(report_result, report_failure)


class Agent(pb.Referenceable):
    """The test's hands on the Twisted side: each method calls the spread server's root."""

    def __init__(self, root: pb.RemoteReference) -> None:
        self.root = root
        self.unanswered: list[defer.Deferred[Any]] = []
        self.kept: object = None

    def remote_call(self, method: str, *args: object, **kwargs: object) -> Any:
        return reported(self.root.callRemote(method, *args, **kwargs))

    def remote_sendPond(self, frogs: int, toads: int) -> Any:
        return reported(self.root.callRemote("pondCount", Pond(frogs, toads)))

    def remote_sendStranger(self) -> Any:
        return reported(defer.maybeDeferred(self.root.callRemote, "echo", Stranger()))

    def remote_passCounter(self, by: int) -> Any:
        """Hand the server a Referenceable of ours and let it call increment on it."""
        return reported(self.root.callRemote("callBack", Counter(), "increment", by))

    def remote_echo(self, value: object) -> object:
        return value

    def remote_describe(self, value: object) -> dict[str, str]:
        return {"type": type_name(value), "repr": repr(value)}

    def remote_keep(self, value: object) -> None:
        self.kept = value

    def remote_kept(self) -> object:
        return self.kept

    def remote_callBack(self, ref: pb.RemoteReference, method: str, *args: object) -> Any:
        return ref.callRemote(method, *args)

    def remote_hang(self) -> defer.Deferred[Any]:
        unanswered: defer.Deferred[Any] = defer.Deferred()
        self.unanswered.append(unanswered)
        return unanswered


class StopOnStdinClose(Protocol):
    def connectionLost(self, reason: object = None) -> None:
        if reactor.running:  # type: ignore[attr-defined]
            reactor.stop()  # type: ignore[attr-defined]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def attach(port: str) -> None:
    factory = pb.PBClientFactory()
    endpoint = endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port}")
    await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
    root = await factory.getRootObject().addTimeout(TIMEOUT, reactor)
    root.notifyOnDisconnect(lambda _ref: say("DISCONNECTED"))
    await root.callRemote("attach", Agent(root)).addTimeout(TIMEOUT, reactor)
    say("ATTACHED")


def failed(failure: Failure) -> None:
    say(f"FAILED {failure.getErrorMessage()}")
    reactor.stop()  # type: ignore[attr-defined]


def main() -> None:
    defer.ensureDeferred(attach(sys.argv[1])).addErrback(failed)
    stdio.StandardIO(StopOnStdinClose())
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
