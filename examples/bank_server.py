"""A server whose methods fail in the ways a PB caller must handle. See docs/howto-errors.md.

    python examples/bank_server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string (default tcp:8792:interface=127.0.0.1). The server
prints the port it listens on, then serves until it is stopped.
"""

from __future__ import annotations

import sys
from typing import Any

from bank import InsufficientFunds
from twisted.internet import defer, endpoints, task

from spread import pb

DEFAULT_ENDPOINT = "tcp:8792:interface=127.0.0.1"


class Account(pb.Root):
    def __init__(self) -> None:
        self.balance = 100

    def remote_balance(self) -> int:
        return self.balance

    def remote_withdraw(self, amount: int) -> int:
        if amount > self.balance:
            # A pb.Error is an expected outcome: the caller gets its name and message, and
            # the server logs nothing.
            raise InsufficientFunds(f"balance is {self.balance}, asked for {amount}")
        self.balance -= amount
        return self.balance

    def remote_average(self, amounts: list[int]) -> float:
        # Any other exception reaches the caller too (here ZeroDivisionError for []); the
        # server logs it, and the traceback stays here unless unsafeTracebacks=True.
        return sum(amounts) / len(amounts)

    def remote_deposit(self, cheque: Any) -> int:
        return self.balance  # never runs for an object nobody allowed: see the client

    def remote_audit(self) -> defer.Deferred[None]:
        return defer.Deferred()  # an answer that never comes


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    endpoint = endpoints.serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(Account()))
    print(f"bank listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
