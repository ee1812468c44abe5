"""The reference tables of ``spread._broker``, with plain function calls (no broker at all)."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from spread._broker import (
    CacheRef,
    ExportedCaches,
    ExportedObjects,
    IdCounter,
    ImportedCaches,
    ImportedRef,
    ImportedReferences,
    ReleaseQueue,
    TooManyReferences,
)


class Obj:
    pass


def puid(obj: Any) -> int:
    return id(obj)


def test_ids_are_never_reused() -> None:
    ids = IdCounter()
    assert [ids.next() for _ in range(3)] == [1, 2, 3]


def test_exporting_one_object_twice_counts_two_receipts() -> None:
    table = ExportedObjects(IdCounter())
    obj = Obj()
    luid = table.register(obj, puid(obj))
    assert table.register(obj, puid(obj)) == luid
    assert table.release(luid, puid) is None
    assert table.lookup(luid) is obj
    assert table.release(luid, puid) is obj
    assert table.lookup(luid) is None


def test_releasing_what_the_peer_never_held_does_nothing() -> None:
    table = ExportedObjects(IdCounter())
    obj = Obj()
    luid = table.register(obj, puid(obj))
    assert table.release(99, puid) is None
    assert table.release(b"root", puid) is None
    assert table.release([luid], puid) is None
    assert table.lookup(luid) is obj
    assert table.lookup([luid]) is None  # (a hostile peer's id: no TypeError)


def test_a_name_is_never_released() -> None:
    # Names (the root) are the session's: a decref of one leaves it published.
    from spread import pb

    broker = pb.Broker()
    root = Obj()
    broker.setNameForLocal("root", root)
    broker.proto_decref(b"root")
    broker.proto_decref("root")
    assert broker.localObjectForID(b"root") is root
    assert broker.localObjectForID("root") is root
    assert broker.localObjectForID(b"other") is None
    assert broker.localObjectForID(1) is None
    assert "_exports" not in vars(broker)  # looking up an id made no table


def test_exports_beyond_the_limit_are_refused() -> None:
    table = ExportedObjects(IdCounter(), limit=2)
    objs = [Obj() for _ in range(3)]
    table.register(objs[0], puid(objs[0]))
    table.register(objs[1], puid(objs[1]))
    with pytest.raises(TooManyReferences, match="limit 2"):
        table.register(objs[2], puid(objs[2]))
    table.register(objs[0], puid(objs[0]))  # another receipt of a held object is fine


def test_one_live_proxy_per_imported_id_and_what_is_owed_when_it_dies() -> None:
    dead: list[ImportedRef] = []
    table: ImportedReferences[Obj] = ImportedReferences(dead.append)
    first = table.acquire(7, Obj)
    assert table.acquire(7, Obj) is first
    del first
    gc.collect()
    [entry] = dead
    assert table.owed(entry) == 2
    assert table.owed(entry) == 0  # paid once
    assert 7 not in table.entries


def test_clearing_imports_owes_nothing() -> None:
    dead: list[ImportedRef] = []
    table: ImportedReferences[Obj] = ImportedReferences(dead.append)
    proxy = table.acquire(1, Obj)
    table.clear()
    del proxy
    gc.collect()
    assert all(table.owed(entry) == 0 for entry in dead)  # the weakref may be gone too


def test_caches_count_receipts_and_drain_on_close() -> None:
    table = ExportedCaches(IdCounter(), limit=1)
    master = Obj()
    luid = table.add(master, puid(master), None, "observer")
    assert table.find(puid(master), incref=True) == luid
    assert table.release(luid, puid) is None
    entry = table.release(luid, puid)
    assert entry is not None and entry.object is master
    table.add(master, puid(master), None, "observer")
    with pytest.raises(TooManyReferences):
        table.add(Obj(), 0, None, "observer")
    assert [e.object for e in table.drain()] == [master]
    assert table.locals == {}


def test_a_replica_state_outlives_its_object_until_uncache() -> None:
    dead: list[CacheRef] = []
    table = ImportedCaches(dead.append)
    replica = Obj()
    replica.n = 1  # type: ignore[attr-defined]
    table.track(3, replica)
    del replica
    gc.collect()
    assert table.owed(dead[0]) == 1
    transient = table.replica(3)
    assert transient.n == 1
    assert table.forget(3) is not None
    assert table.replica(3) is None


class Owner:
    def __init__(self, schedule: Any, drain: Any) -> None:
        self._scheduleFlush, self._sendReleases = schedule, drain


def test_release_queue_schedules_one_drain_per_batch() -> None:
    scheduled: list[Any] = []
    drained: list[list[Any]] = []
    queue = ReleaseQueue(Owner(scheduled.append, drained.append))
    queue.put("a")
    queue.put("b")
    assert len(scheduled) == 1 and len(queue) == 2
    scheduled.pop()()
    assert drained == [["a", "b"]]
    queue.put("c")
    assert len(scheduled) == 1


def test_release_queue_survives_a_scheduler_that_is_gone() -> None:
    def gone(flush: Any) -> None:
        raise RuntimeError("no reactor at shutdown")

    drained: list[list[Any]] = []
    queue = ReleaseQueue(Owner(gone, drained.append))
    queue.put("a")
    queue.flush()
    assert drained == [["a"]]
