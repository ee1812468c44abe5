"""Connect to the echo server, call one remote method, print the answer. See
docs/howto-first-server.md.

    python examples/echo_client.py [ENDPOINT [TEXT]]

ENDPOINT is a Twisted client endpoint string (default tcp:host=127.0.0.1:port=8789), TEXT what
to send (default "hello").
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8789"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT, text: str = "hello") -> None:
    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, description).connect(factory)
    root = await factory.getRootObject()
    echoed = await root.callRemote("echo", text)
    print(f"echo: {echoed}")
    factory.disconnect()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:3])))
