"""A real twisted.spread PB server, run in its own process by tests/test_interop.py.

    python twisted_server.py

It listens on 127.0.0.1 at an ephemeral port, prints ``PORT <n>`` and serves PeerRoot until its
stdin closes (or a safety timeout passes, so an abandoned peer never lingers). The test drives it
by calling the root's methods: each one makes the server do one PB thing (echo, describe what it
received, call back a reference, copy a Pond, fail in a given way, never answer).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, reactor, stdio
from twisted.internet.protocol import Protocol
from twisted.spread import pb
from twisted_types import Counter, PeerError, Pond, PondCopy, Stranger, type_name

SAFETY_TIMEOUT = 300.0


class PeerRoot(pb.Root):
    """The root object a spread client gets; tests/test_interop.py's SpreadRoot mirrors it."""

    def __init__(self) -> None:
        self.unanswered: list[defer.Deferred[Any]] = []
        self.kept: object = None

    def remote_echo(self, value: object) -> object:
        return value

    def remote_describe(self, value: object) -> dict[str, str]:
        """What arrived here: its type and repr, as Twisted decoded it."""
        return {"type": type_name(value), "repr": repr(value)}

    def remote_describeCall(self, *args: object, **kwargs: object) -> dict[str, object]:
        return {"args": list(args), "kwargs": kwargs}

    def remote_callBack(self, ref: pb.RemoteReference, method: str, *args: object) -> Any:
        """Call a method on a reference the caller passed us; answer with its answer."""
        return ref.callRemote(method, *args)

    def remote_keep(self, value: object) -> None:
        """Hold on to a value (a reference, say) until remote_kept hands it back."""
        self.kept = value

    def remote_kept(self) -> object:
        return self.kept

    def remote_counter(self) -> Counter:
        return Counter()

    def remote_pondCount(self, pond: PondCopy) -> dict[str, object]:
        return {"type": type_name(pond), "origin": pond.origin, "count": pond.count()}

    def remote_stateOf(self, copy: Any) -> dict[str, object]:
        """The whole state a copy arrived with (a StateCopy keeps all of it)."""
        return dict(copy.__dict__)

    def remote_makePond(self, frogs: int, toads: int) -> Pond:
        return Pond(frogs, toads)

    def remote_stranger(self) -> Stranger:
        return Stranger()

    def remote_fail(self, kind: str, message: str) -> Any:
        """Fail the way ``kind`` names: a pb.Error, another exception, or a failed Deferred."""
        if kind == "pb":
            raise PeerError(message)
        if kind == "deferred":
            return defer.fail(PeerError(message))
        raise ValueError(message)

    def remote_hang(self) -> defer.Deferred[Any]:
        """Never answer, so the caller has a call pending when the connection dies."""
        unanswered: defer.Deferred[Any] = defer.Deferred()
        self.unanswered.append(unanswered)
        return unanswered


class StopOnStdinClose(Protocol):
    def connectionLost(self, reason: object = None) -> None:
        if reactor.running:  # type: ignore[attr-defined]
            reactor.stop()  # type: ignore[attr-defined]


def report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    listening = endpoint.listen(pb.PBServerFactory(PeerRoot()))
    listening.addCallback(lambda port: report(f"PORT {port.getHost().port}"))
    stdio.StandardIO(StopOnStdinClose())
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
