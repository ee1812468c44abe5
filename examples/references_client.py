"""Use a reference the server hands out, and hand the server one of ours. See
docs/howto-references.md.

    python examples/references_client.py [ENDPOINT]

Start examples/references_server.py first. ENDPOINT is a Twisted client endpoint string
(default tcp:host=127.0.0.1:port=8790).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8790"


class Listener(pb.Referenceable):
    """Ours: the server gets a reference to it, and its calls to remote_hear run here."""

    def remote_hear(self, text: str) -> None:
        print(f"heard: {text}", flush=True)


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, description).connect(factory)
    board = await factory.getRootObject()

    apples = await board.callRemote("tally", "apples")  # a RemoteReference to a server Tally
    print(f"apples: {await apples.callRemote('add', 3)}")
    print(f"apples: {await apples.callRemote('add', 2)}")

    await board.callRemote("subscribe", Listener())
    heard_by = await board.callRemote("post", "hello, board")
    print(f"heard by {heard_by} listener(s)")
    factory.disconnect()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
