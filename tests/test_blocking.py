"""spread.blocking: blocking calls from scripts, REPLs, notebooks and threads.

This process already runs the reactor in its main thread (pytest-twisted), so the blocking
client, which runs the reactor in a thread of its own, cannot be tried here: every scenario is a
client script run in a child Python process, against a server in yet another process on an
ephemeral port. A client must exit 0 with nothing on stderr, so noise at exit fails the test.

The samples of docs/howto-blocking.md are the constants below marked "docs sample": the page
shows them as excerpts of this file, and they talk to the examples/ servers at their default
ports, which the tests replace with the ports the servers got.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import EXAMPLES, Program, ServerProgram, refusing_port

ROOT = Path(__file__).parent.parent
CHILD_TIMEOUT = 60.0  # a client script runs at most this long; its own waits are 30 s

# ---------------------------------------------------------------------------------------------
# Client scripts

# docs sample: connect and call
ECHO_CLIENT = """\
from spread import blocking

with blocking.connect("tcp:localhost:8789") as root:
    print(root)
    print(root.callRemote("echo", "hello"))
"""

# docs sample: errors and timeouts
BANK_CLIENT = """\
from spread import blocking, pb

root = blocking.connect("tcp:localhost:8792")
try:
    root.callRemote("withdraw", 500)
except pb.RemoteError as error:
    print(f"refused: {error.typeName}: {error}")

try:
    root.withTimeout(1).callRemote("audit")  # a method that never answers
except TimeoutError as error:
    print(error)

print(root.callRemote("balance"))  # the connection is still good
root.close()
"""

# docs sample: references
REFERENCES_CLIENT = """\
from spread import blocking

with blocking.connect("tcp:localhost:8790") as board:
    apples = board.callRemote("tally", "apples")
    print(apples)
    print(apples.callRemote("add", 3))
    print(apples.callRemote("add", 4))
    print(board.callRemote("tally", "apples") == apples)
"""

# docs sample: threads
THREADS_CLIENT = """\
from concurrent.futures import ThreadPoolExecutor

from spread import blocking

root = blocking.connect("tcp:localhost:8789")
with ThreadPoolExecutor(max_workers=8) as pool:
    answers = list(pool.map(lambda n: root.callRemote("echo", n), range(200)))
print(answers == list(range(200)))
root.close()
"""

# docs sample: login
LOGIN_CLIENT = """\
from twisted.cred.credentials import UsernamePassword

from spread import blocking, pb

alice = UsernamePassword(b"alice", b"wonderland")
with blocking.login("tcp:localhost:8800", alice) as perspective:
    print(perspective.callRemote("who"))

try:
    blocking.login("tcp:localhost:8800", UsernamePassword(b"alice", b"guess"))
except pb.RemoteError as error:
    print(f"refused: {error.typeName}")
"""

# docs sample: a notebook cell
NOTEBOOK_CELL = """\
import asyncio

from spread import blocking


async def cell():  # a notebook cell runs like this: inside the running asyncio loop
    root = blocking.connect("tcp:localhost:8789")
    print(root.callRemote("echo", "straight from the cell"))
    # A call that may take a while is better made in a worker thread, so the
    # notebook's event loop goes on running meanwhile:
    print(await asyncio.to_thread(root.callRemote, "echo", "from a worker thread"))
    root.close()


asyncio.run(cell())
"""

# docs sample: disconnects
DISCONNECT_CLIENT = """\
import threading

from spread import blocking

root = blocking.connect("tcp:localhost:8789")
gone = threading.Event()
root.notifyOnDisconnect(lambda ref: gone.set())  # runs in the reactor thread
"""
# (the test's own part: a call left waiting, the server killed, then calls on a closed line)
DISCONNECT_CHECKS = """
import os
import signal
import sys
import time

from spread import pb

outcome = []

def wait_for_an_answer_that_never_comes():
    try:
        root.callRemote("hang")
    except pb.PBConnectionLost:
        outcome.append("PBConnectionLost")

waiter = threading.Thread(target=wait_for_an_answer_that_never_comes)
waiter.start()
deadline = time.monotonic() + 30
while root.callRemote("hanging") == 0:  # until the server holds the call
    assert time.monotonic() < deadline, "the hanging call never reached the server"
    time.sleep(0.01)
os.kill(int(sys.argv[1]), signal.SIGKILL)
waiter.join(30)
print("waiting call:", outcome)
print("notified:", gone.wait(30))
print(root)
try:
    root.callRemote("echo", 1)
except pb.DeadReferenceError:
    print("later call: DeadReferenceError")
"""

# After ECHO_CLIENT's with-block: the connection is closed.
CLOSED_CHECKS = """
from spread import pb

print(root.disconnected)
print(root)
try:
    root.callRemote("echo", "anyone?")
except pb.DeadReferenceError:
    print("DeadReferenceError")
"""

# After NOTEBOOK_CELL: the reactor blocking installed is not the asyncio one.
REACTOR_KIND = """
from twisted.internet import reactor

print(type(reactor).__module__)
"""

TWISTED_PEER_CLIENT = """\
import sys

from spread import blocking, pb

with blocking.connect(sys.argv[1]) as peer:
    value = {"list": [1, (2, 3)], "bytes": b"x", "text": "snow"}
    print("echo:", peer.callRemote("echo", value) == value)
    try:
        peer.callRemote("fail", "pb", "boom")
    except pb.RemoteError as error:
        print(f"error: {error.typeName}: {error}")
    counter = peer.callRemote("counter")
    print(type(counter).__name__, counter.callRemote("increment", 5))
    peer.callRemote("keep", counter)
    print("kept:", peer.callRemote("kept") == counter)
    echoed = peer.callRemote("echo", [counter, {"inside": (counter,)}])
    print("nested:", echoed == [counter, {"inside": (counter,)}], type(echoed[0]).__name__)
"""

CACHE_CLIENT = """\
import sys

sys.path.insert(0, sys.argv[2])
import cache_classes  # noqa: F401  (registers SlaveDuckPond as the replica class)

from spread import blocking

with blocking.connect(sys.argv[1]) as root:
    pond = root.callRemote("pond")
    print(pond)
    print("ducks:", pond.count())
    root.callRemote("addDuck", "ugly duckling")  # the replica hears of it before the answer
    print("ducks:", pond.count(), pond.cacheducks)
    print("same:", root.callRemote("pond") == pond)
"""

IN_THE_REACTOR_CLIENT = """\
import sys

from twisted.internet import task

from spread import blocking


def connect():
    try:
        blocking.connect(sys.argv[1])
    except RuntimeError as error:
        print(error)


task.react(lambda reactor: task.deferLater(reactor, 0, connect))  # in the running reactor
"""

OWN_REACTOR_CLIENT = """\
import sys
import threading

from twisted.internet import reactor

from spread import blocking

running = threading.Event()
reactor.callWhenRunning(running.set)
loop = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False})
loop.start()
assert running.wait(30)

root = blocking.connect(sys.argv[1])
print(root.callRemote("echo", "on your reactor"))
root.close()
print("threads:", sorted(t.name for t in threading.enumerate() if "spread" in t.name))
print("still running:", reactor.running)
reactor.callFromThread(reactor.stop)
loop.join(30)
"""

CONNECT_ERRORS_CLIENT = """\
import sys

from spread import blocking

for endpoint in ["127.0.0.1:" + sys.argv[1], "tcp:8789"]:
    try:
        blocking.connect(endpoint)
    except Exception as error:
        print(type(error).__module__, type(error).__name__)
"""

LEFT_OPEN_CLIENT = """\
import sys
import threading
import time

from spread import blocking

root = blocking.connect(sys.argv[1])
threading.Thread(target=root.withTimeout(None).callRemote, args=["hang"], daemon=True).start()
deadline = time.monotonic() + 30
while root.callRemote("hanging") == 0:  # until the server holds the call
    assert time.monotonic() < deadline, "the hanging call never reached the server"
    time.sleep(0.01)
print("leaving, with a connection open and a call waiting")
"""

# A server for what the example servers do not offer: calls left waiting, and a Cacheable.
TEST_SERVER = """\
import sys

sys.path.insert(0, sys.argv[1])
from cache_classes import MasterDuckPond
from twisted.internet import defer, endpoints, reactor

from spread import pb


class TestRoot(pb.Root):
    def __init__(self):
        self.unanswered = []
        self.pond = MasterDuckPond(["one duck", "two duck"])

    def remote_echo(self, value):
        return value

    def remote_hang(self):
        self.unanswered.append(defer.Deferred())
        return self.unanswered[-1]

    def remote_hanging(self):
        return len(self.unanswered)

    def remote_pond(self):
        return self.pond

    def remote_addDuck(self, duck):
        self.pond.addDuck(duck)


listening = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
    pb.PBServerFactory(TestRoot())
)
listening.addCallback(lambda port: print(f"PORT {port.getHost().port}", flush=True))
reactor.run()
"""


# ---------------------------------------------------------------------------------------------
# Helpers


def run_client(script: str, *args: str) -> list[str]:
    """Run a client script in a child process; the lines it printed. It must exit 0 and
    print nothing on stderr."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert (done.returncode, done.stderr) == (0, ""), (
        f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done.stdout.splitlines()


def pointed_at(sample: str, server: ServerProgram) -> str:
    """A docs sample with its example server's default port replaced by the one it has now."""
    default = next(port for port in ("8789", "8790", "8792", "8800") if port in sample)
    return sample.replace(f"tcp:localhost:{default}", f"tcp:localhost:{server.port()}")


Serve = Callable[[str], ServerProgram]


@pytest.fixture
def serve(programs: list[Program], tmp_path: Path) -> Serve:
    """Start a server in a child process: an example by file name, or "test" for TEST_SERVER.
    All are stopped when the test ends."""

    def start(name: str) -> ServerProgram:
        if name == "test":
            script = tmp_path / "test_server.py"
            script.write_text(TEST_SERVER)
            server = ServerProgram(script, str(EXAMPLES))
        else:
            server = ServerProgram(name, "tcp:0:interface=127.0.0.1")
        programs.append(server)
        return server

    return start


# ---------------------------------------------------------------------------------------------
# Calls and answers


def test_echo_round_trip(serve: Serve) -> None:
    lines = run_client(pointed_at(ECHO_CLIENT, serve("echo_server.py")))
    assert lines[0].startswith("<BlockingReference root at tcp:localhost:")
    assert lines[0].endswith("(timeout 30 s)>")
    assert lines[1] == "hello"


def test_leaving_the_with_block_closes_the_connection(serve: Serve) -> None:
    lines = run_client(pointed_at(ECHO_CLIENT, serve("echo_server.py")) + CLOSED_CHECKS)
    assert lines[2] == "True"
    assert lines[3] == lines[0].replace("(timeout 30 s)", "(disconnected)")
    assert lines[4] == "DeadReferenceError"


def test_remote_error_raises_remote_error_with_its_type_name(serve: Serve) -> None:
    lines = run_client(pointed_at(BANK_CLIENT, serve("bank_server.py")))
    assert lines[0] == "refused: bank.InsufficientFunds: balance is 100, asked for 500"


def test_a_call_that_never_answers_times_out_naming_method_and_time(serve: Serve) -> None:
    lines = run_client(pointed_at(BANK_CLIENT, serve("bank_server.py")))
    assert lines[1].startswith("callRemote('audit') on root at tcp:localhost:")
    assert "no answer within 1 s" in lines[1]
    assert lines[2] == "100"  # later calls still work


def test_a_returned_reference_is_callable(serve: Serve) -> None:
    lines = run_client(pointed_at(REFERENCES_CLIENT, serve("references_server.py")))
    assert lines[0].startswith("<BlockingReference #")
    assert lines[1:] == ["3", "7", "True"]


def test_calls_from_eight_threads_each_get_their_own_answers(serve: Serve) -> None:
    assert run_client(pointed_at(THREADS_CLIENT, serve("echo_server.py"))) == ["True"]


def test_login_with_username_and_password(serve: Serve) -> None:
    lines = run_client(pointed_at(LOGIN_CLIENT, serve("chat_server.py")))
    assert lines == ["['alice']", "refused: twisted.cred.error.UnauthorizedLogin"]


def test_a_returned_cache_replica_reads_through_the_reactor(serve: Serve) -> None:
    server = serve("test")
    lines = run_client(CACHE_CLIENT, server.endpoint, str(EXAMPLES))
    answers = [line for line in lines if not line.startswith(" cache - ")]  # the replica's own
    assert answers == [
        f"<BlockingCache of a SlaveDuckPond at {server.endpoint}>",
        "ducks: 2",
        "ducks: 3 ['one duck', 'two duck', 'ugly duckling']",
        "same: True",
    ]


@pytest.mark.interop
def test_against_a_twisted_spread_server(twisted_server: str) -> None:
    assert run_client(TWISTED_PEER_CLIENT, twisted_server) == [
        "echo: True",
        "error: twisted_types.PeerError: boom",
        "BlockingReference 5",
        "kept: True",
        "nested: True BlockingReference",
    ]


# ---------------------------------------------------------------------------------------------
# Threads, loops and reactors


def test_works_inside_a_running_asyncio_loop_directly_and_from_a_worker(serve: Serve) -> None:
    lines = run_client(pointed_at(NOTEBOOK_CELL, serve("echo_server.py")) + REACTOR_KIND)
    assert lines[:2] == ["straight from the cell", "from a worker thread"]
    assert "asyncio" not in lines[2], f"installed {lines[2]}"


def test_calling_from_the_reactor_thread_raises_instead_of_deadlocking(serve: Serve) -> None:
    [message] = run_client(IN_THE_REACTOR_CLIENT, serve("test").endpoint)
    assert "reactor thread" in message
    assert "Deferred API" in message


def test_uses_a_reactor_already_running_in_another_thread(serve: Serve) -> None:
    assert run_client(OWN_REACTOR_CLIENT, serve("test").endpoint) == [
        "on your reactor",
        "threads: []",  # no reactor thread of its own
        "still running: True",  # and the reactor is left to its owner
    ]


# ---------------------------------------------------------------------------------------------
# Failures of the connection


def test_after_the_server_died_calls_raise_connection_errors(serve: Serve) -> None:
    server = serve("test")
    script = pointed_at(DISCONNECT_CLIENT, server) + DISCONNECT_CHECKS
    lines = run_client(script, str(server.process.pid))
    assert lines[:2] == ["waiting call: ['PBConnectionLost']", "notified: True"]
    assert lines[2].endswith("(disconnected)>")
    assert lines[3] == "later call: DeadReferenceError"


def test_connection_refused_and_bad_endpoints_raise() -> None:
    with refusing_port() as port:
        lines = run_client(CONNECT_ERRORS_CLIENT, str(port))
    assert lines == [
        "twisted.internet.error ConnectionRefusedError",
        "builtins ValueError",
    ]


def test_exit_is_quiet_with_a_connection_open_and_a_call_waiting(serve: Serve) -> None:
    # run_client fails on anything printed to stderr: a traceback, "Unhandled error", ...
    assert run_client(LEFT_OPEN_CLIENT, serve("test").endpoint) == [
        "leaving, with a connection open and a call waiting"
    ]


# ---------------------------------------------------------------------------------------------
# Walking answers and arguments (a pure function, tried here: it needs no reactor)


def test_answers_without_references_come_back_as_they_are() -> None:
    from spread.blocking import _mapped

    answer = {"rows": [(1, "a"), (2, "b")], "tags": frozenset({"x"}), "empty": []}
    assert _mapped(answer, lambda leaf: leaf, {}) is answer


def test_wrapping_keeps_nesting_sharing_and_cycles() -> None:
    from spread.blocking import _mapped

    shared = ["ref"]
    cyclic: list[object] = ["ref"]
    cyclic.append(cyclic)
    answer = {"a": shared, "b": (shared, {"ref"}), "c": cyclic}
    wrapped = _mapped(answer, lambda leaf: "WRAPPED" if leaf == "ref" else leaf, {})
    assert wrapped["a"] == ["WRAPPED"]
    assert wrapped["b"][0] is wrapped["a"]
    assert wrapped["b"][1] == {"WRAPPED"}
    assert wrapped["c"][0] == "WRAPPED"
    assert wrapped["c"][1] is wrapped["c"]
    assert answer == {"a": ["ref"], "b": (["ref"], {"ref"}), "c": cyclic}  # untouched
