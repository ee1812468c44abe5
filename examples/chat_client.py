"""The client half of the chat example in docs/howto-auth.md.

    python examples/chat_client.py USER PASSWORD [ENDPOINT]
    python examples/chat_client.py --guest [ENDPOINT]

ENDPOINT is a Twisted client endpoint string; the default is tcp:127.0.0.1:8800. For TLS use
for instance tls:chat.example.com:8800 (add :trustRoots=DIR for a private certificate).

Every line you type is said to the room (members only; guests listen); what the room says is
printed. End the input (Ctrl-D) to leave. The password never crosses the wire: PB logs in by
challenge and response.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.cred.credentials import Anonymous, ICredentials, UsernamePassword
from twisted.internet import defer, endpoints, stdio, task
from twisted.protocols.basic import LineReceiver

from spread import pb

DEFAULT_ENDPOINT = "tcp:127.0.0.1:8800"


class Listener(pb.Referenceable):
    """The mind handed over at login: the server calls these to deliver the room's traffic."""

    def remote_receive(self, speaker: str, text: str) -> None:
        print(f"<{speaker}> {text}", flush=True)

    def remote_notice(self, text: str) -> None:
        print(f"* {text}", flush=True)


class Keyboard(LineReceiver):
    """Says each line of standard input to the room; reports when the input ends."""

    delimiter = b"\n"

    def __init__(self, avatar: Any) -> None:
        self.avatar = avatar
        self.finished: defer.Deferred[None] = defer.Deferred()
        self.unanswered: set[defer.Deferred[Any]] = set()

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text:
            said = self.avatar.callRemote("say", text).addErrback(self.refused)
            self.unanswered.add(said)
            said.addBoth(lambda _: self.unanswered.discard(said))

    def refused(self, failure: Any) -> None:
        if failure.check(AttributeError):  # no perspective_say on a guest's avatar
            print("! guests cannot speak; log in as a member", file=sys.stderr, flush=True)
        else:
            print(f"! {failure.getErrorMessage()}", file=sys.stderr, flush=True)

    def connectionLost(self, reason: object = None) -> None:
        self.finished.callback(None)

    async def drained(self) -> None:
        """Wait for the answers to everything said, so no line is lost on the way out."""
        await defer.DeferredList(list(self.unanswered))


def parse(arguments: list[str]) -> tuple[ICredentials, str]:
    """Credentials and endpoint from the command line (see the module docstring)."""
    if arguments[:1] == ["--guest"] and len(arguments) <= 2:
        return Anonymous(), (arguments[1:] or [DEFAULT_ENDPOINT])[0]
    if len(arguments) in (2, 3):
        user, password, *endpoint = arguments
        credentials = UsernamePassword(user.encode(), password.encode())
        return credentials, (endpoint or [DEFAULT_ENDPOINT])[0]
    sys.exit(__doc__)


async def main(reactor: Any, credentials: ICredentials, description: str) -> int:
    factory = pb.PBClientFactory()
    broker = await endpoints.clientFromString(reactor, description).connect(factory)
    closed: defer.Deferred[None] = defer.Deferred()
    broker.notifyOnDisconnect(lambda: closed.callback(None))
    try:
        avatar = await factory.login(credentials, client=Listener())
    except pb.RemoteError as refusal:
        if refusal.typeName == "twisted.cred.error.UnauthorizedLogin":
            print("login refused: unknown user or wrong password", file=sys.stderr)
        else:
            print(f"login failed: {refusal}", file=sys.stderr)
        return 1
    print(f"in the room: {', '.join(await avatar.callRemote('who'))}", flush=True)
    keyboard = Keyboard(avatar)
    stdio.StandardIO(keyboard)
    await defer.DeferredList([keyboard.finished, closed], fireOnOneCallback=True)
    if not closed.called:
        await keyboard.drained()
        factory.disconnect()  # this is the logout: the server's realm runs it when we go
        await closed
    return 0


async def run(reactor: Any) -> None:
    credentials, description = parse(sys.argv[1:])
    code = await main(reactor, credentials, description)
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
