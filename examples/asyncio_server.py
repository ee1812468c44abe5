"""A PB server that is a plain asyncio program: its remote methods await asyncio. See
docs/howto-asyncio.md.

    python examples/asyncio_server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string (default tcp:8793:interface=127.0.0.1). The server
prints the port it listens on, then serves until it is stopped.
"""

from __future__ import annotations

import asyncio
import sys

from spread import aio, pb

DEFAULT_ENDPOINT = "tcp:8793:interface=127.0.0.1"
PRICES = {"soup": 4, "salad": 3, "bread": 1, "stew": 9}


class NotOnTheMenu(pb.Error):
    """An expected refusal: the caller gets its name and message."""


class Kitchen(pb.Root):
    MENU = {"soup": 0.3, "salad": 0.1, "bread": 0.2, "stew": 3600.0}  # dish -> seconds to cook

    def __init__(self, till_port: int) -> None:
        self.till_port = till_port

    async def remote_cook(self, dish: str) -> str:
        """spread runs this coroutine as an asyncio task and answers with what it returns."""
        self.check(dish)
        try:
            await asyncio.sleep(self.MENU[dish])  # meanwhile, other calls are served
        except asyncio.CancelledError:  # the caller cancelled its call
            print(f"stopped cooking {dish}: the caller gave up", flush=True)
            raise
        return f"{dish} is ready"

    async def remote_price(self, dish: str) -> int:
        """Ask the till, a line-based service next door, over an asyncio stream."""
        self.check(dish)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.till_port)
        try:
            writer.write(dish.encode() + b"\n")
            await writer.drain()
            price = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
        return int(price)

    def check(self, dish: str) -> None:
        if dish not in self.MENU:
            raise NotOnTheMenu(f"no {dish} today; try one of {sorted(self.MENU)}")


async def till(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The till: reads a dish, answers with its price, one line each."""
    dish = (await reader.readline()).decode().strip()
    writer.write(f"{PRICES[dish]}\n".encode())
    await writer.drain()
    writer.close()


async def main(description: str = DEFAULT_ENDPOINT) -> None:
    async with await asyncio.start_server(till, "127.0.0.1", 0) as till_server:
        till_port = till_server.sockets[0].getsockname()[1]
        async with await aio.serve(Kitchen(till_port), description) as kitchen:
            print(f"kitchen listening on port {kitchen.port}", flush=True)
            await asyncio.Event().wait()  # serve until the process is stopped


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
