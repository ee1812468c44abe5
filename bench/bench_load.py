"""Many clients at once, spread.pb against twisted.spread.pb and a raw echo (issue 7).

    .venv/bin/python bench/bench_load.py [--connections 1000] [--calls 10] [--rounds 2]
    .venv/bin/python bench/bench_load.py --connections 10000 --callers 1000 --rounds 1
    .venv/bin/python bench/bench_load.py --connections 3000 --wave 20 --client-with spread
    .venv/bin/python bench/bench_load.py --only spread,raw [--json]

For each implementation and each mode (``root``: getRootObject then calls; ``login``: a
username/password login through twisted.cred, then calls on the avatar), a server process
listens on 127.0.0.1 and a client process opens N connections at once, each making C calls.
It reports:

- connections/s: N divided by the time until every connection has its root (or avatar);
- calls/s: callers*C divided by the time the calls took, the callers (all N unless
  ``--callers`` says fewer) calling concurrently while the other connections stay idle;
- server KiB per connection: the growth of the server's resident memory with all N connected
  (and their handshakes sent, which a client may still hold in its write queues when it has
  every root), divided by N (read from /proc, so Linux only);
- server connections per CPU-second: N divided by the CPU time the server process spent on
  them, from a collected heap until it is idle again. On one machine the client, which opens
  every connection with Twisted's own TCP code, is the slower process and sets connections/s
  for every implementation alike; this figure is the server's own cost of accepting, whatever
  the client's speed (``bench_accept.py`` measures the accept rate with a lighter client).

How the server is paced changes what it costs: connections arriving a thousand at a time are
accepted in bigger batches than twenty at a time. ``--wave N`` opens them N at a time, each
wave awaited, and ``--client-with spread`` (or ``twisted``) uses one PB client against every
server, so that two servers are compared under the same client and the same pacing.

The third implementation, ``raw``, is no PB at all: Twisted ``Int32StringReceiver`` protocols
that echo each string back, on the same reactor (the ceiling of this reactor and machine). A
connection is ready when it is connected and one small round trip is done (the analogue of
getRootObject); each call is one small string sent and its echo awaited. A raw echo has no
login, so it is measured in ``root`` mode only.

The implementations take turns for several rounds in fresh processes; each reports the median
of its rounds, figure by figure. Needs N+100 file descriptors: each process raises its soft
limit to the hard one (``ulimit -Hn``). Run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import IO, Any

from _common import RawOpening, stop

IMPLEMENTATIONS = ("spread", "twisted", "raw")
PB_MODULES = {"spread": "spread.pb", "twisted": "twisted.spread.pb"}
MODES = ("root", "login")
RAW_MODES = ("root",)  # a raw echo has no login
SMALL_RAW_MESSAGE = b"\x00" * 40  # about the size of a PB add(n, 1) call on the wire
PROCESS_TIMEOUT = 600.0
# The JSON's names:
FIGURES = ("connections_per_s", "calls_per_s", "kib_per_connection", "server_connections_per_cpu_s")

# One open connection in the client: (close it, start call number n and return its Deferred)
Connection = tuple[Callable[[], object], Callable[[int], Any]]
Opener = Callable[[Any], Awaitable[Connection]]  # given the reactor, opens one Connection


def raise_fd_limit() -> None:
    """Allow as many open files as the hard limit does (10,000 connections need as many)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def modes_of(implementation: str) -> tuple[str, ...]:
    return RAW_MODES if implementation == "raw" else MODES


# ---------------------------------------------------------------------------------------------
# Server process:  bench_load.py --serve IMPL


def pb_factories(implementation: str) -> tuple[Any, Any]:
    """(root factory, login factory): an adding Root, and a portal whose avatars add."""
    from twisted.cred import checkers, portal
    from zope.interface import implementer

    pb: Any = importlib.import_module(PB_MODULES[implementation])

    class Service(pb.Root):  # type: ignore[misc, name-defined]
        def remote_add(self, a: int, b: int) -> int:
            return a + b

    class User(pb.Avatar):  # type: ignore[misc, name-defined]
        def perspective_add(self, a: int, b: int) -> int:
            return a + b

    @implementer(portal.IRealm)
    class Realm:
        def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
            return pb.IPerspective, User(), lambda: None

    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(user=b"secret")
    return pb.PBServerFactory(Service()), pb.PBServerFactory(portal.Portal(Realm(), [checker]))


def raw_factory() -> Any:
    """Int32StringReceiver protocols echoing every string."""
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import Int32StringReceiver

    class Echo(Int32StringReceiver):
        def stringReceived(self, string: bytes) -> None:
            self.sendString(string)

    return Factory.forProtocol(Echo)


def serve(implementation: str) -> None:
    """Print ``PORT root login``; answer ``MEM`` on stdin with the resident memory; stop at EOF.

    The raw echo has no login: both ports are the echo's."""
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    def listen(factory: Any) -> int:
        port = reactor.listenTCP(0, factory, backlog=2048, interface="127.0.0.1")  # type: ignore[attr-defined]
        return int(port.getHost().port)

    if implementation == "raw":
        root_port = login_port = listen(raw_factory())
    else:
        root_factory, login_factory = pb_factories(implementation)
        root_port, login_port = listen(root_factory), listen(login_factory)

    class Control(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.sendLine(f"PORT {root_port} {login_port}".encode())

        def lineReceived(self, line: bytes) -> None:
            if line == b"GC":  # start from a collected heap (see measure)
                gc.collect()
            self.sendLine(f"MEM {rss_kib()} {time.process_time()}".encode())

        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()  # type: ignore[attr-defined]

    stdio.StandardIO(Control())
    reactor.run()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Client process:  bench_load.py --client IMPL PORT MODE CONNECTIONS CALLS CALLERS


def pb_opener(implementation: str, port: int, mode: str) -> Opener:
    """Opens a PB connection and gets its root (or logs in); calls are ``add(n, 1)``."""
    from twisted.cred.credentials import UsernamePassword

    pb: Any = importlib.import_module(PB_MODULES[implementation])

    async def one(reactor: Any) -> Connection:
        factory = pb.PBClientFactory()
        reactor.connectTCP("127.0.0.1", port, factory, timeout=120)
        if mode == "login":
            target = await factory.login(UsernamePassword(b"user", b"secret"))
        else:
            target = await factory.getRootObject()
        return factory.disconnect, lambda n: target.callRemote("add", n, 1)

    return one


def raw_opener(port: int) -> Opener:
    """Opens an Int32StringReceiver connection, ready after one round trip; a call is one small
    string echoed."""


    async def one(reactor: Any) -> Connection:
        opening = RawOpening()
        reactor.connectTCP("127.0.0.1", port, opening, timeout=120)
        client = await opening.ready
        await client.request(SMALL_RAW_MESSAGE)  # one round trip, as getRootObject makes
        assert client.transport is not None
        return client.transport.loseConnection, lambda n: client.request(SMALL_RAW_MESSAGE)

    return one


def client(
    implementation: str, port: int, mode: str, connections: int, calls: int, callers: int,
    wave: int, client_with: str,
) -> None:
    """Connect ``connections`` clients (all at once, or ``wave`` at a time); time connecting,
    then ``callers`` of them calling; print RESULT. ``client_with`` names the PB client to
    use against this server (``-``: the server's own)."""
    from twisted.internet import defer, task

    if implementation == "raw":
        one = raw_opener(port)
    else:
        one = pb_opener(implementation if client_with == "-" else client_with, port, mode)

    async def calling(call: Callable[[int], Any]) -> None:
        for n in range(calls):
            await call(n)

    async def run(reactor: Any) -> None:
        started = time.perf_counter()
        opened: list[Connection] = []
        size = wave or connections
        for first in range(0, connections, size):
            opened += await defer.gatherResults(
                [defer.ensureDeferred(one(reactor)) for _ in range(min(size, connections - first))]
            )
        connected = time.perf_counter()
        # A client's last handshake messages may still wait in its transports' queues (PB
        # clients queue them for the end of the reactor turn, Twisted's and spread's alike):
        # let the reactor send them before it blocks on stdin below, or the server would
        # read them only once the calls start, and count their cost as the calls'.
        await task.deferLater(reactor, 0.1, lambda: None)
        print("CONNECTED", flush=True)
        sys.stdin.readline()  # the parent reads the server's memory now
        calls_started = time.perf_counter()
        await defer.gatherResults(
            [defer.ensureDeferred(calling(call)) for _, call in opened[:callers]]
        )
        done = time.perf_counter()
        print(
            f"RESULT {connections / (connected - started):.1f} "
            f"{callers * calls / (done - calls_started):.1f}",
            flush=True,
        )
        for close, _ in opened:
            close()

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


# ---------------------------------------------------------------------------------------------
# The run: one server process and one client process per implementation and mode


class Lines:
    """A child's stdout, line by line, each awaited for at most ``timeout`` seconds."""

    def __init__(self, stream: IO[str], timeout: float = PROCESS_TIMEOUT) -> None:
        self.timeout = timeout
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self.pump, args=(stream,), daemon=True).start()

    def pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put("")  # end of file

    def next(self, expected: str) -> list[str]:
        """The next line's words, which must start with ``expected``."""
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            raise RuntimeError(f"no {expected} within {self.timeout:.0f} s") from None
        words = line.split()
        if not words or words[0] != expected:
            raise RuntimeError(f"expected {expected}, got {line.strip() or 'end of output'!r}")
        return words


def parse_mem(words: list[str]) -> tuple[int, float]:
    """``MEM rss cpu``: the server's resident KiB and the CPU seconds it has used."""
    return int(words[1]), float(words[2])


def settled_mem(server: subprocess.Popen[str], from_server: Lines) -> tuple[int, float]:
    """The server's memory and CPU once it has stopped working: a client that has its root
    may be done before the server has read the last handshakes, whose cost counts too."""
    assert server.stdin is not None
    last = -1.0
    for _ in range(40):
        server.stdin.write("MEM\n")
        rss, cpu = parse_mem(from_server.next("MEM"))
        if cpu - last < 0.005:  # (answering MEM costs far less)
            break
        last = cpu
        time.sleep(0.25)
    return rss, cpu


def measure(
    implementation: str, mode: str, connections: int, calls: int, callers: int,
    wave: int = 0, client_with: str = "-",
) -> tuple[float, float, float, float]:
    """One fresh server and client: (connections/s, calls/s, server KiB per connection,
    connections per second of the server's CPU time)."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", implementation],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    load: subprocess.Popen[str] | None = None
    assert server.stdin is not None and server.stdout is not None
    try:
        from_server = Lines(server.stdout)
        root_port, login_port = from_server.next("PORT")[1:3]
        # Every server starts from a collected heap: when the collector's full passes fall
        # (each walks every object in the process) then depends on what the connections
        # add, not on what the server did before they came.
        server.stdin.write("GC\n")
        idle, idle_cpu = parse_mem(from_server.next("MEM"))
        port = root_port if mode == "root" else login_port
        load = subprocess.Popen(
            [sys.executable, __file__, "--client", implementation, port, mode,
             str(connections), str(calls), str(callers), str(wave), client_with],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        assert load.stdin is not None and load.stdout is not None
        from_client = Lines(load.stdout)
        from_client.next("CONNECTED")
        loaded, loaded_cpu = settled_mem(server, from_server)
        load.stdin.write("go\n")
        load.stdin.flush()
        result = from_client.next("RESULT")
        load.wait(PROCESS_TIMEOUT)
        accepting = connections / max(loaded_cpu - idle_cpu, 1e-6)
        return float(result[1]), float(result[2]), (loaded - idle) / connections, accepting
    finally:
        if load is not None:
            stop(load)
        stop(server)


def ratio_line(mode: str, best: dict[tuple[str, str], list[float]], other: str) -> str | None:
    """``mode: spread/other ...``, the ratios of spread's figures to ``other``'s."""
    if (mode, "spread") not in best or (mode, other) not in best:
        return None
    spread, theirs = best[(mode, "spread")], best[(mode, other)]
    line = (
        f"{mode}: spread/{other} connections {spread[0] / theirs[0]:.2f}x, "
        f"calls {spread[1] / theirs[1]:.2f}x, server CPU per connection "
        f"{spread[3] / theirs[3]:.2f}x"
    )
    if other != "raw":
        line += f", memory {spread[2] / theirs[2]:.2f}x" if theirs[2] else ", memory n/a"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--callers", type=int, default=None, help="connections that call")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=",".join(IMPLEMENTATIONS), help="comma-separated")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--serve", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--wave", type=int, default=0,
        help="open the connections this many at a time, each wave awaited (default: all at once)",
    )
    parser.add_argument(
        "--client-with", choices=tuple(PB_MODULES), default="-",
        help="use this PB client against every PB server (default: each server's own)",
    )
    parser.add_argument("--client", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.serve:
        serve(args.serve)
        return
    if args.client:
        implementation, port, mode, connections, calls, callers, wave, client_with = args.client
        client(
            implementation, int(port), mode, int(connections), int(calls), int(callers),
            int(wave), client_with,
        )
        return
    only = args.only.split(",")
    unknown = set(only) - set(IMPLEMENTATIONS)
    if unknown:
        parser.error(f"--only takes some of {','.join(IMPLEMENTATIONS)}, not {unknown}")
    callers = args.connections if args.callers is None else min(args.callers, args.connections)
    samples: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    errors: dict[tuple[str, str], str] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            for name in only:
                if mode not in modes_of(name) or (mode, name) in errors:
                    continue
                try:
                    figures = measure(
                        name, mode, args.connections, args.calls, callers, args.wave,
                        args.client_with,
                    )
                except Exception as problem:
                    errors[(mode, name)] = str(problem) or type(problem).__name__
                    continue
                samples.setdefault((mode, name), []).append(figures)
    best = {
        key: [statistics.median(column) for column in zip(*rounds, strict=True)]
        for key, rounds in samples.items()
    }
    pattern = f"in waves of {args.wave}" if args.wave else "at once"
    clients = "each server's own client" if args.client_with == "-" else (
        f"the {args.client_with} client against every server"
    )
    print(
        f"{args.connections} connections ({pattern}; {clients}), {callers} of them making "
        f"{args.calls} calls each, median of {args.rounds} rounds"
    )
    print(
        f"{'':16} {'connections/s':>14} {'calls/s':>10} {'server KiB/conn':>16} "
        f"{'server conns/CPU-s':>19}"
    )
    for mode in MODES:
        for name in only:
            label = f"{mode} {name}"
            if (mode, name) in best:
                conns, calls, kib, accepting = best[(mode, name)]
                print(
                    f"{label:16} {conns:14,.0f} {calls:10,.0f} {kib:16.1f} {accepting:19,.0f}"
                )
            else:
                why = "no login" if mode not in modes_of(name) else "failed"
                print(f"{label:16} {'n/a':>14} {'n/a':>10} {'n/a':>16} {'n/a':>19}  ({why})")
    for mode in MODES:
        for other in ("twisted", "raw"):
            line = ratio_line(mode, best, other)
            if line is not None:
                print(line)
    for (mode, name), message in errors.items():
        print(f"{mode} {name} could not be measured: {message}")
    if args.json:
        figures = {
            mode: {
                name: dict(zip(FIGURES, best[(mode, name)], strict=True))
                for name in only if (mode, name) in best
            }
            for mode in MODES
        }
        settings = {"connections": args.connections, "calls": args.calls, "callers": callers,
                    "rounds": args.rounds}  # fmt: skip
        failed = {f"{mode} {name}": message for (mode, name), message in errors.items()}
        print(json.dumps({"settings": settings, "results": figures, "errors": failed}, indent=2))


if __name__ == "__main__":
    main()
