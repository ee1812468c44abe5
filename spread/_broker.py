"""The broker's bookkeeping, free of sockets, reactors and clocks.

PB keeps four tables per connection, and this module holds them as plain
objects so they can be tested with function calls:

* ``ExportedObjects``: objects we sent by reference (``remote``), by id, with
  the number of times we sent each; the peer sends one ``decref`` per receipt.
* ``ImportedReferences``: references the peer sent us. One live
  ``RemoteReference`` per id, counting receipts, so that when it is collected
  we owe the peer exactly that many ``decref`` messages.
* ``ExportedCaches`` / ``ImportedCaches``: the same two roles for
  ``Cacheable`` masters and their ``RemoteCache`` replicas (``decache``,
  ``uncache``).

Releases are never sent from a finalizer: a weakref callback only puts the
dead entry on a ``ReleaseQueue`` (thread-safe, as the garbage collector may
run anywhere), and the broker drains it from the reactor, in one batch.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from spread._errors import Error

MAX_BROKER_REFS = 1024
"""How many distinct objects one connection may hold of ours by reference.

Twisted's limit, kept: a peer that never sends ``decref`` could otherwise make
us keep every object we ever passed it. Each table (references, caches) has
its own count. Raise it per factory (``maxBrokerRefs``) for servers that hand
out many live references at once.
"""

LUID = int | bytes
"""A locally unique id: an int we chose, or a name such as ``b"root"``."""

T = TypeVar("T")


def blank(cls: Any) -> Any:
    """An instance of ``cls`` made without calling ``__init__`` (as jelly makes copies)."""
    return cls.__new__(cls)


class TooManyReferences(Error):
    """More objects are exported on one connection than the configured limit allows."""


class Local:
    """One object we exported, how many times the peer received it, and for whom."""

    __slots__ = ("object", "perspective", "refcount")

    def __init__(self, object: Any, perspective: Any = None) -> None:
        self.object = object
        self.perspective = perspective
        self.refcount = 1

    def incref(self) -> int:
        """Count one more receipt by the peer."""
        self.refcount += 1
        return self.refcount

    def decref(self) -> int:
        """Count one release by the peer; zero means the peer holds none."""
        self.refcount -= 1
        return self.refcount

    def __repr__(self) -> str:
        return f"<Local {self.object!r} refs={self.refcount}>"


class IdCounter:
    """Hands out increasing ids; never reuses one, so a late message can't hit a new object."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        """Return a fresh id."""
        self.last += 1
        return self.last


class ExportedObjects:
    """Objects we passed by reference, keyed by the id the peer calls them by."""

    __slots__ = ("_luid_by_puid", "ids", "limit", "locals")

    def __init__(self, ids: IdCounter, limit: int = MAX_BROKER_REFS) -> None:
        self.ids = ids
        self.limit = limit
        self.locals: dict[LUID, Local] = {}
        self._luid_by_puid: dict[Any, int] = {}

    def register(self, obj: Any, puid: Any) -> int:
        """Count one more send of ``obj`` (identified by ``puid``) and return its id."""
        luid = self._luid_by_puid.get(puid)
        if luid is not None:
            self.locals[luid].refcount += 1
            return luid
        if len(self.locals) >= self.limit:
            raise TooManyReferences(
                f"this connection already holds {len(self.locals)} of our objects by "
                f"reference (limit {self.limit}); the peer must release some, or raise "
                "Limits.maxBrokerRefs on the factory"
            )
        luid = self.ids.next()
        self.locals[luid] = Local(obj)
        self._luid_by_puid[puid] = luid
        return luid

    def lookup(self, luid: object) -> Any:
        """The object the peer calls ``luid``, or None (names are the session's)."""
        local = self.locals.get(luid) if type(luid) is int else None
        return None if local is None else local.object

    def release(self, luid: object, puid_of: Callable[[Any], Any]) -> Any:
        """Count one ``decref``; return the object if that was the last, else None.

        Unknown ids and names are ignored: a confused or hostile peer must not
        be able to make us drop something it never held.
        """
        if type(luid) is not int:
            return None
        local = self.locals.get(luid)
        if local is None:
            return None
        local.refcount -= 1
        if local.refcount > 0:
            return None
        del self.locals[luid]
        self._luid_by_puid.pop(puid_of(local.object), None)
        return local.object

    def clear(self) -> None:
        """Forget everything (the connection is gone)."""
        self.locals.clear()
        self._luid_by_puid.clear()


class ImportedRef(weakref.ref):  # type: ignore[type-arg]
    """A weak pointer to the one live proxy for a peer's object, with its receipt count."""

    __slots__ = ("count", "luid")

    luid: int
    count: int


class ImportedReferences(Generic[T]):
    """Proxies for the peer's objects: one live proxy per id, and what we owe on release."""

    __slots__ = ("_released", "entries")

    def __init__(self, released: Callable[[ImportedRef], None]) -> None:
        self._released = released
        self.entries: dict[int, ImportedRef] = {}

    def acquire(self, luid: int, make: Callable[[], T]) -> T:
        """Return the live proxy for ``luid`` (making one if needed) and count this receipt."""
        entry = self.entries.get(luid)
        if entry is not None:
            proxy: T | None = entry()
            if proxy is not None:
                entry.count += 1
                return proxy
        proxy = make()
        entry = ImportedRef(proxy, self._released)
        entry.luid = luid
        entry.count = 1
        self.entries[luid] = entry
        return proxy

    def owed(self, entry: ImportedRef) -> int:
        """Forget a collected proxy; return how many ``decref`` messages the peer is owed."""
        if self.entries.get(entry.luid) is entry:
            del self.entries[entry.luid]
        count, entry.count = entry.count, 0
        return count

    def clear(self) -> None:
        """Forget everything (the connection is gone; nothing is owed any more)."""
        for entry in self.entries.values():
            entry.count = 0
        self.entries.clear()


class CacheLocal(Local):
    """A ``Cacheable`` we sent, its observer for this connection, and the receipt count."""

    __slots__ = ("luid", "observer")

    def __init__(self, luid: int, object: Any, perspective: Any, observer: Any) -> None:
        super().__init__(object, perspective)
        self.luid = luid
        self.observer = observer


class ExportedCaches:
    """``Cacheable`` masters the peer holds a replica of, by cache id."""

    __slots__ = ("_luid_by_puid", "ids", "limit", "locals")

    def __init__(self, ids: IdCounter, limit: int = MAX_BROKER_REFS) -> None:
        self.ids = ids
        self.limit = limit
        self.locals: dict[int, CacheLocal] = {}
        self._luid_by_puid: dict[Any, int] = {}

    def find(self, puid: Any, incref: bool = False) -> int | None:
        """The cache id the peer knows this master by (counting one receipt if asked)."""
        luid = self._luid_by_puid.get(puid)
        if luid is not None and incref:
            self.locals[luid].refcount += 1
        return luid

    def add(self, obj: Any, puid: Any, perspective: Any, observer: Any) -> int:
        """Record the first send of a master to this peer; return its new cache id."""
        if len(self.locals) >= self.limit:
            raise TooManyReferences(
                f"this connection already holds {len(self.locals)} cached objects "
                f"(limit {self.limit}); the peer must drop some replicas, or raise "
                "Limits.maxCachedObjects on the factory"
            )
        luid = self.ids.next()
        self.locals[luid] = CacheLocal(luid, obj, perspective, observer)
        self._luid_by_puid[puid] = luid
        return luid

    def get(self, luid: object) -> CacheLocal | None:
        """The entry for a cache id, or None."""
        return self.locals.get(luid) if type(luid) is int else None

    def release(self, luid: object, puid_of: Callable[[Any], Any]) -> CacheLocal | None:
        """Count one ``decache``; return the entry if the peer holds no replica any more."""
        local = self.get(luid)
        if local is None:
            return None
        local.refcount -= 1
        if local.refcount > 0:
            return None
        self.forget(local, puid_of)
        return local

    def forget(self, local: CacheLocal, puid_of: Callable[[Any], Any]) -> None:
        """Drop an entry whatever its count."""
        if self.locals.get(local.luid) is local:
            del self.locals[local.luid]
        if self._luid_by_puid.get(puid_of(local.object)) == local.luid:
            del self._luid_by_puid[puid_of(local.object)]

    def drain(self) -> list[CacheLocal]:
        """Remove and return every entry (the connection is gone)."""
        entries = list(self.locals.values())
        self.locals.clear()
        self._luid_by_puid.clear()
        return entries


class CacheRef(weakref.ref):  # type: ignore[type-arg]
    """A weak pointer to the live replica of one cache, with its receipt count."""

    __slots__ = ("count", "entry")

    entry: CachedCopy
    count: int


class CachedCopy:
    """A replica's shared state, kept until the master's side says ``uncache``.

    The state (the replica's ``__dict__``) outlives any one replica object:
    after we drop the replica and send ``decache``, the peer may still send
    ``cached`` for it before it sees our release, and we must rebuild it.
    """

    __slots__ = ("cls", "luid", "ref", "state")

    def __init__(self, luid: int, cls: type[Any], state: dict[str, Any]) -> None:
        self.luid = luid
        self.cls = cls
        self.state = state
        self.ref: CacheRef | None = None


class ImportedCaches:
    """Replicas of the peer's ``Cacheable`` masters, by the peer's cache id."""

    __slots__ = ("_released", "entries")

    def __init__(self, released: Callable[[CacheRef], None]) -> None:
        self._released = released
        self.entries: dict[int, CachedCopy] = {}

    def track(self, luid: int, replica: Any) -> CachedCopy:
        """Start tracking a freshly received replica (full state arrived)."""
        entry = CachedCopy(luid, type(replica), replica.__dict__)
        self.entries[luid] = entry
        self._watch(entry, replica)
        return entry

    def _watch(self, entry: CachedCopy, replica: Any) -> None:
        ref = CacheRef(replica, self._released)
        ref.entry = entry
        ref.count = 1
        entry.ref = ref

    def acquire(self, luid: object) -> Any:
        """The replica for another receipt of cache ``luid``, or None if we never had it."""
        entry = self.entries.get(luid) if type(luid) is int else None
        if entry is None:
            return None
        if entry.ref is not None:
            replica = entry.ref()
            if replica is not None:
                entry.ref.count += 1
                return replica
        replica = blank(entry.cls)
        replica.__dict__ = entry.state
        self._watch(entry, replica)
        return replica

    def replica(self, luid: object) -> Any:
        """An object to deliver an ``observe_*`` call to, or None for an unknown id."""
        entry = self.entries.get(luid) if type(luid) is int else None
        if entry is None:
            return None
        if entry.ref is not None:
            replica = entry.ref()
            if replica is not None:
                return replica
        # Nobody holds the replica any more, but the state lives until uncache:
        # deliver to a transient object sharing it, without counting a receipt.
        transient = blank(entry.cls)
        transient.__dict__ = entry.state
        return transient

    def owed(self, ref: CacheRef) -> int:
        """A replica was collected; return how many ``decache`` messages we owe."""
        if ref.entry.ref is ref:
            ref.entry.ref = None
        count, ref.count = ref.count, 0
        return count

    def forget(self, luid: object) -> CachedCopy | None:
        """The master's side said ``uncache``: drop the state."""
        return self.entries.pop(luid, None) if type(luid) is int else None

    def clear(self) -> None:
        """Forget everything (the connection is gone)."""
        for entry in self.entries.values():
            if entry.ref is not None:
                entry.ref.count = 0
        self.entries.clear()


class ReleaseOwner(Protocol):
    """Who drains a ``ReleaseQueue``: the session, which sends the releases."""

    def _scheduleFlush(self, flush: Callable[[], None]) -> None:
        """Arrange for ``flush()`` to run soon on the connection's thread (thread-safe)."""

    def _sendReleases(self, items: list[Any]) -> None:
        """Send what the dead entries ``items`` owe the peer."""


class ReleaseQueue:
    """Dead proxies waiting to be released, filled by finalizers, drained by the reactor.

    ``put`` (or calling the queue: it is the weak references' callback) may run inside the
    garbage collector on any thread, so it only appends to a deque (atomic) and asks the
    owner's ``_scheduleFlush`` (thread-safe, e.g. ``reactor.callFromThread``) for one drain
    per batch. It holds its owner, not bound methods of it: fewer objects per connection.
    """

    __slots__ = ("_items", "_owner", "_scheduled")

    def __init__(self, owner: ReleaseOwner) -> None:
        self._items: deque[Any] | None = None  # made on the first release: many never have one
        self._scheduled = False
        self._owner: ReleaseOwner | None = owner

    def put(self, item: Any) -> None:
        """Queue one dead entry; schedule a drain unless one is already due."""
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if not self._scheduled and self._owner is not None:
            self._scheduled = True
            try:
                self._owner._scheduleFlush(self.flush)
            except Exception:
                # At interpreter shutdown there may be no reactor left; a later
                # flush (or the connection closing) settles the debt.
                self._scheduled = False

    __call__ = put

    def flush(self) -> None:
        """Hand everything queued so far to the owner (reactor thread only)."""
        self._scheduled = False
        items: list[Any] = []
        queued = self._items
        while queued:
            items.append(queued.popleft())
        if items and self._owner is not None:
            self._owner._sendReleases(items)

    def close(self) -> None:
        """Forget what is queued and the owner (it holds the queue: a cycle otherwise)."""
        self._items = None
        self._scheduled = True  # never schedule again
        self._owner = None

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0


