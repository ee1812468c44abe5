"""A server with its own per-connection limits. See docs/security.md.

    python examples/limits_server.py [ENDPOINT]

Serves the echo root of examples/echo_server.py, but lets each client have at most 50 calls
running at once, hold 200 of its objects, and send messages of at most 1 MiB. Clients that
exceed a limit get an error, or lose their connection; the others are not affected.
"""

from __future__ import annotations

import sys
from typing import Any

from echo_server import Echoer
from twisted.internet import defer, endpoints, task

from spread import pb
from spread.limits import Limits

DEFAULT_ENDPOINT = "tcp:8789:interface=127.0.0.1"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    limits = Limits(maxPendingCalls=50, maxBrokerRefs=200, maxMessageSize=1024 * 1024)
    factory = pb.PBServerFactory(Echoer(), limits=limits)
    listening = await endpoints.serverFromString(reactor, description).listen(factory)
    print(f"limits server listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until stopped (Ctrl-C)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
