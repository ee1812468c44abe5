"""The ``spread`` command line.

``spread demo`` starts a PB server in a child process and a client in this one, and shows a
remote call, an object copied by value and a remote error. ``spread call`` calls one method on
the root object of any PB server, spread's or Twisted's, and prints the answer. ``spread serve``
publishes an object from any module as a PB server's root.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from twisted.internet import defer, endpoints, protocol
from twisted.python.failure import Failure
from twisted.python.reflect import qual

from spread import __version__, pb

EXIT_OK = 0
EXIT_REMOTE_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_CONNECT = 3
DEFAULT_TIMEOUT = 30.0
DEMO_SERVER_ENDPOINT = "tcp:0:interface=127.0.0.1"
DEFAULT_LISTEN = "tcp:8789"

CALL_EPILOG = """\
ENDPOINT is a Twisted client endpoint string, for instance tcp:host=127.0.0.1:port=8789,
unix:path=/tmp/pb.sock or tls:example.com:8789. Each ARG (and each --kwarg VALUE) is decoded
as JSON; anything that is not JSON is passed as a string. So 42, 1.5, true, null, "text",
[1, 2] and {"a": 1} arrive as int, float, bool, None, str, list and dict, and hello arrives
as "hello".

The answer is printed as JSON when it is plain data, and as its repr otherwise.
Exit status: 0 answered, 1 the remote method failed (the error is printed on stderr),
2 bad command line, 3 could not connect or no answer in time.

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
serves until stopped (Ctrl-C). Exit status: 0 stopped, 2 bad command line or nothing to serve.

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


# ---------------------------------------------------------------------------------------------
# Running a coroutine on the reactor


def _run(
    job: Callable[[Any], Coroutine[Any, Any, int]], interrupted: int = EXIT_REMOTE_ERROR
) -> int:
    """Run ``job(reactor)`` to completion on the global reactor; its exit status, or
    ``interrupted`` if something else (Ctrl-C, SIGTERM) stopped the reactor first."""
    from twisted.internet import reactor as installed

    reactor = cast(Any, installed)
    outcome: list[int] = []

    def finished(result: int | Failure) -> None:
        if isinstance(result, Failure):
            print(result.getTraceback(), file=sys.stderr)
            result = EXIT_REMOTE_ERROR
        outcome.append(result)
        reactor.stop()

    def start() -> None:
        defer.ensureDeferred(job(reactor)).addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run()
    return outcome[0] if outcome else interrupted


async def _connect(reactor: Any, description: str, timeout: float) -> tuple[Any, Any]:
    """Connect a PB client to ``description``; (factory, root object)."""
    factory = pb.PBClientFactory()
    endpoint = _clientFromString(reactor, description)
    await endpoint.connect(factory).addTimeout(timeout, reactor)
    root = await factory.getRootObject().addTimeout(timeout, reactor)
    return factory, root


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
) -> int:
    """Call ``method`` on the root object at ``description``; print the answer or the error."""
    try:
        factory, root = await _connect(reactor, description, timeout)
    except Exception as reason:  # refused, unreachable, not a PB server, timed out...
        print(f"spread call: could not connect to {description}: {reason}", file=sys.stderr)
        return EXIT_CONNECT
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
        print(f"spread call: no answer from {method} within {timeout:g}s", file=sys.stderr)
        return EXIT_CONNECT
    print(f"error: {describe_failure(result)}", file=sys.stderr)
    return EXIT_REMOTE_ERROR


# ---------------------------------------------------------------------------------------------
# spread demo (client side) and spread serve-demo (the server it starts)


class DemoError(pb.Error):
    """What the demo server raises for a division by zero: a pb.Error reaches the caller."""


class DemoPond(pb.Copyable):
    """Sent by copy: the client receives the state below and builds its own DemoPondCopy."""

    def __init__(self, frogs: int) -> None:
        self.frogs = frogs

    def getStateToCopy(self) -> dict[str, int]:
        return {"frogs": self.frogs}


class DemoPondCopy(pb.RemoteCopy):
    frogs: int

    def setCopyableState(self, state: dict[str, int]) -> None:
        self.frogs = state["frogs"]

    def __repr__(self) -> str:
        return f"<DemoPondCopy with {self.frogs} frogs>"


class DemoRoot(pb.Root):
    """The demo server's root object: one method per thing the demo shows."""

    def __init__(self, stop: Callable[[], object]) -> None:
        self._stop = stop

    def remote_greet(self, name: str) -> str:
        return f"Hello, {name}!"

    def remote_makePond(self, frogs: int) -> DemoPond:
        return DemoPond(frogs)

    def remote_divide(self, a: float, b: float) -> float:
        if b == 0:
            raise DemoError(f"cannot divide {a} by {b}")
        return a / b

    def remote_shutdown(self) -> None:
        self._stop()


def _allow_demo_copies() -> None:
    pb.setUnjellyableForClass(DemoPond, DemoPondCopy)


class _StopOnStdinClose(protocol.Protocol):
    """The demo server ends when its parent closes our stdin (or dies)."""

    def __init__(self, stop: Callable[[], object]) -> None:
        self._stop = stop

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._stop()


async def serve_demo(reactor: Any, description: str) -> int:
    """The demo's server process: print the port, serve until shutdown or stdin closes."""
    from twisted.internet import stdio

    stopped: defer.Deferred[None] = defer.Deferred()

    def stop() -> None:
        if not stopped.called:
            reactor.callLater(0, stopped.callback, None)  # after the shutdown call's answer

    endpoint = _serverFromString(reactor, description)
    listening = await endpoint.listen(pb.PBServerFactory(DemoRoot(stop)))
    print(f"demo server listening on port {listening.getHost().port}", flush=True)
    cast(Any, stdio.StandardIO)(_StopOnStdinClose(stop), reactor=reactor)
    await stopped
    await listening.stopListening()
    return EXIT_OK


class _DemoServerProcess(protocol.ProcessProtocol):
    """The child running ``spread serve-demo``: tells us its port, then its exit code."""

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
        """Close its stdin, its cue to stop (serve-demo also stops if we die)."""
        if self.ended.called or self.transport is None:
            return
        cast(Any, self.transport).closeStdin()


def _show(what: str, call_text: str, outcome: object) -> None:
    print(f"  {what:<12} {call_text:<15} -> {outcome}")


async def demo(reactor: Any, timeout: float) -> int:
    """Start a demo server process, talk to it, stop it. 0 if everything went as shown."""
    _allow_demo_copies()
    print("spread demo: a PB server in a child process, a PB client in this one")
    server = _DemoServerProcess()
    argv = [sys.executable, "-m", "spread", "serve-demo", DEMO_SERVER_ENDPOINT]
    child = reactor.spawnProcess(server, sys.executable, argv, env=dict(os.environ))
    try:
        port = await server.port.addTimeout(timeout, reactor)
        print(f"server: process {child.pid}, listening on 127.0.0.1 port {port}")
        factory, root = await _connect(reactor, f"tcp:host=127.0.0.1:port={port}", timeout)
        print("client: connected and got the server's root object")
        await _demo_calls(reactor, root, timeout)
        await root.callRemote("shutdown").addTimeout(timeout, reactor)
        factory.disconnect()
        code = await server.ended.addTimeout(timeout, reactor)
    except Exception as failure:  # any step: say what went wrong, clean up, fail
        print(f"spread demo failed: {failure!r}", file=sys.stderr)
        server.stop()
        return EXIT_REMOTE_ERROR
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
    parser.add_argument("--version", action="version", version=f"spread {__version__}")
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
        type=float,
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
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up connecting or waiting for the answer after this long "
        f"(default {DEFAULT_TIMEOUT:g})",
    )

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

    # Not listed in --help: the server process that `spread demo` starts.
    demo_server_parser = commands.add_parser("serve-demo")
    demo_server_parser.add_argument("endpoint", nargs="?", default=DEMO_SERVER_ENDPOINT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spread`` command and of ``python -m spread``; the exit status."""
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.command == "demo":
        return _run(lambda reactor: demo(reactor, options.timeout))
    if options.command == "serve":
        return _serve(parser, options.spec, options.listen)
    if options.command == "serve-demo":
        _allow_demo_copies()
        return _run(lambda reactor: serve_demo(reactor, options.endpoint))
    from twisted.internet import reactor

    try:
        _clientFromString(reactor, options.endpoint)
    except (ValueError, KeyError, TypeError) as problem:
        parser.error(f"bad ENDPOINT {options.endpoint!r}: {problem}")
    kwargs = dict(options.kwarg)
    return _run(
        lambda reactor: call(
            reactor, options.endpoint, options.method, options.args, kwargs, options.timeout
        )
    )


def _serve(parser: argparse.ArgumentParser, spec: str, description: str) -> int:
    from spread._serve import ServeError, load_root, serve

    try:
        root = load_root(spec)  # fail before starting the reactor, with a usage error
    except ServeError as problem:
        parser.error(str(problem))
    return _run(lambda reactor: serve(reactor, root, spec, description), interrupted=EXIT_OK)
