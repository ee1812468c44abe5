"""The ``spread`` command line, run as users run it: ``spread demo`` end to end, and ``spread call``
against a real twisted.spread server and a spread server, each in its own process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import TIMEOUT, Program, ServerProgram, refusing_port


def spread(*args: str, timeout: float = 2 * TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m spread ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "spread", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# twisted_server, the endpoint of a real twisted.spread server, comes from conftest.py.


@pytest.fixture(scope="module")
def spread_server() -> Iterator[str]:
    """The endpoint of a spread server (examples/echo_server.py)."""
    server = ServerProgram("echo_server.py", "tcp:0:interface=127.0.0.1")
    yield server.endpoint
    server.stop()


# ---------------------------------------------------------------------------------------------
# Help


def test_help_lists_the_commands() -> None:
    done = spread("--help")
    assert done.returncode == 0
    assert "demo" in done.stdout
    assert "call" in done.stdout


def test_the_demo_server_is_no_command_at_all() -> None:
    assert "serve-demo" not in spread("--help").stdout
    unknown = spread("frobnicate")
    assert unknown.returncode == 2
    assert "serve-demo" not in unknown.stderr and "demo" in unknown.stderr


def test_version_says_spread_twisted_and_the_accelerator() -> None:
    import twisted

    import spread as package

    done = spread("--version")
    assert done.returncode == 0
    speed = "on" if package.accelerated() else "off"
    assert done.stdout.strip() == (
        f"spread {package.__version__} (Twisted {twisted.__version__}, C accelerator {speed})"
    )


@pytest.mark.parametrize("args", [["demo", "--timeout", "-1"], ["call", "--timeout", "0",
                                  "tcp:127.0.0.1:1", "echo"], ["demo", "--timeout", "soon"]])
def test_a_timeout_must_be_a_positive_number(args: list[str]) -> None:
    done = spread(*args)
    assert done.returncode == 2
    assert "seconds" in done.stderr and "Traceback" not in done.stderr


def test_call_help_explains_endpoint_and_arguments() -> None:
    done = spread("call", "--help")
    assert done.returncode == 0
    for words in ("ENDPOINT", "METHOD", "ARG", "JSON", "tcp:host=127.0.0.1:port=", "Exit status"):
        assert words in done.stdout


def test_no_command_is_a_usage_error() -> None:
    done = spread()
    assert done.returncode == 2
    assert "COMMAND" in done.stderr


def test_spread_script_is_installed() -> None:
    script = Path(sys.executable).parent / "spread"
    if not script.exists():
        pytest.skip("the spread console script is not installed in this environment")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("spread ")


# ---------------------------------------------------------------------------------------------
# spread demo


def test_demo_shows_call_copy_and_error_then_exits_zero() -> None:
    done = spread("demo")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"server: process \d+, listening on 127\.0\.0\.1 port \d+", lines[1])
    assert [line.split() for line in lines[2:]] == [
        line.split()
        for line in [
            "client: connected and got the server's root object",
            "remote call  greet('world')  -> 'Hello, world!'",
            "copyable  makePond(7)  -> <DemoPondCopy with 7 frogs>, copied by value",
            "error  divide(1, 0)  -> errback with spread.cli.DemoError: cannot divide 1 by 0",
            "server: stopped (exit code 0)",
        ]
    ]


# ---------------------------------------------------------------------------------------------
# spread call against a Twisted server


def test_call_twisted_server_with_json_argument(twisted_server: str) -> None:
    done = spread("call", twisted_server, "echo", '{"frogs": [1, 2.5, true, null]}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"frogs": [1, 2.5, True, None]}


def test_call_twisted_server_with_several_arguments(twisted_server: str) -> None:
    done = spread("call", twisted_server, "describeCall", "1", "two", "[3]")
    assert json.loads(done.stdout) == {"args": [1, "two", [3]], "kwargs": {}}


def test_call_passes_a_non_json_argument_as_a_string(twisted_server: str) -> None:
    done = spread("call", twisted_server, "describe", "hello")
    assert json.loads(done.stdout) == {"type": "builtins.str", "repr": "'hello'"}


def test_call_passes_keyword_arguments(twisted_server: str) -> None:
    done = spread("call", twisted_server, "describeCall", "1", "--kwarg", "flag=true")
    assert json.loads(done.stdout) == {"args": [1], "kwargs": {"flag": True}}


def test_call_prints_repr_of_a_non_json_answer(twisted_server: str) -> None:
    done = spread("call", twisted_server, "counter")
    assert done.returncode == 0, done.stderr
    assert "RemoteReference" in done.stdout


def test_call_prints_remote_error_and_exits_one(twisted_server: str) -> None:
    done = spread("call", twisted_server, "fail", "pb", "no frogs")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "twisted_types.PeerError: no frogs" in done.stderr


def test_call_unknown_method_exits_one(twisted_server: str) -> None:
    done = spread("call", twisted_server, "noSuchThing")
    assert done.returncode == 1
    assert "noSuchThing" in done.stderr


# ---------------------------------------------------------------------------------------------
# spread call against a spread server, and without one


def test_call_spread_server(spread_server: str) -> None:
    done = spread("call", spread_server, "echo", '[1, "two", {"three": 3}]')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, "two", {"three": 3}]


def test_call_spread_server_unknown_method_exits_one(spread_server: str) -> None:
    done = spread("call", spread_server, "noSuchThing")
    assert done.returncode == 1
    assert "noSuchThing" in done.stderr


def test_call_with_nothing_listening_exits_three() -> None:
    with refusing_port() as port:
        done = spread("call", f"tcp:host=127.0.0.1:port={port}", "echo", "1")
    assert done.returncode == 3
    assert "could not connect" in done.stderr


def test_call_with_a_bad_endpoint_is_a_usage_error() -> None:
    done = spread("call", "carrier-pigeon:coop=3", "echo")
    assert done.returncode == 2
    assert "ENDPOINT" in done.stderr


def test_call_to_something_that_is_not_a_pb_server_says_so_in_one_line() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        done = spread("call", "--timeout", "1", f"tcp:127.0.0.1:{port}", "echo")
    assert done.returncode == 3
    assert done.stderr == (
        f"spread call: no PB answer from 127.0.0.1:{port} within 1 s; is it a PB server?\n"
    )


def test_call_without_answer_gives_up_after_timeout(twisted_server: str) -> None:
    done = spread("call", "--timeout", "0.5", twisted_server, "hang")
    assert done.returncode == 3
    assert "no answer from hang" in done.stderr


# ---------------------------------------------------------------------------------------------
# spread serve

SERVICE = '''
from spread import pb


class Echoer(pb.Root):
    def remote_echo(self, value):
        return value


def make_root():
    return Echoer()


instance = Echoer()
not_a_root = 42
'''


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    (tmp_path / "myservice.py").write_text(SERVICE)
    return tmp_path


@pytest.fixture
def served(service_dir: Path, programs: list[Program]) -> Callable[[str], ServerProgram]:
    """Start ``spread serve SPEC`` on a free port in the service's directory."""

    def start(spec: str) -> ServerProgram:
        server = ServerProgram(
            "spread", "serve", spec, "--listen", "tcp:0:interface=127.0.0.1",
            cwd=service_dir, module=True,
        )
        programs.append(server)
        return server

    return start


@pytest.mark.parametrize("spec", ["myservice:Echoer", "myservice:make_root", "myservice:instance"])
def test_serve_serves_a_class_a_factory_or_an_instance(
    served: Callable[[str], ServerProgram], spec: str
) -> None:
    answer = spread("call", served(spec).endpoint, "echo", '{"a": 1}')
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"a": 1}


def test_serve_says_where_it_listens(served: Callable[[str], ServerProgram]) -> None:
    server = served("myservice:Echoer")
    server.expect(r"^serving myservice:Echoer on tcp:0:interface=127\.0\.0\.1: listening on port")


def test_serve_logs_each_connection_and_its_end(
    served: Callable[[str], ServerProgram],
) -> None:
    server = served("myservice:Echoer")
    assert spread("call", server.endpoint, "echo", "1").returncode == 0
    peer = server.expect(r"^connection from (127\.0\.0\.1:\d+)$").group(1)
    server.expect(f"^connection from {re.escape(peer)} closed$")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("myservice", "expected MODULE:OBJECT"),
        ("nosuchmodule:root", "cannot import 'nosuchmodule'"),
        ("myservice:missing", "myservice has no 'missing'"),
        ("myservice:not_a_root", "cannot be a PB root"),
    ],
)
def test_serve_refuses_what_it_cannot_serve(service_dir: Path, spec: str, says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spread", "serve", spec], cwd=service_dir,
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert says in done.stderr


def test_serve_help_explains_the_arguments() -> None:
    done = spread("serve", "--help")
    assert done.returncode == 0
    assert "MODULE:OBJECT" in done.stdout
    assert "--listen ENDPOINT" in done.stdout


@pytest.mark.parametrize(
    ("listen", "says"),
    [("bogus", "bad --listen ENDPOINT 'bogus'"), ("tcp:notaport", "bad --listen ENDPOINT")],
)
def test_serve_with_a_bad_endpoint_is_a_one_line_usage_error(
    service_dir: Path, listen: str, says: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spread", "serve", "myservice:Echoer", "--listen", listen],
        cwd=service_dir, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr


def test_serve_on_a_port_in_use_is_a_one_line_error(service_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "spread", "serve", "myservice:Echoer",
             "--listen", f"tcp:{port}:interface=127.0.0.1"],
            cwd=service_dir, capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"spread serve: cannot listen on port {port}: ")
    assert len(done.stderr.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# spread call --username

LOGIN_SERVICE = '''
from twisted.cred import checkers, portal
from zope.interface import implementer

from spread import pb


class Member(pb.Avatar):
    def __init__(self, name):
        self.name = name

    def perspective_whoami(self):
        return self.name


@implementer(portal.IRealm)
class Realm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        return pb.IPerspective, Member(avatarId.decode()), lambda: None


def make_portal():
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    return portal.Portal(Realm(), [checker])
'''


@pytest.fixture
def login_server(tmp_path: Path, programs: list[Program]) -> str:
    (tmp_path / "members.py").write_text(LOGIN_SERVICE)
    server = ServerProgram(
        "spread", "serve", "members:make_portal", "--listen", "tcp:0:interface=127.0.0.1",
        cwd=tmp_path, module=True,
    )
    programs.append(server)
    return server.endpoint


def test_call_logs_in_and_calls_the_perspective(login_server: str) -> None:
    done = spread("call", login_server, "whoami", "--username", "alice", "--password", "secret")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "alice"


def test_call_takes_the_password_from_the_environment(login_server: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spread", "call", login_server, "whoami", "-u", "alice"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=2 * TIMEOUT,
        env={**os.environ, "SPREAD_PASSWORD": "secret"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "alice"


def test_a_refused_login_is_one_line(login_server: str) -> None:
    done = spread("call", login_server, "whoami", "-u", "alice", "-p", "wrong")
    assert done.returncode == 1
    assert done.stderr == "spread call: login refused for 'alice'\n"


def test_without_a_username_a_login_server_hints_at_it(login_server: str) -> None:
    done = spread("call", login_server, "whoami")
    assert done.returncode == 1
    assert "--username" in done.stderr and len(done.stderr.splitlines()) == 1


def test_no_password_and_no_terminal_is_a_usage_error(login_server: str) -> None:
    done = spread("call", login_server, "whoami", "-u", "alice")
    assert done.returncode == 2
    assert "SPREAD_PASSWORD" in done.stderr


# ---------------------------------------------------------------------------------------------
# spread demo leaves nothing behind


def demo_servers() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True,
                             timeout=TIMEOUT, check=True).stdout  # fmt: skip
    return [line for line in listing.splitlines() if "spread._demo" in line]


def test_a_failed_demo_says_why_in_one_line_and_ends_its_server() -> None:
    before = demo_servers()
    done = spread("demo", "--timeout", "0.01")
    assert done.returncode == 1
    assert done.stderr.startswith("spread demo: ") and len(done.stderr.splitlines()) == 1
    deadline = time.monotonic() + TIMEOUT
    while demo_servers() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert demo_servers() == before
