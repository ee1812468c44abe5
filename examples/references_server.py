"""Pass objects by reference, both ways: a board of named tallies and a list of listeners.
See docs/howto-references.md.

    python examples/references_server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string (default tcp:8790:interface=127.0.0.1). The server
prints the port it listens on, then its side of the story, until it is stopped.

- ``tally(name)`` returns a Tally, a Referenceable: the client gets a reference, and every
  call it makes on it runs here, on the one Tally of that name.
- ``subscribe(listener)`` takes a reference to the client's own Listener; ``post(text)`` calls
  every listener back and answers how many heard it. A listener whose connection closes is
  dropped, thanks to notifyOnDisconnect.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:8790:interface=127.0.0.1"


class Tally(pb.Referenceable):
    """A named running total that lives on the server; clients hold references to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.total = 0

    def remote_add(self, amount: int) -> int:
        self.total += amount
        return self.total


class Board(pb.Root):
    def __init__(self) -> None:
        self.tallies: dict[str, Tally] = {}
        self.listeners: list[pb.RemoteReference] = []

    def remote_tally(self, name: str) -> Tally:
        """The same Tally for the same name, so every client counts on one total."""
        return self.tallies.setdefault(name, Tally(name))

    def remote_subscribe(self, listener: pb.RemoteReference) -> None:
        self.listeners.append(listener)
        listener.notifyOnDisconnect(self.unsubscribe)
        print(f"listeners: {len(self.listeners)}", flush=True)

    def unsubscribe(self, listener: pb.RemoteReference) -> None:
        self.listeners.remove(listener)
        print(f"listeners: {len(self.listeners)}", flush=True)

    def remote_post(self, text: str) -> defer.Deferred[int]:
        """Call every listener back; answer, once they all have, how many there were."""
        calls = [listener.callRemote("hear", text) for listener in self.listeners]
        return defer.gatherResults(calls).addCallback(len)


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    endpoint = endpoints.serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(Board()))
    print(f"board listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
