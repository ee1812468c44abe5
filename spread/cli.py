"""The ``spread`` command line.

``spread demo`` starts a PB server in a child process and a client in this one, and shows a
remote call, an object copied by value and a remote error. ``spread call`` calls one method on
the root object of any PB server, spread's or Twisted's, and prints the answer. ``spread serve``
publishes an object from any module as a PB server's root.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

import twisted
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, endpoints, error, protocol
from twisted.python.failure import Failure
from twisted.python.reflect import qual

from spread import __version__, accelerated, pb
from spread._demo import DEMO_SERVER_ENDPOINT, DemoError, allowDemoCopies
from spread._run import run

EXIT_OK = 0
EXIT_REMOTE_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_CONNECT = 3
DEFAULT_TIMEOUT = 30.0
PASSWORD_VARIABLE = "SPREAD_PASSWORD"
DEFAULT_LISTEN = "tcp:8789"

CALL_EPILOG = """\
ENDPOINT is a Twisted client endpoint string, for instance tcp:host=127.0.0.1:port=8789,
unix:path=/tmp/pb.sock or tls:example.com:8789. Each ARG (and each --kwarg VALUE) is decoded
as JSON; anything that is not JSON is passed as a string. So 42, 1.5, true, null, "text",
[1, 2] and {"a": 1} arrive as int, float, bool, None, str, list and dict, and hello arrives
as "hello".

With --username, it logs in first (twisted.cred, username and password) and calls METHOD on
the perspective (perspective_METHOD) instead of the root. The password comes from --password,
else from the environment variable SPREAD_PASSWORD, else it is asked for.

The answer is printed as JSON when it is plain data, and as its repr otherwise.
Exit status: 0 answered, 1 the remote method failed or the login was refused (the error is
printed on stderr), 2 bad command line, 3 could not connect or no PB answer in time.

Put -- before arguments that start with a dash: spread call ENDPOINT echo -- -x.

example:
  spread call tcp:host=127.0.0.1:port=8789 echo '{"frogs": 7}'
"""

SERVE_EPILOG = """\
MODULE:OBJECT names a pb.Root instance (or any IPBRoot, or a twisted.cred Portal for a server
with login), or a class or function that returns one when called with no arguments; the current
directory is searched first. ENDPOINT is a Twisted server endpoint string, for instance
tcp:8789, tcp:0:interface=127.0.0.1 (any free port, local connections only),
ssl:8789:privateKey=key.pem:certKey=cert.pem or unix:/tmp/pb.sock.

It prints the port it listens on, then a line when each client connects and leaves, and
serves until stopped (Ctrl-C). Exit status: 0 stopped, 2 bad command line, nothing to serve,
or an endpoint that is malformed or cannot listen (a port in use, say).

example:
  spread serve myservice:Echoer --listen tcp:8789
"""

MAIN_EPILOG = """examples:
  spread demo
  spread serve myservice:Echoer --listen tcp:8789
  spread call tcp:host=127.0.0.1:port=8789 echo hello

Run "spread COMMAND --help" for the details of a command.
"""


# Twisted's endpoint parsers and Failure.check are untyped; these are their typed views.
_clientFromString = cast(Callable[[Any, str], Any], endpoints.clientFromString)
_serverFromString = cast(Callable[[Any, str], Any], endpoints.serverFromString)


def _failed_with(failure: Failure, kind: type[BaseException]) -> bool:
    return cast(Any, failure).check(kind) is not None


class CannotConnect(Exception):
    """No PB conversation with the server; the message says why, in one line."""


def _seconds(timeout: float) -> str:
    return f"{timeout:g} s"


async def _connect(
    reactor: Any, description: str, timeout: float, credentials: Any = None
) -> tuple[Any, Any]:
    """Connect a PB client to ``description``; (factory, root object or perspective).

    Raises ``CannotConnect`` (nothing answers, or not in PB), or ``pb.RemoteError`` for a
    failed login.
    """
    factory = pb.PBClientFactory(handshakeTimeout=None)
    endpoint = _clientFromString(reactor, description)
    try:
        broker = await endpoint.connect(factory).addTimeout(timeout, reactor)
    except defer.TimeoutError:
        raise CannotConnect(
            f"could not connect to {description} within {_seconds(timeout)}"
        ) from None
    except Exception as reason:  # refused, unreachable, no such host...
        raise CannotConnect(f"could not connect to {description}: {_oneLine(reason)}") from None
    peer = broker.transport.getPeer()
    where = f"{peer.host}:{peer.port}" if hasattr(peer, "port") else description
    asked = factory.login(credentials) if credentials is not None else factory.getRootObject()
    try:
        root = await asked.addTimeout(timeout, reactor)
    except defer.TimeoutError:
        factory.disconnect()
        raise CannotConnect(
            f"no PB answer from {where} within {_seconds(timeout)}; is it a PB server?"
        ) from None
    except (pb.PBConnectionLost, error.ConnectionLost, error.ConnectionDone):
        raise CannotConnect(f"{where} closed the connection; is it a PB server?") from None
    return factory, root


def _oneLine(reason: BaseException | str) -> str:
    text = str(reason).strip() or type(reason).__name__
    return " ".join(text.split())


def describe_failure(failure: Failure) -> str:
    """``dotted.TypeName: message`` for a local or remote (copied) failure."""
    remote_name = getattr(failure, "typeName", None)
    if isinstance(remote_name, str):
        name = remote_name
    elif isinstance(failure.type, (bytes, str)):
        name = failure.type.decode() if isinstance(failure.type, bytes) else failure.type
    else:
        name = qual(failure.type) if failure.type is not None else "unknown error"
    return f"{name}: {failure.getErrorMessage()}"


# ---------------------------------------------------------------------------------------------
# spread call


def parse_argument(text: str) -> object:
    """A command-line argument as a Python value: JSON if it parses, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_keyword(text: str) -> tuple[str, object]:
    name, separator, value = text.partition("=")
    if not separator or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, parse_argument(value)


def _is_json(value: object) -> bool:
    """True if ``value`` prints as JSON without losing anything (tuples print as arrays)."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return False


def format_result(value: object) -> str:
    """JSON for plain data, repr for anything else (bytes, sets, dates, references...)."""
    if _is_json(value):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


async def call(
    reactor: Any,
    description: str,
    method: str,
    args: Sequence[object],
    kwargs: dict[str, object],
    timeout: float,
    credentials: Any = None,
) -> int:
    """Call ``method`` on the root object at ``description`` (or, given ``credentials``, on
    the perspective they log in to); print the answer or the error."""
    try:
        factory, root = await _connect(reactor, description, timeout, credentials)
    except CannotConnect as reason:
        print(f"spread call: {reason}", file=sys.stderr)
        return EXIT_CONNECT
    except pb.RemoteError as refusal:  # awaited, a remote failure raises this
        failure = cast("Failure | None", refusal.failure)
        if failure is not None and _failed_with(failure, UnauthorizedLogin):
            print(f"spread call: login refused for {credentials.username.decode()!r}",
                  file=sys.stderr)  # fmt: skip
        else:
            print(f"spread call: login failed: {refusal.typeName}: {_oneLine(refusal)}",
                  file=sys.stderr)  # fmt: skip
        return EXIT_REMOTE_ERROR
    outcome: list[object] = []
    await (
        root.callRemote(method, *args, **kwargs)
        .addTimeout(timeout, reactor)
        .addBoth(outcome.append)
    )
    factory.disconnect()
    [result] = outcome
    if not isinstance(result, Failure):
        print(format_result(result))
        return EXIT_OK
    if _failed_with(result, defer.TimeoutError):
        print(f"spread call: no answer from {method} within {_seconds(timeout)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONNECT
    hint = ""
    if credentials is None and _failed_with(result, AttributeError):
        hint = " (if this server wants a login, pass --username)"
    print(f"error: {_oneLine(describe_failure(result))}{hint}", file=sys.stderr)
    return EXIT_REMOTE_ERROR


# ---------------------------------------------------------------------------------------------
# spread demo (client side) and spread serve-demo (the server it starts)


class _DemoServerProcess(protocol.ProcessProtocol):
    """The child running ``spread._demo``: tells us its port, then its exit code."""

    def __init__(self) -> None:
        self.port: defer.Deferred[int] = defer.Deferred()
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self._buffer = b""

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer and not self.port.called:
            line, self._buffer = self._buffer.split(b"\n", 1)
            words = line.split()
            if words[-2:-1] == [b"port"] and words[-1].isdigit():
                self.port.callback(int(words[-1]))

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        if not self.port.called:
            self.port.errback(RuntimeError(f"the demo server exited ({code}) before listening"))
        self.ended.callback(code)

    def stop(self) -> None:
        """Close its stdin, its cue to stop (it also stops if we die)."""
        if self.ended.called or self.transport is None:
            return
        cast(Any, self.transport).closeStdin()

    def kill(self) -> None:
        """End it now, whatever it is doing: no path out of the demo leaves it behind."""
        if self.ended.called or self.transport is None:
            return
        with contextlib.suppress(error.ProcessExitedAlready):
            cast(Any, self.transport).signalProcess("KILL")


def _show(what: str, call_text: str, outcome: object) -> None:
    print(f"  {what:<12} {call_text:<15} -> {outcome}")


async def demo(reactor: Any, timeout: float) -> int:
    """Start a demo server process, talk to it, stop it. 0 if everything went as shown.

    The child is killed on every way out: an error, a timeout, Ctrl-C (the reactor's
    shutdown), so it never outlives the demo.
    """
    allowDemoCopies()
    print("spread demo: a PB server in a child process, a PB client in this one")
    server = _DemoServerProcess()
    argv = [sys.executable, "-m", "spread._demo", DEMO_SERVER_ENDPOINT]
    child = reactor.spawnProcess(server, sys.executable, argv, env=dict(os.environ))
    shutdown = reactor.addSystemEventTrigger("before", "shutdown", server.kill)
    step = "starting the server"
    try:
        port = await server.port.addTimeout(timeout, reactor)
        print(f"server: process {child.pid}, listening on 127.0.0.1 port {port}")
        step = "connecting"
        factory, root = await _connect(reactor, f"tcp:host=127.0.0.1:port={port}", timeout)
        print("client: connected and got the server's root object")
        step = "calling the server"
        await _demo_calls(reactor, root, timeout)
        step = "stopping the server"
        await root.callRemote("shutdown").addTimeout(timeout, reactor)
        factory.disconnect()
        code = await server.ended.addTimeout(timeout, reactor)
    except defer.TimeoutError:
        print(f"spread demo: no answer within {_seconds(timeout)} while {step}",
              file=sys.stderr)  # fmt: skip
        return EXIT_REMOTE_ERROR
    except Exception as failure:  # any step: say what went wrong, in one line
        print(f"spread demo: {step} failed: {_oneLine(failure)}", file=sys.stderr)
        return EXIT_REMOTE_ERROR
    finally:
        server.kill()  # (a no-op once it has exited)
        reactor.removeSystemEventTrigger(shutdown)
    print(f"server: stopped (exit code {code})")
    return EXIT_OK if code == 0 else EXIT_REMOTE_ERROR


async def _demo_calls(reactor: Any, root: Any, timeout: float) -> None:
    greeting = await root.callRemote("greet", "world").addTimeout(timeout, reactor)
    _show("remote call", "greet('world')", repr(greeting))
    pond = await root.callRemote("makePond", 7).addTimeout(timeout, reactor)
    _show("copyable", "makePond(7)", f"{pond!r}, copied by value")
    outcome: list[object] = []
    await root.callRemote("divide", 1, 0).addTimeout(timeout, reactor).addBoth(outcome.append)
    [failure] = outcome
    if not isinstance(failure, Failure) or not _failed_with(failure, DemoError):
        raise RuntimeError(f"divide(1, 0) should have failed with DemoError, got {failure!r}")
    _show("error", "divide(1, 0)", f"errback with {describe_failure(failure)}")


# ---------------------------------------------------------------------------------------------
# The command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spread",
        description="spread: Perspective Broker for Python, wire-compatible with Twisted's PB.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo_parser = commands.add_parser(
        "demo",
        help="watch a server and a client talk: a remote call, a copied object, an error",
        description="Start a PB server in a child process on a free local port, connect to it, "
        "show a remote call, an object copied by value and a remote error, then stop the "
        "server. Exits 0 if all went as shown.",
    )
    demo_parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on any step after this long (default {DEFAULT_TIMEOUT:g})",
    )

    call_parser = commands.add_parser(
        "call",
        help="call a method on the root object of any PB server and print the answer",
        description="Connect to a PB server (spread or Twisted's PB), call METHOD on its\n"
        "root object with ARGS and print the answer.",
        epilog=CALL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    call_parser.add_argument("endpoint", metavar="ENDPOINT", help="where the server listens")
    call_parser.add_argument("method", metavar="METHOD", help="the remote method, without remote_")
    call_parser.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        type=parse_argument,
        help="positional arguments (JSON, or a plain string)",
    )
    call_parser.add_argument(
        "-k",
        "--kwarg",
        action="append",
        default=[],
        type=parse_keyword,
        metavar="NAME=VALUE",
        help="a keyword argument (VALUE as for ARG); repeat for more",
    )
    call_parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up connecting or waiting for the answer after this long "
        f"(default {DEFAULT_TIMEOUT:g})",
    )

    call_parser.add_argument(
        "-u", "--username", metavar="NAME",
        help="log in as NAME and call the perspective instead of the root object",
    )  # fmt: skip
    call_parser.add_argument(
        "-p", "--password", metavar="PASSWORD",
        help=f"the password for --username (default: ${PASSWORD_VARIABLE}, else asked for)",
    )  # fmt: skip

    serve_parser = commands.add_parser(
        "serve",
        help="serve an object from a module as the root of a PB server",
        description="Import OBJECT from MODULE and serve it as the root object of a PB server "
        "listening at ENDPOINT.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_parser.add_argument("spec", metavar="MODULE:OBJECT", help="what to serve")
    serve_parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="ENDPOINT",
        help=f"where to listen, a Twisted server endpoint string (default {DEFAULT_LISTEN})",
    )
    return parser


def version() -> str:
    """What ``--version`` says: ours, Twisted's, and whether the C accelerator is in use."""
    speed = "on" if accelerated() else "off"
    return f"spread {__version__} (Twisted {twisted.__version__}, C accelerator {speed})"


def positive_seconds(text: str) -> float:
    """A ``--timeout``: a number of seconds above zero."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not seconds > 0 or not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spread`` command and of ``python -m spread``; the exit status."""
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.command == "demo":
        return run(lambda reactor: demo(reactor, options.timeout))
    if options.command == "serve":
        return _serve(parser, options.spec, options.listen)
    from twisted.internet import reactor

    try:
        _clientFromString(reactor, options.endpoint)
    except (ValueError, KeyError, TypeError) as problem:
        parser.error(f"bad ENDPOINT {options.endpoint!r}: {problem}")
    kwargs = dict(options.kwarg)
    credentials = _credentials(parser, options.username, options.password)
    return run(
        lambda reactor: call(
            reactor, options.endpoint, options.method, options.args, kwargs, options.timeout,
            credentials,
        )
    )


def _credentials(
    parser: argparse.ArgumentParser, username: str | None, password: str | None
) -> UsernamePassword | None:
    if username is None:
        if password is not None:
            parser.error("--password needs --username")
        return None
    if password is None:
        password = os.environ.get(PASSWORD_VARIABLE)
    if password is None:
        if not sys.stdin.isatty():
            parser.error(f"no password for {username!r}: pass --password or set "
                         f"{PASSWORD_VARIABLE}")  # fmt: skip
        password = getpass.getpass(f"password for {username}: ")
    return UsernamePassword(username.encode("utf-8"), password.encode("utf-8"))


def _serve(parser: argparse.ArgumentParser, spec: str, description: str) -> int:
    from twisted.internet import reactor

    from spread._serve import ServeError, load_root, serve

    try:
        root = load_root(spec)  # fail before starting the reactor, with a usage error
        endpoint = _serverFromString(reactor, description)
    except ServeError as problem:
        parser.error(str(problem))
    except (ValueError, KeyError, TypeError) as problem:
        parser.error(f"bad --listen ENDPOINT {description!r}: {_oneLine(problem)}")
    return run(
        lambda reactor: serve(reactor, root, spec, endpoint, description), interrupted=EXIT_OK
    )
