"""Await remote calls, one at a time and several at once. See docs/howto-async.md.

    python examples/async_client.py [ENDPOINT]

Start examples/async_server.py first. ENDPOINT is a Twisted client endpoint string (default
tcp:host=127.0.0.1:port=8791).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8791"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, description).connect(factory)
    kitchen = await factory.getRootObject()

    # One call: callRemote returns a Deferred, and a Deferred can be awaited.
    print(await kitchen.callRemote("cook", "salad"))

    # Several calls in flight at once: start them all, then await them together.
    orders = [kitchen.callRemote("cook", dish) for dish in ("soup", "salad", "bread")]
    for order in orders:
        order.addCallback(lambda ready: print(f"served: {ready}", flush=True))
    await defer.gatherResults(orders)
    print("all served")

    # A remote exception comes out of await as pb.RemoteError, with the remote message.
    try:
        await kitchen.callRemote("cook", "stone soup")
    except pb.RemoteError as error:
        print(f"kitchen says: {error.args[0]}")
    factory.disconnect()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
