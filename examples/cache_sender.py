"""Send a pond by cache and change it: the DuckPond example, sending half. See
docs/howto-cacheable.md.

    python examples/cache_sender.py [ENDPOINT]

Start examples/cache_receiver.py first. ENDPOINT is a Twisted client endpoint string (default
tcp:host=127.0.0.1:port=8800). The sender sends its MasterDuckPond once, then only changes;
when the receiver drops its replica the master hears that it stopped watching.
"""

from __future__ import annotations

import sys
from typing import Any

from cache_classes import MasterDuckPond
from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8800"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    master = MasterDuckPond(["one duck", "two duck"])
    master.count()

    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, description).connect(factory)
    remote = await factory.getRootObject()

    await remote.callRemote("takePond", master)  # the full state, once
    master.addDuck("ugly duckling")  # from now on, only changes travel
    master.count()
    await remote.callRemote("checkDucks")
    master.removeDuck("one duck")
    master.count()
    await remote.callRemote("checkDucks")
    await remote.callRemote("ignorePond")
    await master.unwatched.addTimeout(30, reactor)
    factory.disconnect()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
