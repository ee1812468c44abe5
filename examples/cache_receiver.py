"""Receive a replica of a pond and watch it change: the DuckPond example, receiving half. See
docs/howto-cacheable.md.

    python examples/cache_receiver.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string (default tcp:8800:interface=127.0.0.1). The
receiver prints the port it listens on, then what the sender makes it do, until it is stopped.
"""

from __future__ import annotations

import sys
from typing import Any

from cache_classes import SlaveDuckPond
from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:8800:interface=127.0.0.1"


class Receiver(pb.Root):
    def __init__(self) -> None:
        self.pond: SlaveDuckPond | None = None

    def remote_takePond(self, pond: SlaveDuckPond) -> None:
        self.pond = pond
        print(f"got pond: {type(pond).__name__}", flush=True)
        self.remote_checkDucks()

    def remote_checkDucks(self) -> None:
        assert self.pond is not None
        print(f"[{self.pond.count()}] ducks: {self.pond.getDucks()}", flush=True)

    def remote_ignorePond(self) -> None:
        # Dropping the last reference to the replica tells the master to stop sending.
        print("dropping pond", flush=True)
        self.pond = None



async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    receiver = Receiver()
    endpoint = endpoints.serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(receiver))
    print(f"cache receiver listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until stopped (Ctrl-C)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
