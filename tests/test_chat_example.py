"""The chat example (examples/chat_server.py, examples/chat_client.py) run as the how-to says:
a server and clients in their own processes, checked by what they print."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
TIMEOUT = 30.0


class Program:
    """An example program in a child process, its stdout read line by line as it comes."""

    def __init__(self, script: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(EXAMPLES / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
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
        """Wait for a line matching ``pattern`` (a regex, searched), at most TIMEOUT seconds."""
        deadline = time.monotonic() + TIMEOUT
        for seen in self.lines:
            found = re.search(pattern, seen)
            if found:
                return found
        while True:
            try:
                line = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines}") from None
            if line is None:
                raise AssertionError(
                    f"program ended without {pattern!r}; got {self.lines}, "
                    f"stderr {self.stderr()!r}"
                )
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found

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


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    started: list[Program] = []
    yield started
    for program in reversed(started):
        program.stop()


@pytest.fixture
def server(programs: list[Program]) -> tuple[Program, str]:
    """A running chat server on an ephemeral port, and the endpoint clients reach it by."""
    program = Program("chat_server.py", "tcp:0:interface=127.0.0.1")
    programs.append(program)
    port = program.expect(r"listening on port (\d+)").group(1)
    return program, f"tcp:127.0.0.1:{port}"


def client(programs: list[Program], endpoint: str, *login: str) -> Program:
    """A chat client logged in with ``login`` (user and password, or ``--guest``)."""
    program = Program("chat_client.py", *login, endpoint)
    programs.append(program)
    return program


def test_client_logs_in_and_is_announced(
    server: tuple[Program, str], programs: list[Program]
) -> None:
    alice = client(programs, server[1], "alice", "wonderland")
    alice.expect(r"^\* alice joined$")
    alice.expect(r"^in the room: alice$")


def test_server_reports_the_login(server: tuple[Program, str], programs: list[Program]) -> None:
    client(programs, server[1], "alice", "wonderland").expect("in the room")
    server[0].expect(r"^alice joined$")


def test_messages_reach_other_clients_through_their_mind(
    server: tuple[Program, str], programs: list[Program]
) -> None:
    alice = client(programs, server[1], "alice", "wonderland")
    alice.expect("in the room")
    bob = client(programs, server[1], "bob", "builder")
    bob.expect("in the room")
    bob.type("hello alice")
    alice.expect(r"^<bob> hello alice$")


def test_leaving_logs_out_and_tells_the_room(
    server: tuple[Program, str], programs: list[Program]
) -> None:
    alice = client(programs, server[1], "alice", "wonderland")
    alice.expect("in the room")
    bob = client(programs, server[1], "bob", "builder")
    bob.expect("in the room")
    assert bob.end_input() == 0
    alice.expect(r"^\* bob left$")
    server[0].expect(r"^bob left$")


def test_wrong_password_is_refused(server: tuple[Program, str], programs: list[Program]) -> None:
    mallory = client(programs, server[1], "alice", "guess")
    assert mallory.process.wait(TIMEOUT) == 1
    assert "login refused: unknown user or wrong password" in mallory.stderr()


def test_server_serves_others_after_a_refusal(
    server: tuple[Program, str], programs: list[Program]
) -> None:
    client(programs, server[1], "bob", "wrong").process.wait(TIMEOUT)
    client(programs, server[1], "bob", "builder").expect(r"^in the room: bob$")


def test_guest_hears_the_room(server: tuple[Program, str], programs: list[Program]) -> None:
    guest = client(programs, server[1], "--guest")
    guest.expect(r"^\* a guest joined$")
    alice = client(programs, server[1], "alice", "wonderland")
    alice.expect("in the room")
    alice.type("welcome")
    guest.expect(r"^<alice> welcome$")


def test_guest_cannot_speak(server: tuple[Program, str], programs: list[Program]) -> None:
    guest = client(programs, server[1], "--guest")
    guest.expect("in the room")
    guest.type("hello?")
    assert guest.end_input() == 0
    assert "guests cannot speak" in guest.stderr()
