"""Send an object by copy: the seed's LilyPond example, sending half. See docs/howto-copyable.md.

    python examples/copy_sender.py [ENDPOINT]

Start examples/copy_receiver.py first. ENDPOINT is a Twisted client endpoint string (default
tcp:host=127.0.0.1:port=8800). The sender makes a CopyPond, sends it to the receiver's
takePond method and prints the receiver's answer, or the error that came back instead.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8800"


class LilyPond:
    """A plain class: as it stands it cannot travel, the receiver would refuse it."""

    color: str
    numFrogs: int

    def setStuff(self, color: str, numFrogs: int) -> None:
        self.color = color
        self.numFrogs = numFrogs

    def countFrogs(self) -> None:
        print(f"{self.numFrogs} frogs", flush=True)


class CopyPond(LilyPond, pb.Copyable):
    """A LilyPond that travels by copy: its __dict__ is sent, under its class's dotted name."""


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    # Run as a script this module is __main__; import the class under its real module name so
    # the wire says "copy_sender.CopyPond", the name the receiver registered.
    from copy_sender import CopyPond

    pond = CopyPond()
    pond.setStuff("green", 7)
    pond.countFrogs()
    print(".".join([type(pond).__module__, type(pond).__name__]))

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
