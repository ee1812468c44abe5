"""Reload code in a running server, from a remote call: the upgrading how-to's example. See
docs/upgrading.md.

    python examples/reload_server.py [ENDPOINT]

ENDPOINT is a Twisted server endpoint string (default tcp:8800:interface=127.0.0.1). Users log
in (alice is an administrator, bob is not); each avatar hands out the one live Greeter from
examples/reload_service.py. After editing that file, an administrator's ``reload`` call rebuilds
the module: the Greeter, and every reference clients hold to it, run the new code.
"""

from __future__ import annotations

import sys
from typing import Any

import reload_service
from twisted.cred import checkers, portal
from twisted.internet import defer, endpoints, task
from zope.interface import implementer

from spread import pb
from spread.rebuild import RebuildError, rebuild

DEFAULT_ENDPOINT = "tcp:8800:interface=127.0.0.1"
ACCOUNTS = {"alice": b"wonderland", "bob": b"builder"}  # a demo table; see docs/howto-auth.md
ADMINISTRATORS = {"alice"}


class User(pb.Avatar):
    def __init__(self, name: str, greeter: reload_service.Greeter) -> None:
        self.name = name
        self.greeter = greeter

    def perspective_greeter(self) -> reload_service.Greeter:
        return self.greeter

    def perspective_reload(self) -> str:
        if self.name not in ADMINISTRATORS:
            raise pb.Error(f"{self.name} may not reload code; ask an administrator")
        try:
            rebuild(reload_service)
        except RebuildError as error:
            # The old code is still running: tell the administrator why the new one is not.
            raise pb.Error(str(error)) from None
        print(f"{self.name} reloaded {reload_service.__name__}", flush=True)
        return f"reloaded {reload_service.__name__}"


@implementer(portal.IRealm)
class Realm:
    def __init__(self) -> None:
        self.greeter = reload_service.Greeter()  # one live object, shared by every user

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
        return pb.IPerspective, User(name, self.greeter), lambda: None


async def main(reactor: Any, description: str = DEFAULT_ENDPOINT) -> None:
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(**ACCOUNTS)
    factory = pb.PBServerFactory(portal.Portal(Realm(), [checker]))
    listening = await endpoints.serverFromString(reactor, description).listen(factory)
    print(f"reload server listening on port {listening.getHost().port}", flush=True)
    await defer.Deferred()  # serve until stopped (Ctrl-C)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:2])))
