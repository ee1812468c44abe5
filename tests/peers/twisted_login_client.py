"""A real twisted.spread login client, run in its own process by tests/test_login_interop.py.

    python twisted_login_client.py PORT LOGIN [LOGIN ...]

Each LOGIN is ``user:password`` or ``anonymous``; they are tried in order on one connection.
For each it prints one line of results, then the client disconnects and prints ``DONE``:

    OK <whoami> <add(2, 3)> <what the mind heard>
    FAILED <remote exception type> <whether check('twisted.cred.error.UnauthorizedLogin')>

The avatar it talks to must offer perspective_whoami, perspective_add and perspective_tellMind
(which calls remote_hear on the mind given at login).
"""

from __future__ import annotations

import sys

from twisted.cred import credentials
from twisted.internet import defer, endpoints, task
from twisted.python.failure import Failure
from twisted.spread import pb

TIMEOUT = 30.0
SAFETY_TIMEOUT = 120.0  # an abandoned client never lingers


class Mind(pb.Referenceable):
    """The object the server may call back; it answers to prove the call arrived."""

    def remote_hear(self, text: str) -> str:
        return f"heard:{text}"


def credentials_for(spec: str) -> credentials.ICredentials:
    if spec == "anonymous":
        return credentials.Anonymous()
    user, password = spec.split(":", 1)
    return credentials.UsernamePassword(user.encode(), password.encode())


async def main(reactor: object, port: str, specs: list[str]) -> None:
    reactor.callLater(SAFETY_TIMEOUT, reactor.stop)
    factory = pb.PBClientFactory()
    endpoint = endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port}")
    broker = await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
    closed: defer.Deferred[None] = defer.Deferred()
    broker.notifyOnDisconnect(lambda: closed.callback(None))
    avatars: list[object] = []  # held until the end, so logouts come from the disconnect
    for spec in specs:
        print(await describe_login(factory, spec, avatars), flush=True)
    factory.disconnect()
    await closed.addTimeout(TIMEOUT, reactor)  # the server sees the close before we exit
    print("DONE", flush=True)


async def describe_login(factory: pb.PBClientFactory, spec: str, avatars: list[object]) -> str:
    login = factory.login(credentials_for(spec), client=Mind())
    # Look at the failure itself: under await Twisted would turn it into a bare RemoteError.
    outcome: list[object] = []
    await login.addBoth(outcome.append)
    result = outcome[0]
    if isinstance(result, Failure):
        refused = result.check("twisted.cred.error.UnauthorizedLogin") is not None
        kind = result.type.decode() if isinstance(result.type, bytes) else str(result.type)
        return f"FAILED {kind} {refused}"
    avatars.append(result)
    name = await result.callRemote("whoami")
    total = await result.callRemote("add", 2, 3)
    heard = await result.callRemote("tellMind", "ping")
    return f"OK {name} {total} {heard}"


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1], sys.argv[2:])))
