"""The reload example (examples/reload_*.py) end to end: a running server whose source is edited,
a privileged remote call that reloads it, and a connected client that sees the new behaviour
through the reference it already held. Runs on copies in a temporary directory, so the test can
edit the service's source."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import EXAMPLES, Program

FILES = ["reload_server.py", "reload_service.py", "reload_client.py"]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Path, str, list[Program]]]:
    """A reload server running from a copy of the example; its endpoint; programs to stop."""
    for name in FILES:
        shutil.copy(EXAMPLES / name, tmp_path / name)
    server = Program(tmp_path / "reload_server.py", "tcp:0:interface=127.0.0.1")
    programs = [server]
    try:
        yield tmp_path, f"tcp:host=127.0.0.1:port={server.port()}", programs
    finally:
        for program in reversed(programs):
            program.stop()


def client(app: tuple[Path, str, list[Program]], user: str, password: str) -> Program:
    directory, endpoint, programs = app
    program = Program(directory / "reload_client.py", endpoint, user, password)
    programs.append(program)
    program.expect(f"^logged in as {user}$")
    return program


def edit_service(directory: Path, old: str, new: str) -> None:
    source = directory / "reload_service.py"
    text = source.read_text()
    assert old in text
    source.write_text(text.replace(old, new))


def test_client_sees_new_code_through_the_reference_it_held(
    app: tuple[Path, str, list[Program]],
) -> None:
    alice = client(app, "alice", "wonderland")
    alice.type("greet ann")
    alice.expect(r"^hello, ann \(call 1\)$")
    edit_service(app[0], 'f"hello, {name}', 'f"good day, {name}')
    alice.type("reload")
    alice.expect("^reloaded reload_service$")
    alice.type("greet ann")
    alice.expect(r"^good day, ann \(call 2\)$")  # same object: its count went on


def test_reload_runs_the_modules_migration_hook(app: tuple[Path, str, list[Program]]) -> None:
    alice = client(app, "alice", "wonderland")
    alice.type("reload")
    alice.expect("^reloaded reload_service$")
    server = app[2][0]
    server.expect("^migrating reload_service to its new code$")
    server.expect("^alice reloaded reload_service$")


def test_other_clients_see_the_new_code_too(app: tuple[Path, str, list[Program]]) -> None:
    alice = client(app, "alice", "wonderland")
    bob = client(app, "bob", "builder")
    edit_service(app[0], 'f"hello, {name}', 'f"good day, {name}')
    alice.type("reload")
    alice.expect("^reloaded reload_service$")
    bob.type("greet bea")
    bob.expect(r"^good day, bea \(call 1\)$")


def test_a_user_who_is_not_an_administrator_may_not_reload(
    app: tuple[Path, str, list[Program]],
) -> None:
    bob = client(app, "bob", "builder")
    edit_service(app[0], 'f"hello, {name}', 'f"good day, {name}')
    bob.type("reload")
    bob.expect("^refused: bob may not reload code; ask an administrator$")
    bob.type("greet bea")
    bob.expect(r"^hello, bea \(call 1\)$")


def test_broken_new_source_leaves_the_old_code_running(
    app: tuple[Path, str, list[Program]],
) -> None:
    alice = client(app, "alice", "wonderland")
    edit_service(app[0], "def remote_greet(self, name: str) -> str:", "def remote_greet(self, name")
    alice.type("reload")
    alice.expect("^refused: rebuilding 'reload_service' failed, so its old code keeps running")
    alice.type("greet ann")
    alice.expect(r"^hello, ann \(call 1\)$")
