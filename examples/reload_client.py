"""A client of the reload example that stays connected across a reload. See docs/upgrading.md.

    python examples/reload_client.py ENDPOINT USER PASSWORD

It logs in, fetches the server's Greeter once, then reads commands from standard input, one per
line, until end of input: ``greet NAME`` calls the Greeter through that same reference, and
``reload`` asks the server to reload its code (only an administrator may).
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.internet import defer, endpoints, stdio, task
from twisted.protocols.basic import LineReceiver

from spread import pb


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, avatar: Any, greeter: Any) -> None:
        self.avatar = avatar
        self.greeter = greeter  # fetched once: the reload must not invalidate it
        self.done: defer.Deferred[None] = defer.Deferred()
        self.queue: defer.Deferred[None] = defer.succeed(None)

    def lineReceived(self, line: bytes) -> None:
        command, _, argument = line.decode().strip().partition(" ")
        # One command at a time, in order, whatever the network does.
        self.queue.addCallback(lambda _: defer.ensureDeferred(self.run(command, argument)))

    async def run(self, command: str, argument: str) -> None:
        try:
            if command == "greet":
                print(await self.greeter.callRemote("greet", argument), flush=True)
            elif command == "reload":
                print(await self.avatar.callRemote("reload"), flush=True)
            else:
                print(f"unknown command {command!r}; use greet NAME or reload", flush=True)
        except pb.RemoteError as error:
            print(f"refused: {error.args[0]}", flush=True)

    def connectionLost(self, reason: Any = None) -> None:
        self.queue.addCallback(self.done.callback)


async def main(reactor: Any, description: str, user: str, password: str) -> None:
    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, description).connect(factory)
    avatar = await factory.login(UsernamePassword(user.encode(), password.encode()))
    greeter = await avatar.callRemote("greeter")
    print(f"logged in as {user}", flush=True)
    commands = Commands(avatar, greeter)
    stdio.StandardIO(commands)
    await commands.done
    factory.disconnect()


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:4])))
