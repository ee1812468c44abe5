"""Many clients at once, spread.pb against twisted.spread.pb (issue 7).

    .venv/bin/python bench/bench_load.py [--connections 1000] [--calls 10] [--rounds 2]
    .venv/bin/python bench/bench_load.py --connections 10000 --callers 1000 --rounds 1

For each implementation and each mode (``root``: getRootObject then calls; ``login``: a
username/password login through twisted.cred, then calls on the avatar), a server process
listens on 127.0.0.1 and a client process opens N connections at once, each making C calls.
It reports:

- connections/s: N divided by the time until every connection has its root (or avatar);
- calls/s: callers*C divided by the time the calls took, the callers (all N unless
  ``--callers`` says fewer) calling concurrently while the other connections stay idle;
- server KiB per connection: the growth of the server's resident memory with all N connected,
  divided by N (read from /proc, so Linux only).

The implementations take turns for several rounds in fresh processes; each keeps its best
figures. Needs N+100 file descriptors: each process raises its soft limit to the hard one
(``ulimit -Hn``). Run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from typing import Any

PB_MODULES = {"spread": "spread.pb", "twisted": "twisted.spread.pb"}
MODES = ("root", "login")
PROCESS_TIMEOUT = 600.0


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


def serve(implementation: str) -> None:
    """Print ``PORT n``; answer ``MEM`` on stdin with the resident memory; stop at EOF."""
    from twisted.cred import checkers, portal
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver
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
    root_port = reactor.listenTCP(  # type: ignore[attr-defined]
        0, pb.PBServerFactory(Service()), backlog=2048, interface="127.0.0.1"
    )
    login_port = reactor.listenTCP(  # type: ignore[attr-defined]
        0, pb.PBServerFactory(portal.Portal(Realm(), [checker])), backlog=2048,
        interface="127.0.0.1",
    )

    class Control(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            ports = (root_port.getHost().port, login_port.getHost().port)
            self.sendLine(f"PORT {ports[0]} {ports[1]}".encode())

        def lineReceived(self, line: bytes) -> None:
            self.sendLine(f"MEM {rss_kib()}".encode())

        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()  # type: ignore[attr-defined]

    stdio.StandardIO(Control())
    reactor.run()  # type: ignore[attr-defined]


def client(
    implementation: str, port: int, mode: str, connections: int, calls: int, callers: int
) -> None:
    """Connect ``connections`` clients at once; time connecting, then ``callers`` of them
    calling; print RESULT."""
    from twisted.cred.credentials import UsernamePassword
    from twisted.internet import defer, task

    pb: Any = importlib.import_module(PB_MODULES[implementation])

    async def one(reactor: Any) -> tuple[Any, Any]:
        factory = pb.PBClientFactory()
        reactor.connectTCP("127.0.0.1", port, factory, timeout=120)
        if mode == "login":
            return factory, await factory.login(UsernamePassword(b"user", b"secret"))
        return factory, await factory.getRootObject()

    async def calling(target: Any) -> None:
        for n in range(calls):
            await target.callRemote("add", n, 1)

    async def run(reactor: Any) -> None:
        started = time.perf_counter()
        pairs = await defer.gatherResults(
            [defer.ensureDeferred(one(reactor)) for _ in range(connections)]
        )
        connected = time.perf_counter()
        print("CONNECTED", flush=True)
        sys.stdin.readline()  # the parent reads the server's memory now
        calls_started = time.perf_counter()
        await defer.gatherResults(
            [defer.ensureDeferred(calling(t)) for _, t in pairs[:callers]]
        )
        done = time.perf_counter()
        print(
            f"RESULT {connections / (connected - started):.1f} "
            f"{callers * calls / (done - calls_started):.1f}",
            flush=True,
        )
        for factory, _ in pairs:
            factory.disconnect()

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


def measure(
    implementation: str, mode: str, connections: int, calls: int, callers: int
) -> tuple[float, ...]:
    """One fresh server and client: (connections/s, calls/s, server KiB per connection)."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", implementation],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        root_port, login_port = server.stdout.readline().split()[1:3]
        server.stdin.write("MEM\n")
        idle = int(server.stdout.readline().split()[1])
        port = root_port if mode == "root" else login_port
        load = subprocess.Popen(
            [sys.executable, __file__, "--client", implementation, port, mode,
             str(connections), str(calls), str(callers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        assert load.stdin is not None and load.stdout is not None
        assert load.stdout.readline().strip() == "CONNECTED"
        server.stdin.write("MEM\n")
        loaded = int(server.stdout.readline().split()[1])
        load.stdin.write("go\n")
        load.stdin.flush()
        result = load.stdout.readline().split()
        load.wait(PROCESS_TIMEOUT)
        return float(result[1]), float(result[2]), (loaded - idle) / connections
    finally:
        server.stdin.close()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--callers", type=int, default=None, help="connections that call")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    if args.serve:
        serve(args.serve)
        return
    if args.client:
        implementation, port, mode, connections, calls, callers = args.client
        client(implementation, int(port), mode, int(connections), int(calls), int(callers))
        return
    callers = args.connections if args.callers is None else min(args.callers, args.connections)
    best: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for mode in MODES:
            for name in PB_MODULES:
                figures = measure(name, mode, args.connections, args.calls, callers)
                old = best.get((mode, name))
                best[(mode, name)] = figures if old is None else [
                    max(old[0], figures[0]), max(old[1], figures[1]), min(old[2], figures[2])
                ]
    print(
        f"{args.connections} connections, {callers} of them making {args.calls} calls each, "
        f"best of {args.rounds} rounds"
    )
    print(f"{'':16} {'connections/s':>14} {'calls/s':>10} {'server KiB/conn':>16}")
    for (mode, name), (conns, calls, kib) in best.items():
        print(f"{mode + ' ' + name:16} {conns:14,.0f} {calls:10,.0f} {kib:16.1f}")
    for mode in MODES:
        spread, twisted = best[(mode, "spread")], best[(mode, "twisted")]
        print(
            f"{mode}: spread/twisted connections {spread[0] / twisted[0]:.2f}x, "
            f"calls {spread[1] / twisted[1]:.2f}x, memory {spread[2] / twisted[2]:.2f}x"
        )


if __name__ == "__main__":
    main()
