"""A PB client that is a plain asyncio program: await calls, gather them, bound them. See
docs/howto-asyncio.md.

    python examples/asyncio_client.py [ENDPOINT]

Start examples/asyncio_server.py (or examples/async_server.py, whose kitchen has no prices)
first. ENDPOINT is a Twisted client endpoint string (default tcp:host=127.0.0.1:port=8793).
"""

from __future__ import annotations

import asyncio
import sys

from spread import aio, pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8793"


async def main(description: str = DEFAULT_ENDPOINT) -> None:
    async with await aio.connect(description) as kitchen:
        # One call: callRemote returns an asyncio future, to await like any other.
        print(await kitchen.callRemote("cook", "salad"))

        # Several at once: all three are sent, then gather waits for the answers, in order.
        dishes = ["soup", "salad", "bread"]
        for ready in await asyncio.gather(*(kitchen.callRemote("cook", d) for d in dishes)):
            print(f"served: {ready}")
        prices = await asyncio.gather(*(kitchen.callRemote("price", d) for d in dishes))
        print(f"the bill: {sum(prices)}")

        # A bound on the wait: when time is up, wait_for cancels the call, and a spread
        # server cancels the method.
        try:
            await asyncio.wait_for(kitchen.callRemote("cook", "stew"), timeout=0.5)
        except asyncio.TimeoutError:
            print("no time for stew")

        # A remote exception comes out of await as pb.RemoteError, with the remote message.
        try:
            await kitchen.callRemote("cook", "stone soup")
        except pb.RemoteError as error:
            print(f"kitchen says: {error.args[0]}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
