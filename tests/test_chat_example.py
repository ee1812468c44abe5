"""The chat example (examples/chat_server.py, examples/chat_client.py) run as the how-to says:
a server and clients in their own processes, checked by what they print."""

from __future__ import annotations

import pytest
from support import TIMEOUT, Program


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
