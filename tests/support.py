"""Helpers shared by the tests: child processes (example programs read line by line, PB servers
that say their port, PB peers driven from the reactor), ports, waits, and a recording realm.
Every wait is bounded by TIMEOUT so a silent child or a lost answer fails the test instead of
hanging it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from twisted.cred import portal
from twisted.internet import defer, error, protocol, reactor, task
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from spread import pb

TIMEOUT = 30.0
TESTS = Path(__file__).parent
EXAMPLES = TESTS.parent / "examples"
PEERS = TESTS / "peers"


class Program:
    """A Python program in a child process (blocking API, for tests without a reactor).

    ``script`` is a path, or a file name under examples/.
    """

    def __init__(
        self, script: str | Path, *args: str, cwd: Path | None = None, module: bool = False
    ) -> None:
        """Run ``script`` (``python -m script`` if ``module``) with ``args`` in ``cwd``."""
        if module:
            argv = [sys.executable, "-u", "-m", str(script), *args]
        else:
            path = EXAMPLES / script if isinstance(script, str) else script
            argv = [sys.executable, "-u", str(path), *args]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: list[str] = []
        self._incoming: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._incoming.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._incoming.put(None)

    def expect(self, pattern: str) -> re.Match[str]:
        """The first line matching ``pattern`` (a regex, searched), waiting at most TIMEOUT."""
        for seen in self.lines:
            if found := re.search(pattern, seen):
                return found
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines}") from None
            if line is None:
                self._incoming.put(None)  # later waits see the end too
                raise AssertionError(
                    f"program ended without {pattern!r}; got {self.lines}, "
                    f"stderr {self.stderr()!r}"
                )
            self.lines.append(line)
            if found := re.search(pattern, line):
                return found

    def port(self) -> str:
        """The port the program announced with a ``listening on port N`` or ``PORT N`` line."""
        return self.expect(r"(?:listening on port |^PORT )(\d+)").group(1)

    def type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def end_input(self) -> int:
        """Close stdin (Ctrl-D) and return the exit code."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(TIMEOUT)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class ServerProgram(Program):
    """A PB server program in a child process; ``endpoint`` is how clients reach it.

    The program must say its port (see ``Program.port``). Give a program that takes an endpoint
    ``tcp:0:interface=127.0.0.1``, so that it picks a free port itself and says which.
    """

    def __init__(
        self, script: str | Path, *args: str, cwd: Path | None = None, module: bool = False
    ) -> None:
        super().__init__(script, *args, cwd=cwd, module=module)
        try:
            self.endpoint = f"tcp:host=127.0.0.1:port={self.port()}"
        except BaseException:
            self.stop()
            raise


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound for the whole ``with`` block, so no
    one else can take it, and never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port: int = holder.getsockname()[1]
        yield port


def run_program(script: str | Path, *args: str) -> list[str]:
    """Run a program to completion; the lines it printed. It must exit 0."""
    path = EXAMPLES / script if isinstance(script, str) else script
    done = subprocess.run(
        [sys.executable, str(path), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout.decode().splitlines()


class PeerProcess(protocol.ProcessProtocol):
    """A PB program in a child process driven from the reactor; its stdout read line by line.

    ``script`` is a file name under tests/peers/, or a path.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stderr = b""
        self.has_ended = False
        self.exit_code: int | None = None
        self._partial = b""
        self._line_waiters: list[tuple[str, defer.Deferred[str]]] = []
        self._end_waiters: list[defer.Deferred[int | None]] = []

    @classmethod
    def spawn(cls, script: str | Path, *args: str) -> PeerProcess:
        peer = cls()
        path = PEERS / script if isinstance(script, str) else script
        argv = [sys.executable, "-u", str(path), *args]
        reactor.spawnProcess(peer, sys.executable, argv, env=dict(os.environ))  # type: ignore[attr-defined]
        return peer

    def outReceived(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines.extend(raw.decode("utf-8", "replace") for raw in complete)
        for prefix, waiter in list(self._line_waiters):
            found = self._find(prefix)
            if found is not None:
                self._line_waiters.remove((prefix, waiter))
                waiter.callback(found)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.has_ended = True
        self.exit_code = getattr(reason.value, "exitCode", None)
        for end_waiter in self._end_waiters:
            end_waiter.callback(self.exit_code)
        for _prefix, waiter in self._line_waiters:
            waiter.errback(AssertionError(f"peer ended; it said {self.lines} {self.stderr!r}"))
        self._end_waiters.clear()
        self._line_waiters.clear()

    def _find(self, prefix: str) -> str | None:
        return next((line for line in self.lines if line.startswith(prefix)), None)

    async def line(self, prefix: str) -> str:
        """The first line starting with ``prefix``, waiting for it if need be."""
        found = self._find(prefix)
        if found is not None:
            return found
        waiter: defer.Deferred[str] = defer.Deferred()
        self._line_waiters.append((prefix, waiter))
        try:
            return await waiter.addTimeout(TIMEOUT, reactor)  # type: ignore[arg-type]
        except defer.TimeoutError:
            raise AssertionError(f"no {prefix!r} line: {self.lines} {self.stderr!r}") from None

    async def ended(self) -> int | None:
        """Wait for the child to exit; its exit code."""
        if self.has_ended:
            return self.exit_code
        waiter: defer.Deferred[int | None] = defer.Deferred()
        self._end_waiters.append(waiter)
        return await waiter.addTimeout(TIMEOUT, reactor)  # type: ignore[arg-type]

    def kill(self) -> None:
        with contextlib.suppress(error.ProcessExitedAlready):
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]

    async def finish(self) -> int | None:
        """Close the peer's stdin (its cue to stop), kill it if it lingers; its exit code."""
        if not self.has_ended:
            self.transport.closeStdin()  # type: ignore[union-attr]
        try:
            return await self.ended()
        except defer.TimeoutError:
            self.kill()
            return await self.ended()


def shared_sexp(levels: int, width: int = 30, first_id: int = 1) -> list[Any]:
    """A jelly s-expression of a list that holds ``width`` copies of the level below it."""
    sexp: list[Any] = [b"reference", first_id, [b"list", 1, 2]]
    for refid in range(first_id + 1, first_id + levels):
        below = [[b"dereference", refid - 1]] * (width - 1)
        sexp = [b"reference", refid, [b"list", sexp, *below]]
    return sexp


# ---------------------------------------------------------------------------------------------
# Waiting in the reactor


async def failure_of(d: defer.Deferred[Any]) -> Failure:
    """The Failure ``d`` ends with, waiting at most TIMEOUT; the test fails if it succeeds."""
    outcomes: list[Any] = []
    await d.addTimeout(TIMEOUT, reactor).addBoth(outcomes.append)
    assert isinstance(outcomes[0], Failure), f"expected a failure, got {outcomes[0]!r}"
    return outcomes[0]


async def wait_until(condition: Callable[[], object]) -> None:
    """Let the reactor turn until ``condition()`` is true; fail if it is not within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held within {TIMEOUT} seconds")
        await task.deferLater(reactor, 0.01, lambda: None)


# ---------------------------------------------------------------------------------------------
# A realm that records what happens to it


class Member(pb.Avatar):
    """The avatar Realm makes by default."""

    def __init__(self, name: str, mind: Any) -> None:
        self.name = name
        self.mind = mind

    def perspective_whoami(self) -> str:
        return self.name

    def perspective_add(self, a: int, b: int) -> int:
        return a + b

    def perspective_tellMind(self, text: str) -> Any:
        return self.mind.callRemote("hear", text)

    def perspective_noticeboard(self) -> Noticeboard:
        return Noticeboard()


class Noticeboard(pb.Viewable):
    def view_whoIsReading(self, perspective: Member) -> str:
        return perspective.name


class Mind(pb.Referenceable):
    """A client's mind; ``Member.perspective_tellMind`` calls it."""

    def remote_hear(self, text: str) -> str:
        return f"heard:{text}"


@implementer(portal.IRealm)
class Realm:
    """Records the logins, minds and logouts of a login server; a test can wait for a logout.

    It serves the perspective interfaces it is given (spread's ``pb.IPerspective`` if none; a
    portal shared by a spread and a Twisted server needs Twisted's too) and refuses others. Its
    avatars come from ``avatar_factory(name, mind)``, Member unless a test changes it.
    """

    def __init__(self, *interfaces: Any) -> None:
        self.interfaces = interfaces or (pb.IPerspective,)
        self.logins: list[str] = []
        self.logouts: list[str] = []
        self.minds: list[Any] = []
        self._logout_waiters: dict[str, list[defer.Deferred[None]]] = {}
        self.avatar_factory: Callable[[str, Any], object] = Member

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        served = [interface for interface in self.interfaces if interface in interfaces]
        assert served, f"asked for {interfaces}; this realm serves {self.interfaces}"
        name = avatarId.decode() if isinstance(avatarId, bytes) else "anonymous"
        self.logins.append(name)
        self.minds.append(mind)
        return served[0], self.avatar_factory(name, mind), lambda: self._logout(name)

    def _logout(self, name: str) -> None:
        self.logouts.append(name)
        for waiter in self._logout_waiters.pop(name, []):
            waiter.callback(None)

    def logged_out(self, name: str) -> defer.Deferred[None]:
        """Fire once ``name`` has been logged out (at once if it already has); fail after
        TIMEOUT."""
        if name in self.logouts:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._logout_waiters.setdefault(name, []).append(waiter)
        return waiter.addTimeout(TIMEOUT, reactor)


# -- the interpreter's recursion limit, for the tests that hold C to Python near it ------------


def recursion_depth() -> int:
    """How deep the interpreter counts this call to be: C calls count too, so frames do not
    tell. The lowest recursion limit it accepts is one more."""
    saved = sys.getrecursionlimit()
    low, high = 1, saved  # the limit in force is accepted; find the lowest one that is
    while low < high:
        middle = (low + high) // 2
        try:
            sys.setrecursionlimit(middle)
        except RecursionError:
            low = middle + 1
        else:
            high = middle
        finally:
            sys.setrecursionlimit(saved)
    return low - 1


class stack_room:  # noqa: N801 - used as a context manager, like contextlib's
    """Lower the recursion limit to allow about ``frames`` more calls from where the ``with``
    statement is (None: leave it as it is)."""

    def __init__(self, frames: int | None) -> None:
        self.frames = frames
        self.saved = sys.getrecursionlimit()

    def __enter__(self) -> None:
        if self.frames is not None:
            sys.setrecursionlimit(recursion_depth() + self.frames)

    def __exit__(self, *exc_info: object) -> None:
        sys.setrecursionlimit(self.saved)


def mypy_strict(source: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mypy --strict`` on ``source`` as a user's program in ``directory`` (outside the
    checkout, so only the installed package can satisfy its imports)."""
    program = directory / "user_program.py"
    program.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
        cwd=directory, capture_output=True, text=True, timeout=600,
    )
