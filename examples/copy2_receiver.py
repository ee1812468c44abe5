"""Receive a SenderPond as a ReceiverPond: the seed's pb-copy2 example, receiving half. See
docs/howto-copyable.md.

    python examples/copy2_receiver.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string (default tcp:8800:interface=127.0.0.1). The
receiver prints the port it listens on, then what arrives, until it is stopped or a client
calls its shutdown method.
"""

from __future__ import annotations

import sys
from typing import Any

import copy2_classes  # registers ReceiverPond for "copy2_classes.SenderPond"
from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:8800:interface=127.0.0.1"


class Receiver(pb.Root):
    def __init__(self) -> None:
        self.stopped: defer.Deferred[None] = defer.Deferred()

    def remote_takePond(self, pond: copy2_classes.ReceiverPond) -> str:
        print(f"got pond: {type(pond).__name__}", flush=True)
        print(f"count {pond.count()}", flush=True)
        return "safe and sound"  # positive acknowledgement

    def remote_shutdown(self) -> None:
        self.stopped.callback(None)


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    receiver = Receiver()
    endpoint = endpoints.serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(receiver))
    print(f"copy2 receiver listening on port {listening.getHost().port}", flush=True)
    await receiver.stopped
    await listening.stopListening()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
