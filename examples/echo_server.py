"""The smallest spread server: a root object with one remote method. See docs/howto-first-server.md.

    python examples/echo_server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string. The default, tcp:8789:interface=127.0.0.1, takes
local connections on port 8789; tcp:0:interface=127.0.0.1 picks any free port. The server prints
the port it listens on, then serves until it is stopped (Ctrl-C).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:8789:interface=127.0.0.1"


class Echoer(pb.Root):
    """The object a client gets from getRootObject(); its remote_* methods are callable."""

    def remote_echo(self, value: Any) -> Any:
        print(f"echoing {value!r}", flush=True)
        return value


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    endpoint = endpoints.serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(Echoer()))
    print(f"echo server listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
