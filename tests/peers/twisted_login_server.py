"""A real twisted.spread login server, run in its own process by tests/test_login_interop.py.

It listens on 127.0.0.1 at an ephemeral port and reports what happens as lines on stdout, so the
test can check the server's view of a spread client:

    PORT <n>            listening (first line)
    LOGIN <name>        the realm handed out an avatar (mind: yes/no)
    LOGOUT <name>       the realm's logout ran

Accounts: alice/secret and bob/hunter2, plus anonymous access. The process stops when its stdin
closes, or after a safety timeout so an abandoned peer never lingers.
"""

from __future__ import annotations

import sys

from twisted.cred import checkers, portal
from twisted.internet import defer, endpoints, reactor, stdio
from twisted.internet.protocol import Protocol
from twisted.spread import pb
from zope.interface import implementer

SAFETY_TIMEOUT = 120.0


def report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class User(pb.Avatar):
    """What a logged-in client can do; the methods the interop tests call."""

    def __init__(self, name: str, mind: object) -> None:
        self.name = name
        self.mind = mind

    def perspective_whoami(self) -> str:
        return self.name

    def perspective_echo(self, value: object) -> object:
        return value

    def perspective_add(self, a: int, b: int) -> int:
        return a + b

    def perspective_tellMind(self, text: str) -> defer.Deferred[object]:
        """Call back into the client through the mind it logged in with."""
        if self.mind is None:
            return defer.fail(ValueError("no mind given at login"))
        return self.mind.callRemote("hear", text)


@implementer(portal.IRealm)
class Realm:
    def requestAvatar(self, avatarId: object, mind: object, *interfaces: object) -> object:
        assert pb.IPerspective in interfaces
        name = avatarId.decode() if isinstance(avatarId, bytes) else "anonymous"
        report(f"LOGIN {name} mind={'yes' if mind is not None else 'no'}")
        return pb.IPerspective, User(name, mind), lambda: report(f"LOGOUT {name}")


class StopOnStdinClose(Protocol):
    def connectionLost(self, reason: object = None) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    accounts = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret", bob=b"hunter2")
    the_portal = portal.Portal(Realm(), [accounts, checkers.AllowAnonymousAccess()])
    endpoint = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    listening = endpoint.listen(pb.PBServerFactory(the_portal))
    listening.addCallback(lambda port: report(f"PORT {port.getHost().port}"))
    stdio.StandardIO(StopOnStdinClose())
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main()
