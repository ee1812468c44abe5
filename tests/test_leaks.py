"""Leaks: 100,000 calls that pass references, copies and caches, then let them go. Both brokers'
tables must return to empty, every master must hear that its replica stopped observing, and the
memory still allocated must return to within a small margin of where it started (measured with
tracemalloc, over the whole run). The brokers talk in memory (twisted.test.iosim), so the test is
deterministic and takes seconds.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from test_pb import Loop

from spread import pb

CALLS = 100_000
BATCH = 500  # calls outstanding at once, below the pending-calls limit
MARGIN = 1024 * 1024  # bytes still allocated after the run, at most


class Listener(pb.Referenceable):
    def remote_hear(self) -> str:
        return "heard"


class Pond(pb.Copyable):
    def __init__(self, frogs: int) -> None:
        self.frogs = frogs


class PondCopy(pb.RemoteCopy):
    pass


class Board(pb.Cacheable):
    stopped = 0

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> dict[str, int]:
        return {"n": 1}

    def stoppedObserving(self, perspective: Any, observer: Any) -> None:
        Board.stopped += 1


class BoardCopy(pb.RemoteCache):
    pass


pb.setUnjellyableForClass(Pond, PondCopy)
pb.setUnjellyableForClass(Board, BoardCopy)


class Service(pb.Root):
    def remote_take(self, listener: pb.RemoteReference) -> int:
        return 1  # receives a reference to a fresh client object, and drops it

    def remote_copy(self, n: int) -> Pond:
        return Pond(n)

    def remote_cache(self) -> Board:
        return Board()  # a fresh master, observed by the client until it drops the replica

    def remote_thing(self) -> pb.Referenceable:
        return Listener()  # a fresh server object, referenced by the client until it drops it


def run_calls(loop: Loop, root: Any, count: int) -> int:
    """Make ``count`` calls in batches, dropping every result; return how many caches were sent."""
    kinds = ("take", "copy", "cache", "thing")
    caches = 0
    for start in range(0, count, BATCH):
        pending = []
        for n in range(start, min(start + BATCH, count)):
            kind = kinds[n % 4]
            if kind == "take":
                pending.append(root.callRemote("take", Listener()))
            elif kind == "copy":
                pending.append(root.callRemote("copy", n))
            else:
                caches += kind == "cache"
                pending.append(root.callRemote(kind))
        results: list[Any] = []
        for d in pending:
            d.addBoth(results.append)
        loop.pump.flush()
        assert len(results) == len(pending)
        expected = (int, PondCopy, BoardCopy, pb.RemoteReference)
        assert all(isinstance(result, expected) for result in results), results[:3]
        del pending, results
        release(loop)
    return caches


def release(loop: Loop) -> None:
    """Deliver the releases the dropped proxies caused (refcounting frees them at once)."""
    for _ in range(2):  # a decache answered by uncache takes a second round
        loop.client.flushReleases()
        loop.server.flushReleases()
        loop.pump.flush()


def table_sizes(broker: pb.Broker) -> dict[str, int]:
    return {
        "exported": len(broker._exports.locals),
        "imported": len(broker._imports.entries),
        "caches exported": len(broker._cacheExports.locals),
        "caches imported": len(broker._cacheImports.entries),
    }


def test_many_calls_leave_no_references_and_no_memory_behind() -> None:
    loop = Loop(Service())
    root = loop.root()
    run_calls(loop, root, 4 * BATCH)  # warm up: first-use caches, interned names...
    gc.collect()
    Board.stopped = 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        caches = run_calls(loop, root, CALLS)
        loop.release()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    empty = dict.fromkeys(table_sizes(loop.server), 0)
    assert table_sizes(loop.server) == empty
    assert table_sizes(loop.client) == empty
    assert Board.stopped == caches
    print(f"memory still allocated after {CALLS} calls: {after - before} bytes")
    assert after - before < MARGIN
