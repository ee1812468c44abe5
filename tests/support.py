"""Child processes for tests: example programs read line by line, and PB peers driven from the
reactor. Every wait is bounded by TIMEOUT so a silent child fails the test instead of hanging it."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, error, protocol, reactor
from twisted.python.failure import Failure

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
        """The port the program announced with a ``listening on port N`` line."""
        return self.expect(r"listening on port (\d+)").group(1)

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
