"""What the benchmark scripts share: running their child processes, and the raw echo's client.

The scripts run as programs (``python bench/bench_pb.py``), so this is imported as ``_common``.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from collections import deque
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ClientFactory
from twisted.protocols.basic import Int32StringReceiver


def read_port(server: subprocess.Popen[str], timeout: float) -> int:
    """The server's ``PORT n`` line, waited for at most ``timeout`` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    assert server.stdout is not None
    stdout = server.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise RuntimeError("the server did not start") from None
    if not line.startswith("PORT "):
        why = line.strip() or "no output"
        if server.stderr is not None:  # the server's own last words, where they were kept
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout)
                why = (server.stderr.read().strip().splitlines() or [why])[-1]
        raise RuntimeError(f"the server did not start: {why}")
    return int(line.split()[1])


def stop(process: subprocess.Popen[str], timeout: float = 30) -> None:
    """Close the child's stdin (it stops at EOF); kill it if it does not stop in time."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):  # a child that has died has a broken pipe
            process.stdin.close()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RawClient(Int32StringReceiver):
    """The raw echo's client: ``request(data)`` sends a string and waits for the next one back."""

    def connectionMade(self) -> None:
        self.waiting: deque[defer.Deferred[bytes]] = deque()
        ready = getattr(self.factory, "ready", None)
        if ready is not None:
            ready.callback(self)

    def request(self, data: bytes) -> defer.Deferred[bytes]:
        answer: defer.Deferred[bytes] = defer.Deferred()
        self.waiting.append(answer)
        self.sendString(data)
        return answer

    def stringReceived(self, string: bytes) -> None:
        self.waiting.popleft().callback(string)


class RawOpening(ClientFactory):
    """Connects one ``protocol`` (a ``RawClient``); ``ready`` fires with it once connected."""

    protocol: Any = RawClient

    def __init__(self) -> None:
        self.ready: defer.Deferred[Any] = defer.Deferred()

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.ready.errback(reason)
