"""Send a SenderPond, which arrives as a ReceiverPond: the seed's pb-copy2 example, sending half.
See docs/howto-copyable.md.

    python examples/copy2_sender.py [ENDPOINT]

Start examples/copy2_receiver.py first. ENDPOINT is a Twisted client endpoint string (default
tcp:host=127.0.0.1:port=8800).
"""

from __future__ import annotations

import sys
from typing import Any

from copy2_classes import SenderPond
from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8800"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    pond = SenderPond(3, 4)
    print(f"count {pond.count()}")

    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, description).connect(factory)
    receiver = await factory.getRootObject()
    try:
        response = await receiver.callRemote("takePond", pond)
    except pb.RemoteError as error:
        print(f"error during takePond: {error.typeName}: {error.args[0]}")
    else:
        print("pond arrived", response)
    factory.disconnect()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
