"""spread.aio, PB for plain asyncio programs, and the coroutine driver behind async remote methods.

This process already runs the default reactor (pytest-twisted), and a process has one reactor,
so every asyncio scenario is a program run in a child Python process: asyncio clients against a
spread server and a Twisted PB server in other processes, asyncio servers called by a spread
client (this process) and a Twisted one (another child), and asyncio programs that serve and
call themselves. A child must exit 0 with nothing on stderr, so noise at exit fails the test.
What this process can check itself is the driver under a reactor other than asyncio's.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from support import EXAMPLES, TIMEOUT, Program, ServerProgram, failure_of, mypy_strict
from test_pb import Loop
from twisted.internet import defer, endpoints, reactor, threads

from spread import pb
from spread._coroutines import runCoroutine

CHILD_TIMEOUT = 60.0  # a child program runs at most this long; its own waits are 30 s
LOCAL = "tcp:0:interface=127.0.0.1"


def run_clean(tmp_path: Path, program: str | Path, *args: str) -> list[str]:
    """Run a program (a file, or its text) in a child process to completion; the lines it
    printed. It must exit 0 with nothing on stderr."""
    if isinstance(program, str):
        (tmp_path / "program.py").write_text(program)
        program = tmp_path / "program.py"
    done = subprocess.run(
        [sys.executable, str(program), *args], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=CHILD_TIMEOUT, cwd=tmp_path,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout.splitlines()


Serve = Callable[..., ServerProgram]


@pytest.fixture
def serve(programs: list[Program], tmp_path: Path) -> Serve:
    """Start a server program (an example's file name, or a script's text) on an ephemeral
    port; it is stopped when the test ends."""

    def start(script: str, *args: str) -> ServerProgram:
        if "\n" in script:
            path = tmp_path / "server.py"
            path.write_text(script)
            server = ServerProgram(path, *args)
        else:
            server = ServerProgram(script, LOCAL)
        programs.append(server)
        return server

    return start


# ---------------------------------------------------------------------------------------------
# The examples


def test_asyncio_client_example_against_asyncio_server_example(
    serve: Serve, tmp_path: Path
) -> None:
    kitchen = serve("asyncio_server.py")
    assert run_clean(tmp_path, EXAMPLES / "asyncio_client.py", kitchen.endpoint) == [
        "salad is ready",
        "served: soup is ready",
        "served: salad is ready",
        "served: bread is ready",
        "the bill: 8",
        "no time for stew",
        "kitchen says: no stone soup today; try one of ['bread', 'salad', 'soup', 'stew']",
    ]


def test_asyncio_server_example_stops_cooking_when_the_caller_gives_up(
    serve: Serve, tmp_path: Path
) -> None:
    kitchen = serve("asyncio_server.py")
    run_clean(tmp_path, EXAMPLES / "asyncio_client.py", kitchen.endpoint)
    kitchen.expect(r"^stopped cooking stew: the caller gave up$")


# ---------------------------------------------------------------------------------------------
# An asyncio client against servers on other reactors

KITCHEN_CLIENT = """\
import asyncio, sys
from spread import aio, pb

async def main():
    kitchen = await aio.connect(sys.argv[1])
    print(await kitchen.callRemote("cook", "salad"))
    print(await asyncio.gather(*(kitchen.callRemote("cook", d) for d in ["soup", "bread"])))
    try:
        await kitchen.callRemote("cook", "stone soup")
    except pb.RemoteError as error:
        print(error.typeName)
    await kitchen.close()
    print(kitchen.disconnected)

asyncio.run(main())
"""


def test_asyncio_client_calls_a_spread_server_on_the_default_reactor(
    serve: Serve, tmp_path: Path
) -> None:
    kitchen = serve("async_server.py")
    assert run_clean(tmp_path, KITCHEN_CLIENT, kitchen.endpoint) == [
        "salad is ready",
        "['soup is ready', 'bread is ready']",
        "__main__.NotOnTheMenu",
        "True",
    ]


TWISTED_PEER_CLIENT = """\
import asyncio, sys
from spread import aio, pb

class Listener(pb.Referenceable):
    async def remote_hear(self, text):
        await asyncio.sleep(0)
        return f"heard {text}"

async def main():
    async with await aio.connect(sys.argv[1]) as root:
        print(await root.callRemote("echo", {"a": [1, 2.5, "three", None]}))
        counter = await root.callRemote("counter")
        print(type(counter).__name__, await counter.callRemote("increment", 5))
        await root.callRemote("keep", counter)
        print(await root.callRemote("kept") == counter)
        print(await root.callRemote("callBack", Listener(), "hear", "a call back"))
        try:
            await root.callRemote("fail", "pb", "refused")
        except pb.RemoteError as error:
            print(error.typeName, error)
        print(await asyncio.gather(*(root.callRemote("echo", n) for n in range(100)))
              == list(range(100)))

        async def hang():
            return await root.callRemote("hang")  # the server never answers

        hanging = asyncio.create_task(hang())
        await asyncio.sleep(0)  # the task starts, and sends its call
        hanging.cancel()
        try:
            await hanging
        except asyncio.CancelledError:
            print("stopped waiting")
        print(await root.callRemote("echo", "still connected"))

asyncio.run(main())
"""


@pytest.mark.interop
def test_asyncio_client_calls_a_twisted_pb_server(twisted_server: str, tmp_path: Path) -> None:
    assert run_clean(tmp_path, TWISTED_PEER_CLIENT, twisted_server) == [
        "{'a': [1, 2.5, 'three', None]}",
        "AioReference 5",
        "True",
        "heard a call back",
        "twisted_types.PeerError refused",
        "True",
        "stopped waiting",
        "still connected",
    ]


# ---------------------------------------------------------------------------------------------
# An asyncio server, called by clients on other reactors

ASYNCIO_SERVER = """\
import asyncio, sys
from twisted.internet import task
from spread import aio, pb

class Root(pb.Root):
    async def remote_nap(self, value):
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return value

    async def remote_future(self, value):
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        loop.call_soon(answer.set_result, value)
        return await answer

    async def remote_both(self, value):
        from twisted.internet import reactor
        await asyncio.sleep(0)
        doubled = await task.deferLater(reactor, 0, lambda: value * 2)
        return await asyncio.wait_for(asyncio.sleep(0, doubled), 30)

    async def remote_inTask(self):
        return asyncio.current_task() is not None

    async def remote_fail(self):
        await asyncio.sleep(0)
        raise ValueError("no good")

    async def remote_never(self):
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            print("never: cancelled", flush=True)
            raise

async def main():
    server = await aio.serve(Root(), sys.argv[1])
    print(f"PORT {server.port}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def asyncio_server(serve: Serve) -> ServerProgram:
    return serve(ASYNCIO_SERVER, LOCAL)


async def connect(endpoint: str) -> tuple[pb.PBClientFactory, Any]:
    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, endpoint).connect(factory)
    return factory, await factory.getRootObject()


async def call(root: Any, name: str, *args: Any) -> Any:
    return await root.callRemote(name, *args).addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_asyncio_server_method_awaits_asyncio(asyncio_server: ServerProgram) -> None:
    factory, root = await connect(asyncio_server.endpoint)
    assert await call(root, "nap", "rested") == "rested"
    assert await call(root, "future", [1, 2]) == [1, 2]
    factory.disconnect()


@pytest_twisted.ensureDeferred
async def test_asyncio_server_method_awaits_deferreds_and_asyncio_together(
    asyncio_server: ServerProgram,
) -> None:
    factory, root = await connect(asyncio_server.endpoint)
    assert await call(root, "both", 21) == 42
    factory.disconnect()


@pytest_twisted.ensureDeferred
async def test_asyncio_server_method_runs_as_an_asyncio_task(
    asyncio_server: ServerProgram,
) -> None:
    factory, root = await connect(asyncio_server.endpoint)
    assert await call(root, "inTask") is True
    factory.disconnect()


@pytest_twisted.ensureDeferred
async def test_asyncio_server_method_exception_reaches_the_caller(
    asyncio_server: ServerProgram,
) -> None:
    factory, root = await connect(asyncio_server.endpoint)
    failure = await failure_of(root.callRemote("fail"))
    assert failure.check("builtins.ValueError")
    assert failure.getErrorMessage() == "no good"
    factory.disconnect()


@pytest_twisted.ensureDeferred
async def test_cancelling_a_call_cancels_the_asyncio_task(asyncio_server: ServerProgram) -> None:
    factory, root = await connect(asyncio_server.endpoint)
    pending = root.callRemote("never")
    assert await call(root, "nap", "the call arrived") == "the call arrived"
    pending.cancel()
    await failure_of(pending)
    await threads.deferToThread(asyncio_server.expect, r"^never: cancelled$")
    factory.disconnect()


TWISTED_CLIENT = """\
import sys
from twisted.internet import defer, endpoints, task
from twisted.spread import pb

async def main(reactor):
    factory = pb.PBClientFactory()
    await endpoints.clientFromString(reactor, sys.argv[1]).connect(factory)
    root = await factory.getRootObject()
    print(await root.callRemote("nap", "from twisted"))
    print(await root.callRemote("both", 4))
    factory.disconnect()

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


@pytest.mark.interop
def test_twisted_pb_client_calls_an_asyncio_server(
    asyncio_server: ServerProgram, tmp_path: Path
) -> None:
    assert run_clean(tmp_path, TWISTED_CLIENT, asyncio_server.endpoint) == ["from twisted", "8"]


# ---------------------------------------------------------------------------------------------
# Programs that serve and call themselves

SELF_SERVING = """\
import asyncio
from spread import aio, pb

class Root(pb.Root):
    def __init__(self):
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def remote_never(self):
        self.started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    def remote_echo(self, value):
        return value

    def remote_child(self):
        return Root()

async def main(served, root):
{body}

async def serving():
    served = Root()
    async with await aio.serve(served, "tcp:0:interface=127.0.0.1") as server:
        async with await aio.connect(f"tcp:127.0.0.1:{{server.port}}") as root:
            await main(served, root)

asyncio.run(serving())
print("exited")
"""


def self_serving(body: str) -> str:
    """A program that serves a Root and calls it: ``body`` is its main(served, root)."""
    return SELF_SERVING.format(body=body)


def test_cancelling_the_task_awaiting_a_call_leaves_the_program_running(tmp_path: Path) -> None:
    program = self_serving("""\
    async def never():
        return await root.callRemote("never")

    waiting = asyncio.create_task(never())
    await served.started.wait()
    waiting.cancel()
    try:
        await waiting
    except asyncio.CancelledError:
        print("the task stopped waiting")
    await served.cancelled.wait()
    print("the server stopped the method")
    print(await root.callRemote("echo", "and the connection still works"))
""")
    assert run_clean(tmp_path, program) == [
        "the task stopped waiting",
        "the server stopped the method",
        "and the connection still works",
        "exited",
    ]


def test_gather_of_many_calls_answers_each_in_order(tmp_path: Path) -> None:
    program = self_serving("""\
    answers = await asyncio.gather(*(root.callRemote("echo", n) for n in range(500)))
    print(answers == list(range(500)))
""")
    assert run_clean(tmp_path, program) == ["True", "exited"]


def test_references_in_answers_and_arguments_are_wrapped_and_unwrapped(tmp_path: Path) -> None:
    program = self_serving("""\
    child = await root.callRemote("child")
    print(type(child).__name__, await child.callRemote("echo", "child"))
    [again] = await root.callRemote("echo", [child])
    print(type(again).__name__, again == child)
""")
    assert run_clean(tmp_path, program) == ["AioReference child", "AioReference True", "exited"]


def test_wait_for_bounds_a_call(tmp_path: Path) -> None:
    program = self_serving("""\
    try:
        await asyncio.wait_for(root.callRemote("never"), timeout=0.1)
    except asyncio.TimeoutError:
        print("timed out")
    await served.cancelled.wait()
    print("the server stopped the method")
""")
    assert run_clean(tmp_path, program) == ["timed out", "the server stopped the method", "exited"]


def test_closing_the_server_ends_pending_calls(tmp_path: Path) -> None:
    program = """\
import asyncio
from spread import aio, pb

class Root(pb.Root):
    def __init__(self):
        self.started, self.release, self.ended = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def remote_wait(self):
        self.started.set()
        await self.release.wait()
        self.ended.set()

async def main():
    served = Root()
    server = await aio.serve(served, "tcp:0:interface=127.0.0.1")
    root = await aio.connect(f"tcp:127.0.0.1:{server.port}")
    waiting = root.callRemote("wait")
    await served.started.wait()
    await server.close()
    try:
        await waiting
    except pb.PBConnectionLost:
        print("connection lost")
    print(server.connections, root.disconnected)
    served.release.set()  # the method ends; its answer has nowhere to go
    await served.ended.wait()

asyncio.run(main())
"""
    assert run_clean(tmp_path, program) == ["connection lost", "0 True"]


def test_login_with_a_mind_that_awaits_asyncio(tmp_path: Path) -> None:
    program = """\
import asyncio
from twisted.cred import checkers, portal
from twisted.cred.credentials import UsernamePassword
from zope.interface import implementer
from spread import aio, pb

class Member(pb.Avatar):
    def __init__(self, name, mind):
        self.name, self.mind = name, mind

    async def perspective_greet(self):
        heard = await aio.AioReference(self.mind).callRemote("hear", "welcome")
        return f"{self.name.decode()} {heard}"

@implementer(portal.IRealm)
class Realm:
    def requestAvatar(self, name, mind, *interfaces):
        return pb.IPerspective, Member(name, mind), lambda: None

class Mind(pb.Referenceable):
    async def remote_hear(self, text):
        await asyncio.sleep(0)
        return f"heard {text}"

async def main():
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    door = portal.Portal(Realm(), [checker])
    async with await aio.serve(door, "tcp:0:interface=127.0.0.1") as server:
        where = f"tcp:127.0.0.1:{server.port}"
        async with await aio.login(where, UsernamePassword(b"alice", b"secret"), Mind()) as me:
            print(await me.callRemote("greet"))

asyncio.run(main())
"""
    assert run_clean(tmp_path, program) == ["alice heard welcome"]


def test_program_exits_after_a_hostname_lookup(tmp_path: Path) -> None:
    # Twisted looks hostnames up in its thread pool; the reactor's shutdown at the end of
    # asyncio.run stops those threads, or the process could not exit.
    program = """\
import asyncio
from spread import aio, pb

async def main():
    async with await aio.serve(pb.Root(), "tcp:0:interface=127.0.0.1") as server:
        root = await aio.connect(f"tcp:localhost:{server.port}")
        print(root.disconnected)

asyncio.run(main())
"""
    assert run_clean(tmp_path, program) == ["False"]


def test_connect_refused_raises_connection_refused(tmp_path: Path) -> None:
    program = """\
import asyncio, socket
from twisted.internet.error import ConnectionRefusedError
from spread import aio

async def main():
    with socket.socket() as holder:  # bound, never listening: connections are refused
        holder.bind(("127.0.0.1", 0))
        try:
            await aio.connect(f"tcp:127.0.0.1:{holder.getsockname()[1]}")
        except ConnectionRefusedError:
            print("refused")

asyncio.run(main())
"""
    assert run_clean(tmp_path, program) == ["refused"]


# ---------------------------------------------------------------------------------------------
# Reactors: installed on the running loop, or refused with advice


def test_asyncio_reactor_installed_by_hand_runs_async_remote_methods(tmp_path: Path) -> None:
    # The program: a Twisted program on the asyncio reactor, no spread.aio.
    program = """\
import asyncio
from twisted.internet import asyncioreactor
asyncioreactor.install()
from twisted.internet import defer, endpoints, task
from spread import pb

class Root(pb.Root):
    async def remote_echo(self, value):
        await asyncio.sleep(0.01)
        return value

async def main(reactor):
    listening = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        pb.PBServerFactory(Root()))
    factory = pb.PBClientFactory()
    reactor.connectTCP("127.0.0.1", listening.getHost().port, factory)
    root = await factory.getRootObject()
    print(await root.callRemote("echo", "hello"))
    factory.disconnect()

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""
    assert run_clean(tmp_path, program) == ["hello"]


def test_asyncio_reactor_installed_on_the_running_loop_is_used(tmp_path: Path) -> None:
    program = """\
import asyncio
from twisted.internet import asyncioreactor
from spread import aio, pb

class Root(pb.Root):
    async def remote_echo(self, value):
        await asyncio.sleep(0)
        return value

async def main():
    asyncioreactor.install(asyncio.get_running_loop())
    async with await aio.serve(Root(), "tcp:0:interface=127.0.0.1") as server:
        async with await aio.connect(f"tcp:127.0.0.1:{server.port}") as root:
            print(await root.callRemote("echo", "mine"))

asyncio.run(main())
"""
    assert run_clean(tmp_path, program) == ["mine"]


def test_another_reactor_installed_first_is_refused_with_advice(tmp_path: Path) -> None:
    program = """\
import asyncio
from twisted.internet import reactor
from spread import aio

async def main():
    try:
        await aio.connect("tcp:127.0.0.1:1")
    except aio.ReactorMismatch as error:
        print(error)

asyncio.run(main())
"""
    [message] = run_clean(tmp_path, program)
    assert "another Twisted reactor (twisted.internet." in message
    assert "is already installed" in message
    assert "asyncioreactor.install(asyncio.get_running_loop())" in message


def test_asyncio_reactor_on_another_loop_is_refused_with_advice(tmp_path: Path) -> None:
    program = """\
import asyncio
from twisted.internet import asyncioreactor
asyncioreactor.install()  # before asyncio.run made its loop: the reactor wraps another
from spread import aio

aio._PROBE_TIMEOUT = 0.5  # that reactor never answers; do not wait long to find out

async def main():
    try:
        await aio.connect("tcp:127.0.0.1:1")
    except aio.ReactorMismatch as error:
        print(error)

asyncio.run(main())
"""
    [message] = run_clean(tmp_path, program)
    assert "on another event loop" in message
    assert "asyncioreactor.install(asyncio.get_running_loop())" in message


def test_a_second_asyncio_run_is_refused_with_advice(tmp_path: Path) -> None:
    program = """\
import asyncio
from spread import aio, pb

async def first():
    async with await aio.serve(pb.Root(), "tcp:0:interface=127.0.0.1"):
        print("first loop served")

async def second():
    try:
        await aio.serve(pb.Root(), "tcp:0:interface=127.0.0.1")
    except aio.ReactorMismatch as error:
        print(error)

asyncio.run(first())
asyncio.run(second())
"""
    first, message = run_clean(tmp_path, program)
    assert first == "first loop served"
    assert "earlier event loop" in message
    assert "one asyncio.run()" in message


# ---------------------------------------------------------------------------------------------
# The driver under another reactor (this process's): Deferreds only, asyncio refused clearly


class Napper(pb.Root):
    async def remote_nap(self) -> str:
        await asyncio.sleep(0.01)
        return "rested"

    async def remote_deferred(self) -> int:
        return await defer.succeed(7)


def test_asyncio_awaitable_under_another_reactor_fails_the_call_with_advice() -> None:
    failure = Loop(Napper()).call("nap")
    assert failure.check("spread.aio.AsyncioReactorRequired")
    assert "Napper.remote_nap called asyncio" in failure.value
    assert "twisted.internet.asyncioreactor.install()" in failure.value
    assert "spread.aio" in failure.value


def test_deferreds_still_work_under_another_reactor() -> None:
    assert Loop(Napper()).call("deferred") == 7


def test_asyncio_future_under_another_reactor_is_refused_with_advice() -> None:
    elsewhere = asyncio.new_event_loop()  # a loop that does not run: its future never wakes

    async def waitForever() -> None:
        await elsewhere.create_future()

    try:
        outcome: list[Any] = []
        runCoroutine(waitForever()).addBoth(outcome.append)
        [failure] = outcome
        assert failure.check("spread.aio.AsyncioReactorRequired")
        assert "waitForever" in str(failure.value)
        assert "awaited <Future pending" in str(failure.value)
    finally:
        elsewhere.close()


# ---------------------------------------------------------------------------------------------
# Types

USER_PROGRAM = """\
from __future__ import annotations

import asyncio

from spread import aio, pb


class Echo(pb.Root):
    async def remote_echo(self, value: str) -> str:
        await asyncio.sleep(0)
        return value


async def main() -> None:
    server: aio.Server = await aio.serve(Echo(), "tcp:0:interface=127.0.0.1")
    root: aio.AioReference = await aio.connect(f"tcp:127.0.0.1:{server.port}", timeout=10)
    answer: str = await root.callRemote("echo", "typed")
    both = await asyncio.gather(root.callRemote("echo", "a"), root.callRemote("echo", "b"))
    bounded = await asyncio.wait_for(root.callRemote("echo", "c"), timeout=5)
    pending: asyncio.Future[object] = root.callRemote("echo", "d")
    print(answer, both, bounded, await pending, root.reference, root.disconnected)
    await root.close()
    await server.close()


asyncio.run(main())
"""


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="needs mypy (the lint extra)")
def test_mypy_strict_accepts_a_users_asyncio_program(tmp_path: Path) -> None:
    checked = mypy_strict(USER_PROGRAM, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_users_asyncio_program_runs(tmp_path: Path) -> None:
    assert run_clean(tmp_path, USER_PROGRAM) == [
        "typed ['a', 'b'] c d <RemoteReference b'root'> False"
    ]
