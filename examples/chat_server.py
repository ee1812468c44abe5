"""A chat room behind a login: the server half of docs/howto-auth.md.

    python examples/chat_server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string. The default, tcp:8800:interface=127.0.0.1, takes
local connections only; for TLS use for instance

    ssl:8800:privateKey=server.key:certKey=server.pem

Members log in with a user name and password; guests log in anonymously and may listen but not
speak. Each client hands the server a "mind", a Referenceable through which the room delivers
what is said. Disconnecting (or dropping the avatar) logs out and takes one out of the room.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.cred import checkers, portal
from twisted.internet import defer, endpoints, task
from zope.interface import implementer

from spread import pb

DEFAULT_ENDPOINT = "tcp:8800:interface=127.0.0.1"

# A demo password table. A real service keeps passwords in a store of its own, behind a checker
# that offers IUsernameHashedPassword or pb.IUsernameMD5Password (see the how-to).
ACCOUNTS = {"alice": b"wonderland", "bob": b"builder"}


class ChatRoom:
    """Who is in the room, and how to reach each of them (their mind)."""

    def __init__(self) -> None:
        self.present: dict[Guest, Any] = {}

    def enter(self, visitor: Guest, mind: Any) -> None:
        self.present[visitor] = mind
        self.announce(f"{visitor.name} joined")

    def leave(self, visitor: Guest) -> None:
        del self.present[visitor]
        self.announce(f"{visitor.name} left")

    def announce(self, text: str) -> None:
        print(text, flush=True)
        self.deliver("notice", text)

    def deliver(self, method: str, *args: str) -> None:
        for mind in list(self.present.values()):
            if mind is not None:
                # A visitor whose connection just died is about to be logged out;
                # failing to reach it is not the speaker's problem.
                mind.callRemote(method, *args).addErrback(lambda _failure: None)


class Guest(pb.Avatar):
    """What an anonymous visitor may do: hear the room (through its mind) and see who is in."""

    name = "a guest"

    def __init__(self, room: ChatRoom) -> None:
        self.room = room

    def perspective_who(self) -> list[str]:
        return sorted(visitor.name for visitor in self.room.present)


class Chatter(Guest):
    """A logged-in member: everything a guest may do, and speak."""

    def __init__(self, room: ChatRoom, name: str) -> None:
        super().__init__(room)
        self.name = name

    def perspective_say(self, text: str) -> None:
        self.room.deliver("receive", self.name, text)


@implementer(portal.IRealm)
class ChatRealm:
    """Turns a checked identity into an avatar in the room, and takes it out at logout."""

    def __init__(self, room: ChatRoom) -> None:
        self.room = room

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if pb.IPerspective not in interfaces:
            raise NotImplementedError("the chat realm only serves PB perspectives")
        if avatarId == checkers.ANONYMOUS:
            visitor = Guest(self.room)
        else:
            visitor = Chatter(self.room, avatarId.decode("utf-8"))
        self.room.enter(visitor, mind)
        return pb.IPerspective, visitor, lambda: self.room.leave(visitor)


def describe(address: Any) -> str:
    port = getattr(address, "port", None)
    return f"port {port}" if port is not None else str(address)


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    members = checkers.InMemoryUsernamePasswordDatabaseDontUse(**ACCOUNTS)
    guests = checkers.AllowAnonymousAccess()
    chat_portal = portal.Portal(ChatRealm(ChatRoom()), [members, guests])
    endpoint = endpoints.serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(chat_portal))
    print(f"chat server listening on {describe(listening.getHost())}", flush=True)
    await defer.Deferred()  # serve until the process is stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
