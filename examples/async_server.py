"""Remote methods written as ``async def``: a kitchen that takes its time. See
docs/howto-async.md.

    python examples/async_server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string (default tcp:8791:interface=127.0.0.1). The server
prints the port it listens on, then serves until it is stopped.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:8791:interface=127.0.0.1"


class NotOnTheMenu(pb.Error):
    """An expected refusal: the caller gets its name and message."""


class Kitchen(pb.Root):
    MENU = {"soup": 0.3, "salad": 0.1, "bread": 0.2}  # dish -> seconds to cook

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    async def remote_cook(self, dish: str) -> str:
        """spread awaits this coroutine and answers with its result, or its exception."""
        if dish not in self.MENU:
            raise NotOnTheMenu(f"no {dish} today; try one of {sorted(self.MENU)}")
        # While this dish waits, the server goes on serving other calls.
        await task.deferLater(self.reactor, self.MENU[dish], lambda: None)
        return f"{dish} is ready"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    endpoint = endpoints.serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(Kitchen(reactor)))
    print(f"kitchen listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
