"""The programs in examples/ run as the docs tell readers to run them: a server in one process on
an ephemeral port, its client in another, checked by what they print."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import TIMEOUT, Program, ServerProgram, run_program
from test_docs import EXCERPT

EXAMPLES = Path(__file__).parent.parent / "examples"
DOCS = Path(__file__).parent.parent / "docs"
HOWTOS = [
    "first-server", "references", "copyable", "cacheable", "errors", "async", "asyncio", "auth",
]
# Pages whose code all comes from examples/ (upgrading.md's samples are run by test_rebuild.py).
PAGES = [f"howto-{name}" for name in HOWTOS] + ["tutorial", "migration", "security"]


Serve = Callable[[str], ServerProgram]


@pytest.fixture
def serve(programs: list[Program]) -> Serve:
    """Start example servers on ephemeral ports for a test; all are stopped when it ends."""

    def start(script: str) -> ServerProgram:
        server = ServerProgram(script, "tcp:0:interface=127.0.0.1")
        programs.append(server)
        return server

    return start


def run_client(script: str, *args: str) -> list[str]:
    """Run an example client to completion; the lines it printed. It must exit 0."""
    return run_program(script, *args)


def test_echo_client_prints_the_echo(serve: Serve) -> None:
    server = serve("echo_server.py")
    assert run_client("echo_client.py", server.endpoint) == ["echo: hello"]


def test_echo_client_sends_the_given_text(serve: Serve) -> None:
    server = serve("echo_server.py")
    assert run_client("echo_client.py", server.endpoint, "bonjour") == ["echo: bonjour"]


def test_echo_server_prints_what_it_echoes(serve: Serve) -> None:
    server = serve("echo_server.py")
    run_client("echo_client.py", server.endpoint)
    server.expect(r"^echoing 'hello'$")


def test_copy_sender_sends_a_pond(serve: Serve) -> None:
    receiver = serve("copy_receiver.py")
    assert run_client("copy_sender.py", receiver.endpoint) == [
        "7 frogs",
        "copy_sender.CopyPond",
        "pond arrived safe and sound",
    ]


def test_copy_receiver_rebuilds_the_pond(serve: Serve) -> None:
    receiver = serve("copy_receiver.py")
    run_client("copy_sender.py", receiver.endpoint)
    receiver.expect(r"^got pond: ReceiverPond, green$")
    receiver.expect(r"^7 frogs$")


def test_copy2_sender_sends_a_reduced_pond(serve: Serve) -> None:
    receiver = serve("copy2_receiver.py")
    assert run_client("copy2_sender.py", receiver.endpoint) == [
        "count 7",
        "pond arrived safe and sound",
    ]


def test_copy2_receiver_counts_from_the_reduced_state(serve: Serve) -> None:
    receiver = serve("copy2_receiver.py")
    run_client("copy2_sender.py", receiver.endpoint)
    receiver.expect(r"^got pond: ReceiverPond$")
    receiver.expect(r"^count 7$")


def test_references_client_uses_and_passes_references(serve: Serve) -> None:
    board = serve("references_server.py")
    assert run_client("references_client.py", board.endpoint) == [
        "apples: 3",
        "apples: 5",
        "heard: hello, board",
        "heard by 1 listener(s)",
    ]


def test_references_server_drops_listener_on_disconnect(serve: Serve) -> None:
    board = serve("references_server.py")
    run_client("references_client.py", board.endpoint)
    board.expect(r"^listeners: 1$")
    board.expect(r"^listeners: 0$")


def test_async_client_awaits_calls(serve: Serve) -> None:
    kitchen = serve("async_server.py")
    lines = run_client("async_client.py", kitchen.endpoint)
    assert lines[0] == "salad is ready"
    assert sorted(lines[1:4]) == [
        "served: bread is ready",
        "served: salad is ready",
        "served: soup is ready",
    ]
    assert lines[4:] == [
        "all served",
        "kitchen says: no stone soup today; try one of ['bread', 'salad', 'soup']",
    ]


def test_bank_client_handles_each_failure(serve: Serve) -> None:
    bank = serve("bank_server.py")
    lines = run_client("bank_client.py", bank.endpoint)
    assert lines[:6] == [
        "balance after withdrawing 30: 70",
        "refused: balance is 70, asked for 500",
        "the server failed: division by zero",
        "the server would not accept that object",
        "awaited: bank.InsufficientFunds: balance is 70, asked for 500",
        "still connected, balance 70",
    ]
    assert lines[6:] == [
        "pending call: PBConnectionLost",
        "disconnected",
        "call after disconnect: DeadReferenceError",
    ]


def test_copy_sender_is_refused_by_a_receiver_that_did_not_register(
    serve: Serve,
) -> None:
    receiver = serve("copy2_receiver.py")  # registers copy2 classes, not copy_sender.CopyPond
    lines = run_client("copy_sender.py", receiver.endpoint)
    assert lines[:2] == ["7 frogs", "copy_sender.CopyPond"]
    assert lines[2].startswith("error during takePond: twisted.spread.jelly.InsecureJelly: ")
    assert "copy_sender.CopyPond" in lines[2]


# ---------------------------------------------------------------------------------------------
# The how-tos show code only as excerpts of these examples; every excerpt must still resolve
# (tests/test_docs.py holds each one identical to its file).


def literal_includes(page: str) -> list[tuple[Path, dict[str, str]]]:
    text = (DOCS / f"{page}.md").read_text()
    return [
        ((DOCS / match["file"]).resolve(), json.loads(match["part"]))
        for match in EXCERPT.finditer(text)
    ]


def python_objects(source: str) -> set[str]:
    """Dotted names of the classes and functions in a module: "Board", "Board.unsubscribe"..."""
    names: set[str] = set()

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(prefix + child.name)
                visit(child, prefix + child.name + ".")

    visit(ast.parse(source), "")
    return names


@pytest.mark.parametrize("page", PAGES)
def test_howto_shows_code_from_examples(page: str) -> None:
    includes = literal_includes(page)
    assert includes, f"{page}.md includes no example"
    for path, _options in includes:
        assert path.parent == EXAMPLES.resolve(), f"{path} is not in examples/"
        assert path.is_file(), f"{path} does not exist"


@pytest.mark.parametrize("page", PAGES)
def test_howto_includes_resolve(page: str) -> None:
    for path, options in literal_includes(page):
        source = path.read_text()
        if "pyobject" in options:
            assert options["pyobject"] in python_objects(source), f"{path.name}: {options}"
        for marker in ("start-after", "end-before"):
            if marker in options:
                assert source.count(options[marker]) == 1, f"{path.name}: {marker} {options}"


@pytest.mark.parametrize("page", PAGES)
def test_howto_has_no_free_floating_python(page: str) -> None:
    text = (DOCS / f"{page}.md").read_text()
    assert text.count("```python") == len(EXCERPT.findall(text))


def test_limits_server_serves_within_its_limits(serve: Serve) -> None:
    server = serve("limits_server.py")
    assert run_client("echo_client.py", server.endpoint, "bounded") == ["echo: bounded"]


def test_limits_server_drops_a_client_whose_message_is_too_big(
    serve: Serve,
) -> None:
    server = serve("limits_server.py")
    big_call = (
        "import sys\n"
        "from twisted.internet import defer, endpoints, task\n"
        "from spread import pb\n"
        "async def main(reactor):\n"
        "    factory = pb.PBClientFactory()\n"
        "    await endpoints.clientFromString(reactor, sys.argv[1]).connect(factory)\n"
        "    root = await factory.getRootObject()\n"
        "    try:\n"
        "        await root.callRemote('echo', ['x' * 600_000, 'y' * 600_000])\n"
        "    except pb.PBConnectionLost:\n"
        "        print('dropped')\n"
        "task.react(lambda reactor: defer.ensureDeferred(main(reactor)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", big_call, server.endpoint],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.stdout == "dropped\n", done.stderr
    assert run_client("echo_client.py", server.endpoint) == ["echo: hello"]
