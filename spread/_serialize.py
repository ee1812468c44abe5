"""The PB session as jelly's invoker: object tables, (un)serializing, and the PB reference forms.

``ObjectTables`` is the base of ``PBSession`` (and so of ``Broker``). Jellyable
objects call these methods by their Twisted names (``registerReference``,
``cacheRemotely``, ``serializingPerspective`` ...), so custom ``jellyFor`` code
written for Twisted keeps working. What a message exports is logged with that
message (``serializeLogged``), never in a slot shared between messages, so
taking back one unsent message cannot touch what another one exported.

Calls whose arguments and results are plain scalars (the common case) skip the
general jelly machinery: ``serialize``/``unserialize`` build those few forms
directly, and only when a probe at connection time shows that this
connection's ``SecurityOptions`` produce and accept exactly those forms.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer
from twisted.logger import Logger

from spread._broker import (
    CacheRef,
    ExportedCaches,
    ExportedObjects,
    IdCounter,
    ImportedCaches,
    ImportedRef,
    ImportedReferences,
    Local,
    ReleaseQueue,
    TooManyReferences,
    blank,
)
from spread._calls import CallSender
from spread._coroutines import runCoroutine
from spread._failures import CopiedFailure
from spread._jelly_keys import MAX_REFERENCE_ID
from spread._lazy import perConnection
from spread._quote import quote
from spread._remote import RemoteReference
from spread.flavors import RemoteCacheObserver
from spread.jelly import InsecureJelly, jelly, unjelly
from spread.limits import DEFAULT_LIMITS, Limits

_log = Logger()

_MAX_PLACEHOLDER_WARNINGS = 100  # classes warned about per connection, at most

_REMOTE = b"remote"
_CACHE = b"cache"
Registrations = list[tuple[bytes, int]]


def _puid(obj: Any) -> Any:
    return obj.processUniqueID()


def jellyFlatTuple(values: tuple[Any, ...]) -> list[Any] | None:
    """``[tuple, ...]`` for a tuple of scalars, strings and Nones; None for anything else."""
    sexp: list[Any] = [b"tuple"]
    for value in values:
        kind = type(value)
        if kind is int or kind is float or kind is bytes:
            sexp.append(value)
        elif kind is str:
            sexp.append([b"unicode", value.encode("utf-8")])
        elif value is None:
            sexp.append([b"None"])
        else:
            return None
    return sexp


def _unjellyFlat(sexp: list[Any]) -> tuple[bool, Any]:
    """Decode the few flat forms the fast path handles: (True, value), or (False, None)."""
    head = sexp[0] if sexp else None
    if head == b"tuple":
        for value in sexp:
            if type(value) is list:
                return False, None
        return True, tuple(sexp[1:])
    if len(sexp) == 1:
        if head == b"dictionary":
            return True, {}
        if head == b"None":
            return True, None
    elif head == b"unicode" and len(sexp) == 2 and type(sexp[1]) is bytes:
        try:
            return True, sexp[1].decode("utf-8")
        except UnicodeDecodeError:
            return False, None
    return False, None


_PROBED: weakref.WeakKeyDictionary[Any, dict[type, tuple[bool, bool]]] = (
    weakref.WeakKeyDictionary()
)


class ObjectTables:
    """The invoker half of a PB session (see module docstring): the four reference tables,
    the registration logs that let an unsent message be taken back, and the releases owed
    to the peer. It sends only through ``sendEncoded``, which the session provides."""

    unserializingPerspective: Any = None
    currentRequestID = 0
    _refLimits = (DEFAULT_LIMITS.maxBrokerRefs, DEFAULT_LIMITS.maxCachedObjects)
    _maxImportedCaches = DEFAULT_LIMITS.maxImportedCaches
    # Where registerReference and friends record what they export while a message is being
    # jellied; None outside any message. See serializeLogged.
    _registrationLog: Registrations | None = None
    _placeholderClasses: set[type] | None = None  # see placeholderSent
    _serializing: Any = None  # the perspective being jellied for (serializingPerspective)
    _specific = 0
    """How many times jelly made something that may differ from one connection to another:
    it read ``serializingPerspective``, or ran a ``jellyFor`` not known to be the same for
    every connection. Arguments serialized without any are shared by ``broadcast``."""
    jellyMethod: Any = None
    jellyArgs: Any = None
    jellyKw: Any = None
    maxBrokerRefsViolations = 0
    """Times the peer went past the reference or cache limit; the fourth ends the
    connection (as in Twisted), since a peer that keeps asking will not stop."""

    def __init__(self, security: Any, limits: Limits) -> None:
        self.security = security
        if limits is not DEFAULT_LIMITS:  # (the class attributes hold the defaults' figures)
            self._refLimits = (limits.maxBrokerRefs, limits.maxCachedObjects)
            self._maxImportedCaches = limits.maxImportedCaches

    # Whether jelly's scalar shortcuts apply here (see _probeFastPaths): worked out on the
    # first message, not for every connection accepted.

    @perConnection
    def _fastJelly(self) -> bool:
        fast, self._fastUnjelly = self._probeFastPaths()
        return fast

    @perConnection
    def _fastUnjelly(self) -> bool:
        self._fastJelly, fast = self._probeFastPaths()
        return fast

    # The tables are made on first use (see spread._lazy); so are the names (``root``).

    @perConnection
    def _ids(self) -> IdCounter:
        return IdCounter()

    @perConnection
    def _releases(self) -> ReleaseQueue:
        return ReleaseQueue(self)

    @perConnection
    def _names(self) -> dict[bytes, Any]:
        return {}

    @perConnection
    def _exports(self) -> ExportedObjects:
        return ExportedObjects(self._ids, self._refLimits[0])

    @perConnection
    def _imports(self) -> ImportedReferences[RemoteReference]:
        return ImportedReferences(self._releases)

    @perConnection
    def _cacheExports(self) -> ExportedCaches:
        return ExportedCaches(self._ids, self._refLimits[1])

    @perConnection
    def _cacheImports(self) -> ImportedCaches:
        return ImportedCaches(self._releases)

    @perConnection
    def _releaseCallbacks(self) -> dict[Any, list[Callable[[], object]]]:
        return {}

    @property
    def serializingPerspective(self) -> Any:
        """The perspective the object being jellied is for (what ``Viewable`` and
        ``getStateToCopyFor`` see)."""
        self._specific += 1
        return self._serializing

    @serializingPerspective.setter
    def serializingPerspective(self, perspective: Any) -> None:
        self._serializing = perspective

    def _connectionSpecific(self) -> None:
        """Jelly made a form that may hold this connection's ids or state (see _specific)."""
        self._specific += 1

    @property
    def disconnected(self) -> int:
        """1 once the connection has closed, else 0 (the session defines when)."""
        return 0

    def sendEncoded(self, obj: object) -> None:
        """Send one s-expression to the peer: the session's output hook."""
        raise NotImplementedError(f"{type(self).__qualname__} has no output")

    def _scheduleFlush(self, flush: Callable[[], None]) -> None:
        """Arrange for ``flush()`` to run soon, on the connection's thread.

        Without a scheduler, releases wait for ``flushReleases()``.
        """

    def _dropConnection(self) -> None:
        """End the connection (the session's hook; nothing to end here)."""

    def placeholderSent(self, cls: type) -> None:
        """Warn, once per class on this connection, that an instance went as a placeholder.

        The wire behaviour is Twisted's (the peer gets an ``Unpersistable``), but
        a silent placeholder surfaces far from its cause, so the sender is told.
        """
        warned = self._placeholderClasses
        if warned is None:
            warned = self._placeholderClasses = set()
        if cls in warned or len(warned) >= _MAX_PLACEHOLDER_WARNINGS:
            return
        warned.add(cls)
        _log.warn(
            "sent an instance of {cls} as an Unpersistable placeholder: its class is neither "
            "Copyable nor Referenceable. Subclass pb.Copyable (and register a pb.RemoteCopy "
            "for it on the receiving side) to send a copy, or pb.Referenceable to send a "
            "reference",
            cls=f"{cls.__module__}.{cls.__qualname__}",
        )

    def _overLimit(self, error: TooManyReferences) -> TooManyReferences:
        """Count a refusal past the reference or cache limit; the fourth drops the peer."""
        self.maxBrokerRefsViolations += 1
        if self.maxBrokerRefsViolations <= 3:
            return error
        self._dropConnection()
        return TooManyReferences(f"{error}. Goodbye: the peer went past it 4 times")

    # -- serializing ------------------------------------------------------------------------

    def serialize(
        self, object: Any, perspective: Any = None, method: Any = None, args: Any = None,
        kw: Any = None,
    ) -> Any:
        """Jelly ``object`` for the peer under this connection's security options.

        A Deferred (or coroutine) is serialized when it fires; the Deferred is returned.
        What it exports is logged with the message being built, if any (``serializeLogged``).
        """
        if self._fastJelly:
            kind = type(object)
            if kind is tuple:
                flat = jellyFlatTuple(object)
                if flat is not None:
                    return flat
            elif kind is int or kind is bytes or kind is float:
                return object
            elif kind is str:
                return [b"unicode", object.encode("utf-8")]
            elif object is None:
                return [b"None"]
        if isinstance(object, defer.Deferred):
            return object.addCallback(
                self._serializeInto, self._registrationLog, perspective, method, args, kw
            )
        if inspect.iscoroutine(object):
            running = runCoroutine(object)  # an asyncio task under the asyncio reactor
            return self.serialize(running, perspective, method, args, kw)
        return self._jellyTracked(object, perspective, method, args, kw)

    def serializeLogged(
        self, object: Any, perspective: Any = None, method: Any = None
    ) -> tuple[Any, Registrations]:
        """Jelly ``object`` as one message part; return it with the exports it made.

        The caller rolls the exports back (``rollback``) if the message is never
        sent, so the peer's count of our objects stays right. Exports made by other
        messages meanwhile (a nested call, say) are logged with those messages.
        """
        log: Registrations = []
        return self._serializeInto(object, log, perspective, method), log

    def _serializeInto(
        self, object: Any, log: Registrations | None, perspective: Any = None, method: Any = None,
        args: Any = None, kw: Any = None,
    ) -> Any:
        outer, self._registrationLog = self._registrationLog, log
        try:
            return self.serialize(object, perspective, method, args, kw)
        finally:
            self._registrationLog = outer

    def _jellyTracked(self, object: Any, perspective: Any, method: Any, args: Any, kw: Any) -> Any:
        saved = (self._serializing, self.jellyMethod, self.jellyArgs, self.jellyKw)
        self._serializing = perspective
        self.jellyMethod, self.jellyArgs, self.jellyKw = method, args, kw
        outer = self._registrationLog
        log: Registrations = []
        self._registrationLog = log
        try:
            sexp = jelly(object, self.security, None, self)
        except BaseException:
            self.rollback(log)
            raise
        finally:
            self._registrationLog = outer
            (self._serializing, self.jellyMethod, self.jellyArgs, self.jellyKw) = saved
        if outer is not None:
            outer.extend(log)
        return sexp

    def unserialize(self, sexp: Any, perspective: Any = None) -> Any:
        """Unjelly what the peer sent under this connection's security options."""
        if self._fastUnjelly:
            if type(sexp) is not list:
                return sexp
            done, value = _unjellyFlat(sexp)
            if done:
                return value
        saved = self.unserializingPerspective
        self.unserializingPerspective = perspective
        try:
            return unjelly(sexp, self.security, None, self)
        finally:
            self.unserializingPerspective = saved

    def _probeFastPaths(self) -> tuple[bool, bool]:
        """Use the scalar shortcuts only if jelly itself agrees with them here.

        The answer depends on the broker's class and its security options, so it is worked
        out once per pair, not for every connection.
        """
        try:
            known = _PROBED.get(self.security)
            if known is None:
                known = _PROBED.setdefault(self.security, {})
        except TypeError:  # security options that cannot be weakly referenced: probe each time
            return self._probe()
        found = known.get(type(self))
        if found is None:
            found = known[type(self)] = self._probe()
        return found

    def _probe(self) -> tuple[bool, bool]:
        sample = (1, 1.5, b"b", "s", None)
        expected = [b"tuple", 1, 1.5, b"b", [b"unicode", b"s"], [b"None"]]
        try:
            fast_jelly = (
                jelly(sample, self.security, None, self) == expected
                and jelly({}, self.security, None, self) == [b"dictionary"]
                and jelly("s", self.security, None, self) == [b"unicode", b"s"]
                and jelly(None, self.security, None, self) == [b"None"]
            )
        except Exception:
            fast_jelly = False
        try:
            fast_unjelly = (
                unjelly(expected, self.security, None, self) == sample
                and unjelly([b"dictionary"], self.security, None, self) == {}
            )
        except Exception:
            fast_unjelly = False
        return fast_jelly, fast_unjelly

    def rollback(self, log: Registrations | None) -> None:
        """Undo registrations for a message that never left: the peer never received them."""
        if not log:
            return
        for kind, luid in reversed(log):
            if kind == _REMOTE:
                released = self._exports.release(luid, _puid)
                if released is not None:
                    self._released(released)
            else:
                entry = self._cacheExports.release(luid, _puid)
                if entry is not None:
                    self._stopObserving(entry.object, entry.perspective, entry.observer)
        log.clear()

    def _released(self, obj: Any) -> None:
        for callback in self._releaseCallbacks.pop(_puid(obj), ()):
            try:
                callback()
            except Exception:
                _log.failure("a notifyOnRelease callback raised")

    @staticmethod
    def _stopObserving(cacheable: Any, perspective: Any, observer: Any) -> None:
        try:
            cacheable.stoppedObserving(perspective, observer)
        except Exception:
            _log.failure("stoppedObserving raised")

    def notifyOnRelease(self, obj: Any, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the peer releases its last reference to ``obj``."""
        self._releaseCallbacks.setdefault(_puid(obj), []).append(callback)

    def setReferenceLimit(self, limit: int) -> None:
        """How many objects (and, separately, caches) the peer may hold of ours at once."""
        self._refLimits = (limit, limit)
        made = vars(self)
        for table in ("_exports", "_cacheExports"):
            if table in made:
                made[table].limit = limit

    # -- releases we owe the peer (from finalizers, drained on the connection's thread) -----

    def _sendReleases(self, items: list[Any]) -> None:
        """Send the decref/decache messages owed for proxies collected since the last drain."""
        if self.disconnected:
            return
        for item in items:
            if isinstance(item, ImportedRef):
                count, kind, luid = self._imports.owed(item), b"decref", item.luid
            elif isinstance(item, CacheRef):
                count, kind, luid = self._cacheImports.owed(item), b"decache", item.entry.luid
            else:
                continue
            for _ in range(count):
                self.sendEncoded([kind, luid])

    def flushReleases(self) -> None:
        """Send owed releases now rather than when scheduled (for tests and shutdown)."""
        if "_releases" in vars(self):
            self._releases.flush()

    def sendDecRef(self, objectID: Any) -> None:
        """Tell the peer we dropped one receipt of its object."""
        self.sendEncoded([b"decref", objectID])

    def decCacheRef(self, objectID: Any) -> None:
        """Tell the peer we dropped one receipt of its cache."""
        self.sendEncoded([b"decache", objectID])

    def _clearTables(self) -> None:
        """Forget every object, reference and cache (the connection has closed)."""
        made = vars(self)
        for table in ("_names", "_exports", "_imports", "_cacheImports", "_releaseCallbacks"):
            if table in made:
                made[table].clear()
        if "_releases" in made:
            made["_releases"].close()

    # -- the tables, by Twisted's names -----------------------------------------------------

    def newLocalID(self) -> int:
        """A fresh id for an object or cache we export."""
        return self._ids.next()

    def newRequestID(self) -> int:
        """A fresh id for a call we make."""
        self.currentRequestID += 1
        return self.currentRequestID

    def registerReference(self, object: Any) -> int:
        """Export ``object`` by reference (once more) and return the id the peer will use."""
        try:
            luid = self._exports.register(object, _puid(object))
        except TooManyReferences as error:
            raise self._overLimit(error) from None
        if self._registrationLog is not None:
            self._registrationLog.append((_REMOTE, luid))
        return luid

    def setNameForLocal(self, name: str | bytes, object: Any) -> None:
        """Publish ``object`` under a fixed name, such as ``root``; names are never released."""
        self._names[name.encode("utf-8") if isinstance(name, str) else name] = object

    def localObjectForID(self, luid: Any) -> Any:
        """The exported object the peer calls ``luid`` (an id or a name), or None."""
        made = self.__dict__  # (tables not made yet hold nothing: not made for a lookup)
        if type(luid) is int:
            exports = made.get("_exports")
            return None if exports is None else exports.lookup(luid)
        if isinstance(luid, str):
            luid = luid.encode("utf-8")
        names = made.get("_names")
        return names.get(luid) if names and isinstance(luid, bytes) else None

    @property
    def localObjects(self) -> dict[Any, Local]:
        """Every exported object and name, by id (a snapshot, for inspection and tests)."""
        snapshot: dict[Any, Local] = {name: Local(obj) for name, obj in self._names.items()}
        snapshot.update(self._exports.locals)
        return snapshot

    def remoteForName(self, name: str | bytes) -> RemoteReference:
        """A reference to the peer's object published under ``name`` (not reference-counted)."""
        luid = name.encode("utf-8") if isinstance(name, str) else name
        return RemoteReference(None, self, luid, 0)  # type: ignore[arg-type]

    def cachedRemotelyAs(self, instance: Any, incref: Any = 0) -> int | None:
        """The cache id the peer knows ``instance`` by, or None (counting a receipt if asked)."""
        luid = self._cacheExports.find(_puid(instance), bool(incref))
        if luid is not None and incref and self._registrationLog is not None:
            self._registrationLog.append((_CACHE, luid))
        return luid

    def cacheRemotely(self, instance: Any) -> int:
        """Record the first send of ``instance`` as a cache; return its new cache id."""
        perspective = self.serializingPerspective
        # The session that subclasses these tables is the observer's CallSender.
        observer = RemoteCacheObserver(cast(CallSender, self), instance, perspective)
        try:
            luid = self._cacheExports.add(instance, _puid(instance), perspective, observer)
        except TooManyReferences as error:
            raise self._overLimit(error) from None
        if self._registrationLog is not None:
            self._registrationLog.append((_CACHE, luid))
        return luid

    def remotelyCachedObserver(self, luid: int) -> RemoteCacheObserver:
        """The observer handed to ``getStateToCacheAndObserveFor`` for cache ``luid``."""
        entry = self._cacheExports.get(luid)
        if entry is None:
            raise KeyError(luid)
        return entry.observer  # type: ignore[no-any-return]

    def remotelyCachedForLUID(self, luid: Any) -> Any:
        """The master the peer caches as ``luid``."""
        entry = self._cacheExports.get(luid)
        if entry is None:
            raise KeyError(luid)
        return entry.object

    def cacheLocally(self, cid: int, instance: Any) -> None:
        """Track a replica that just arrived (again after ``setCopyableState``, to see
        a replaced ``__dict__``)."""
        entries = self._cacheImports.entries
        entry = entries.get(cid)
        if entry is not None and entry.ref is not None and entry.ref() is instance:
            entry.state = instance.__dict__
            return
        if type(cid) is not int or not 0 <= cid < MAX_REFERENCE_ID:
            raise InsecureJelly(f"cache id {quote(cid)} is not an int in range")
        if entry is None and len(entries) >= self._maxImportedCaches:
            raise InsecureJelly(
                f"the peer sent a replica of one more of its objects, but we already hold "
                f"{len(entries)} (Limits.maxImportedCaches); it must let some go first"
            )
        self._cacheImports.track(cid, instance)

    def cachedLocallyAs(self, cid: Any) -> Any:
        """A replica object for cache ``cid``."""
        replica = self._cacheImports.replica(cid)
        if replica is None:
            raise KeyError(cid)
        return replica

    # -- the PB forms jelly hands us (invoker.protocolUnjellyables) ----------------------

    def _unjellyRemote(self, unjellier: Any, jellyList: list[Any]) -> RemoteReference:
        if len(jellyList) != 2 or type(jellyList[1]) is not int:
            raise InsecureJelly(f"malformed remote reference {quote(jellyList)}")
        if not 0 <= jellyList[1] < MAX_REFERENCE_ID:  # beyond it, ids could share a hash
            raise InsecureJelly(f"remote reference id {quote(jellyList[1])} is out of range")
        luid: int = jellyList[1]
        perspective = self.unserializingPerspective

        def make() -> RemoteReference:
            return RemoteReference(perspective, self, luid, 1)  # type: ignore[arg-type]

        return self._imports.acquire(luid, make)

    def _unjellyLocal(self, unjellier: Any, jellyList: list[Any]) -> Any:
        if len(jellyList) != 2:
            raise InsecureJelly(f"malformed local reference {quote(jellyList)}")
        obj = self.localObjectForID(jellyList[1])
        if obj is None:
            raise InsecureJelly(
                f"the peer referred to our object {quote(jellyList[1])}, which it does not hold"
            )
        return obj

    def _unjellyCached(self, unjellier: Any, jellyList: list[Any]) -> Any:
        replica = self._cacheImports.acquire(jellyList[1]) if len(jellyList) == 2 else None
        if replica is None:
            raise InsecureJelly(f"the peer referred to an unknown cache {quote(jellyList)}")
        return replica

    def _unjellyLCache(self, unjellier: Any, jellyList: list[Any]) -> Any:
        entry = self._cacheExports.get(jellyList[1]) if len(jellyList) == 2 else None
        if entry is None:
            raise InsecureJelly(f"the peer returned an unknown cache of ours {quote(jellyList)}")
        return entry.object

    def _unjellyFailure(self, unjellier: Any, jellyList: list[Any]) -> Any:
        return blank(CopiedFailure).unjellyFor(unjellier, jellyList)
