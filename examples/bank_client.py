"""Handle each way a remote call can fail: refusals, crashes, refused objects, disconnects.
See docs/howto-errors.md.

    python examples/bank_client.py [ENDPOINT]

Start examples/bank_server.py first. ENDPOINT is a Twisted client endpoint string (default
tcp:host=127.0.0.1:port=8792).
"""

from __future__ import annotations

import sys
from typing import Any

from bank import InsufficientFunds
from twisted.internet import defer, endpoints, task
from twisted.python.failure import Failure

from spread import pb
from spread.jelly import InsecureJelly

DEFAULT_ENDPOINT = "tcp:host=127.0.0.1:port=8792"


class Cheque(pb.Copyable):
    """A Copyable the server never registered: it refuses to build one."""

    def __init__(self, amount: int) -> None:
        self.amount = amount


def explain(failure: Failure) -> str:
    """Tell the remote errors apart with failure.check, by class or by dotted name."""
    if failure.check(InsufficientFunds):
        return f"refused: {failure.getErrorMessage()}"
    if failure.check(InsecureJelly):
        return "the server would not accept that object"
    if failure.check("builtins.ZeroDivisionError"):
        return f"the server failed: {failure.getErrorMessage()}"
    return f"unexpected: {failure.getErrorMessage()}"


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, description).connect(factory)
    account = await factory.getRootObject()

    print(f"balance after withdrawing 30: {await account.callRemote('withdraw', 30)}")

    # Errbacks receive a Failure; failure.check tells the cases apart.
    for method, args in [("withdraw", (500,)), ("average", ([],)), ("deposit", (Cheque(5),))]:
        print(await account.callRemote(method, *args).addErrback(explain))

    # Awaited, a remote exception raises pb.RemoteError; its failure is the same Failure.
    try:
        await account.callRemote("withdraw", 500)
    except pb.RemoteError as error:
        print(f"awaited: {error.typeName}: {error.args[0]}")

    print(f"still connected, balance {await account.callRemote('balance')}")

    # When the connection goes: calls still waiting for an answer fail with PBConnectionLost,
    # disconnect callbacks run, and later calls fail with DeadReferenceError.
    disconnected: defer.Deferred[None] = defer.Deferred()
    account.notifyOnDisconnect(lambda ref: disconnected.callback(None))
    pending = account.callRemote("audit")
    factory.disconnect()
    try:
        await pending
    except pb.PBConnectionLost:
        print("pending call: PBConnectionLost")
    await disconnected
    print("disconnected")
    try:
        await account.callRemote("balance")
    except pb.DeadReferenceError:
        print("call after disconnect: DeadReferenceError")


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
