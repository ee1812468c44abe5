"""A client that survives its server restarting: Twisted's ClientService with PB. See
docs/howto-errors.md.

    python examples/reconnecting_client.py [ENDPOINT [COUNT]]

It calls the echo server (examples/echo_server.py) at ENDPOINT (default
tcp:host=127.0.0.1:port=8789) once every 0.2 seconds, COUNT times (default 10). When the
connection is lost it says so, and ClientService connects again, waiting a little longer after
each failed attempt; calls resume on the new connection.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8789"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT, count: str = "10") -> None:
    factory = pb.PBClientFactory()
    endpoint = endpoints.clientFromString(reactor, description)
    service = ClientService(endpoint, factory, retryPolicy=backoffPolicy(0.1, maxDelay=2.0))
    service.startService()
    answered = 0
    while answered < int(count):
        await service.whenConnected()
        try:
            root = await factory.getRootObject()
            answer = await root.callRemote("echo", answered + 1)
        except (pb.PBConnectionLost, pb.DeadReferenceError):
            print("connection lost; reconnecting", flush=True)
            continue
        answered += 1
        print(f"answer {answer}", flush=True)
        await task.deferLater(reactor, 0.2, lambda: None)
    await service.stopService()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:3])))
