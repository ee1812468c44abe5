"""How fast a PB server accepts connections, with a load generator that is not the bottleneck.

    .venv/bin/python bench/bench_accept.py [--connections 1000] [--rounds 5] [--only ...] [--json]

``bench_load.py`` opens its connections with a Twisted PB client, which spends more time per
connection than either server does: every server then looks as fast as that client (the raw
echo, with no PB at all, "connects" no faster than Twisted PB there). Here the client is a
small ``selectors`` loop over plain non-blocking sockets that speaks just enough PB to get a
connection ready: it opens N connections at once, reads each server's dialect offer, answers
with the bytes a stock Twisted client sends (``pb``, then its version message) and counts the
connection ready when the server's own version message arrives. Per connection it costs a
fraction of what either server does, so the rate it sees is the server's.

For each implementation (``spread``, ``twisted``, and ``raw``: Twisted ``Int32StringReceiver``
echoing one small string, the ceiling of this reactor) it starts ``bench_load.py --serve`` in
one process and the load generator in another, and reports connections/s (N divided by the
time from the first connect to the last ready connection) and the server's connections per
CPU-second. The implementations take turns for several rounds in fresh processes; each figure
is the median of its rounds. Run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time

from _common import stop

IMPLEMENTATIONS = ("spread", "twisted", "raw")
HERE = os.path.dirname(os.path.abspath(__file__))
PROCESS_TIMEOUT = 300.0

# What a stock Twisted client sends once it has the offer: the dialect it picks, then its
# version message (in the pb dialect's vocabulary), in one write.
CHOICE = b"\x02\x82pb" + b"\x02\x80\x13\x87\x06\x81"
VERSION = b"\x02\x80\x13\x87\x06\x81"  # the server's version message ends its handshake
RAW_MESSAGE = len(b"\x00" * 40).to_bytes(4, "big") + b"\x00" * 40  # one Int32 string


def offer_length(data: bytes) -> int | None:
    """How many bytes the server's dialect offer (a banana list of strings) takes, or None
    while it is incomplete."""
    position = 0

    def header() -> tuple[int, int] | None:
        nonlocal position
        value, shift = 0, 0
        while position < len(data):
            byte = data[position]
            position += 1
            if byte >= 0x80:
                return value, byte
            value |= byte << shift
            shift += 7
        return None

    first = header()
    if first is None or first[1] != 0x80:
        return None
    for _ in range(first[0]):
        item = header()
        if item is None:
            return None
        position += item[0]
    return position if position <= len(data) else None


def generate(implementation: str, port: int, connections: int) -> None:
    """The load generator: open ``connections`` at once; print the rate they became ready."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    raw = implementation == "raw"
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    answered: set[socket.socket] = set()
    ready: list[socket.socket] = []
    started = time.perf_counter()
    for _ in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        received[sock] = b""
        selector.register(sock, selectors.EVENT_WRITE if raw else selectors.EVENT_READ)
    while len(ready) < connections:
        for key, _events in selector.select(PROCESS_TIMEOUT):
            sock = key.fileobj  # type: ignore[assignment]
            if raw and sock not in answered:
                sock.send(RAW_MESSAGE)  # connected: the echo's one round trip starts
                answered.add(sock)
                selector.modify(sock, selectors.EVENT_READ)
                continue
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed a connection during its handshake")
            data = received[sock] = received[sock] + data
            if raw:
                done = len(data) >= len(RAW_MESSAGE)
            else:
                offered = offer_length(data)
                if offered is not None and sock not in answered:
                    sock.send(CHOICE)
                    answered.add(sock)
                done = offered is not None and data[offered:].endswith(VERSION)
            if done:
                selector.unregister(sock)
                ready.append(sock)
    elapsed = time.perf_counter() - started
    print(f"RESULT {connections / elapsed:.1f}", flush=True)
    sys.stdin.readline()  # the parent reads the server's CPU time meanwhile
    for sock in ready:
        sock.close()


def server_cpu(server: subprocess.Popen[str]) -> float:
    """The server's CPU seconds once it has stopped working (see bench_load.settled_mem)."""
    assert server.stdin is not None and server.stdout is not None
    last = -1.0
    for _ in range(40):
        server.stdin.write("MEM\n")
        server.stdin.flush()
        cpu = float(server.stdout.readline().split()[2])
        if cpu - last < 0.005:
            break
        last = cpu
        time.sleep(0.25)
    return cpu


def measure(implementation: str, connections: int) -> tuple[float, float]:
    """One fresh server and load generator: (connections/s, server connections per CPU-s)."""
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "bench_load.py"), "--serve", implementation],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    load: subprocess.Popen[str] | None = None
    try:
        assert server.stdin is not None and server.stdout is not None
        port = server.stdout.readline().split()[1]  # PORT root login
        server.stdin.write("GC\n")  # from a collected heap, as in bench_load.py
        server.stdout.readline()
        idle = server_cpu(server)
        load = subprocess.Popen(
            [sys.executable, __file__, "--generate", implementation, port, str(connections)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        assert load.stdout is not None and load.stdin is not None
        line = load.stdout.readline()
        if not line.startswith("RESULT "):
            raise RuntimeError(f"the load generator failed: {line.strip() or 'no output'}")
        rate = float(line.split()[1])
        busy = server_cpu(server)
        load.stdin.write("done\n")
        load.stdin.flush()
        load.wait(PROCESS_TIMEOUT)
        return rate, connections / max(busy - idle, 1e-6)
    finally:
        if load is not None:
            stop(load)
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=",".join(IMPLEMENTATIONS), help="comma-separated")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--generate", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        implementation, port, connections = args.generate
        generate(implementation, int(port), int(connections))
        return
    chosen = [name for name in args.only.split(",") if name]
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
    for _ in range(args.rounds):
        for name in chosen:
            samples[name].append(measure(name, args.connections))
    medians = {
        name: (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs))
        for name, runs in samples.items()
    }
    print(f"{args.connections} connections at once from a load generator, "
          f"median of {args.rounds} rounds")  # fmt: skip
    print(f"{'':10}{'connections/s':>16}{'server conns/CPU-s':>20}")
    for name, (rate, cpu) in medians.items():
        print(f"{name:10}{rate:>16,.0f}{cpu:>20,.0f}")
    if "spread" in medians:
        for other in ("twisted", "raw"):
            if other in medians:
                rate, cpu = medians["spread"]
                print(f"spread/{other}: connections/s {rate / medians[other][0]:.2f}x, "
                      f"server CPU per connection {cpu / medians[other][1]:.2f}x")  # fmt: skip
    if args.json:
        print(json.dumps({
            "settings": {"connections": args.connections, "rounds": args.rounds},
            "results": {
                name: {"connections_per_s": rate, "server_connections_per_cpu_s": cpu}
                for name, (rate, cpu) in medians.items()
            },
        }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
