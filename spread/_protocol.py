"""``Broker``: one PB connection, speaking Twisted's PB message set over banana.

Messages (each a list; ids are ints, names bytes):

    [version, 6]                                  both sides, once, on connect
    [message, req, object, name, answer?, args, kw]    call a referenced object
    [cachemessage, req, cache, name, answer?, args, kw] call observe_* on a replica
    [answer, req, result] / [error, req, failure]      the outcome of a call
    [decref, object] / [decache, cache]           the peer dropped one receipt
    [uncache, cache]                              the master forgot the cache
    [didNotUnderstand, kind]                      reply to an unknown kind

The tables behind ``remote``/``local``/``cache*`` live in ``spread._broker``;
this class moves messages between them, the user's objects and the wire.
Error contract: a malformed message drops the connection (``ProtocolError``,
logged); a failure inside a call, including a refused argument
(``InsecureJelly``) or an unencodable result, goes back to the caller as an
error answer and the connection keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread._broker import (
    MAX_BROKER_REFS,
    CacheRef,
    ExportedCaches,
    ExportedObjects,
    IdCounter,
    ImportedCaches,
    ImportedRef,
    ImportedReferences,
    ReleaseQueue,
)
from spread._errors import DeadReferenceError, Error, PBConnectionLost, ProtocolError
from spread._failures import (
    CopyableFailure,
    currentFailure,
    failure2Copyable,
    failureOf,
    isFailureOf,
    loggableFailure,
)
from spread._paging import PagingMixin
from spread._quote import exceptionText, quote
from spread._remote import RemoteReference
from spread._serialize import ObjectTables, _puid, jellyFlatTuple
from spread._wirenames import COPYABLE_FAILURE
from spread.banana import Banana
from spread.flavors import NoSuchMethod
from spread.jelly import InsecureJelly, Jellyable, globalSecurity
from spread.limits import Limits, withBrokerRefs

_log = Logger()

PROTOCOL_VERSION = 6
_EMPTY_KW: list[Any] = [b"dictionary"]  # read-only: banana never mutates what it sends


def quietFailure(error: BaseException) -> defer.Deferred[Any]:
    """A failed Deferred that is not reported if nobody looks at it.

    For calls whose callers may rightly ignore failure, such as a
    ``Cacheable`` updating an observer whose peer has just left.
    """
    d: defer.Deferred[Any] = defer.fail(error)
    _silence(d)
    return d


def _silence(d: defer.Deferred[Any]) -> None:
    # Deferred reports a failure left at the end of its chain when collected;
    # clearing the record is how Twisted itself marks one as consumed.
    info = getattr(d, "_debugInfo", None)
    if info is not None:
        info.failResult = None


class ReadThrottle:
    """Stops reading from a peer while our answers to it are piling up unsent.

    A peer that sends calls but never reads the answers would otherwise make us
    buffer answers without bound. Registered as the transport's streaming
    producer, the transport tells us when its write buffer is full; we then stop
    reading that peer's calls until the buffer drains. Other connections are not
    affected. (Paging takes the transport's producer slot while it runs.)
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.reader = _reader(transport)
        self.attached = False
        self.paused = False

    def attach(self) -> None:
        # On the socket itself, below any TLS layer: TLS would otherwise hold its close
        # back until we unregister, and a producer never needs to see decrypted bytes.
        reader = self.reader
        if reader is None or self.attached or not hasattr(reader, "registerProducer"):
            return
        try:
            reader.registerProducer(self, True)
        except RuntimeError:  # another producer holds the slot; go without
            return
        self.attached = True

    def detach(self) -> None:
        if not self.attached:
            return
        self.attached = False
        self.reader.unregisterProducer()
        if self.paused:
            self.paused = False
            self.reader.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        self.reader.pauseProducing()

    def resumeProducing(self) -> None:
        if getattr(self.reader, "disconnecting", False):
            # Closing: the socket finishes its close only once no producer is registered.
            self.paused = False
            self.detach()
            return
        self.paused = False
        self.reader.resumeProducing()

    def stopProducing(self) -> None:
        """The connection is closing; nothing of ours to stop."""


def _reader(transport: Any) -> Any:
    """The socket under ``transport`` (itself, or what a TLS wrapper sits on), if it can pause."""
    for _ in range(8):
        below = getattr(transport, "transport", None)
        if below is None:
            break
        transport = below
    return transport if hasattr(transport, "pauseProducing") else None


class Broker(ObjectTables, PagingMixin, Banana):
    """One PB connection: references, calls, copies and caches in both directions."""

    version = PROTOCOL_VERSION
    username = None
    factory: Any = None
    maxBrokerRefs = MAX_BROKER_REFS

    def __init__(
        self,
        isClient: bool = True,
        security: Any = globalSecurity,
        *,
        maxBrokerRefs: int | None = None,
        limits: Limits | None = None,
        reactor: Any = None,
    ) -> None:
        Banana.__init__(self, isClient)
        if maxBrokerRefs is None and type(self).maxBrokerRefs != MAX_BROKER_REFS:
            maxBrokerRefs = type(self).maxBrokerRefs  # a subclass's own default
        self.limits = withBrokerRefs(limits, maxBrokerRefs)  # Banana reads its limits here too
        limits = self.limits
        self._runningCalls = 0  # incoming calls whose answer is not ready yet
        self._throttle = ReadThrottle(None)
        PagingMixin.__init__(self)
        self.security = security
        self._reactor = reactor
        self.disconnected = 0
        self.disconnects: list[Callable[[], object]] = []
        self.failures: list[Callable[[], object]] = []
        self.connects: list[Callable[[], object]] | None = []
        self.currentRequestID = 0
        self.waitingForAnswers: dict[int, defer.Deferred[Any]] = {}
        self._quietRequests: set[int] = set()
        self.serializingPerspective: Any = None
        self.unserializingPerspective: Any = None
        self.jellyMethod: Any = None
        self.jellyArgs: Any = None
        self.jellyKw: Any = None
        ids = IdCounter()
        self._ids = ids
        self._releases = ReleaseQueue(self._scheduleFlush, self._sendReleases)
        self._exports = ExportedObjects(ids, limits.maxBrokerRefs)
        self._imports: ImportedReferences[RemoteReference] = ImportedReferences(
            self._releases.put
        )
        self._cacheExports = ExportedCaches(ids, limits.maxCachedObjects)
        self._cacheImports = ImportedCaches(self._releases.put)
        self._releaseCallbacks: dict[Any, list[Callable[[], object]]] = {}
        # Registrations made while jellying, so a message that cannot be sent
        # does not leave the peer's count of our objects one too high.
        self._registrationLog: list[tuple[bytes, int]] | None = None
        self._lastRegistrations: tuple[object, list[tuple[bytes, int]]] | None = None
        self.protocolUnjellyables: dict[bytes, Callable[[Any, list[Any]], object]] = {
            b"remote": self._unjellyRemote,
            b"local": self._unjellyLocal,
            b"cached": self._unjellyCached,
            b"lcache": self._unjellyLCache,
            COPYABLE_FAILURE: self._unjellyFailure,
        }
        self._handlers: dict[object, tuple[int, Callable[..., None]]] = {
            b"version": (1, self.proto_version),
            b"message": (6, self.proto_message),
            b"cachemessage": (6, self.proto_cachemessage),
            b"answer": (2, self.proto_answer),
            b"error": (2, self.proto_error),
            b"decref": (1, self.proto_decref),
            b"decache": (1, self.proto_decache),
            b"uncache": (1, self.proto_uncache),
            b"didNotUnderstand": (1, self.proto_didNotUnderstand),
        }
        self._fastJelly, self._fastUnjelly = self._probeFastPaths()

    # -- connection lifecycle ------------------------------------------------------------

    def _pagingStarts(self) -> None:
        self._throttle.detach()

    def _pagingEnded(self) -> None:
        self._throttle.attach()

    def connectionReady(self) -> None:
        """Banana chose a dialect: say our version and tell whoever waits for us."""
        # Watch our outgoing buffer from now on, not before: bytes have crossed both ways, so
        # a TLS handshake (which holds writes back while it reads) is over.
        self._throttle = ReadThrottle(self.transport)
        if not self.pageProducers:
            self._throttle.attach()
        self.sendEncoded([b"version", self.version])
        connects, self.connects = self.connects or [], None
        for notifier in connects:
            self._runNotifier(notifier, "a notifyOnConnect callback raised")
        if self.factory is not None:
            self.factory.clientConnectionMade(self)

    def connectionFailed(self) -> None:
        """Run ``notifyOnFail`` callbacks (kept for Twisted compatibility)."""
        failures, self.failures = self.failures, []
        for notifier in failures:
            self._runNotifier(notifier, "a notifyOnFail callback raised")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail every pending call, stop every observer, notify, and free every table."""
        if self.disconnected:
            return
        self.disconnected = 1
        pending, self.waitingForAnswers = self.waitingForAnswers, {}
        quiet, self._quietRequests = self._quietRequests, set()
        for request_id, d in pending.items():
            d.errback(failureOf(PBConnectionLost(reason)))
            if request_id in quiet:
                _silence(d)
        for entry in self._cacheExports.drain():
            self._stopObserving(entry.object, entry.perspective, entry.observer)
        notifiers, self.disconnects = self.disconnects, []
        for notifier in notifiers:
            self._runNotifier(notifier, "a notifyOnDisconnect callback raised")
        self._exports.clear()
        self._imports.clear()
        self._cacheImports.clear()
        self._releaseCallbacks.clear()
        self._lastRegistrations = None
        self.stopPaging()
        Banana.connectionLost(self, reason)
        lost = getattr(self.factory, "brokerDisconnected", None)
        if lost is not None:
            lost(self, reason)

    def notifyOnDisconnect(self, notifier: Callable[[], object]) -> None:
        """Call ``notifier()`` once when this connection closes (at once if it has)."""
        if self.disconnected:
            self._runNotifier(notifier, "a notifyOnDisconnect callback raised")
        else:
            self.disconnects.append(notifier)

    def dontNotifyOnDisconnect(self, notifier: Callable[[], object]) -> None:
        """Forget a ``notifyOnDisconnect`` callback (unknown ones are ignored)."""
        if notifier in self.disconnects:
            self.disconnects.remove(notifier)

    def notifyOnFail(self, notifier: Callable[[], object]) -> None:
        """Call ``notifier()`` if the connection fails before it is made."""
        self.failures.append(notifier)

    def notifyOnConnect(self, notifier: Callable[[], object]) -> None:
        """Call ``notifier()`` when the connection is ready (at once if it is)."""
        if self.connects is None:
            self._runNotifier(notifier, "a notifyOnConnect callback raised")
        else:
            self.connects.append(notifier)

    def setReferenceLimit(self, limit: int) -> None:
        """How many objects (and, separately, caches) the peer may hold of ours at once."""
        self._exports.limit = self._cacheExports.limit = limit

    def notifyOnRelease(self, obj: Any, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once when the peer releases its last reference to ``obj``."""
        self._releaseCallbacks.setdefault(_puid(obj), []).append(callback)

    @staticmethod
    def _runNotifier(notifier: Callable[[], object], what: str) -> None:
        try:
            notifier()
        except Exception:
            _log.failure(what)

    # -- receiving ------------------------------------------------------------------------

    def expressionReceived(self, sexp: object) -> None:
        """Dispatch one message; a malformed one ends the connection."""
        try:
            if type(sexp) is not list or not sexp:
                raise ProtocolError(f"a PB message must be a non-empty list, not {quote(sexp)}")
            kind = sexp[0]
            handler = self._handlers.get(kind) if type(kind) is bytes else None
            if handler is None:
                self._didNotUnderstand(sexp[0])
                return
            arity, method = handler
            if len(sexp) != arity + 1:
                raise ProtocolError(
                    f"{sexp[0]!r} takes {arity} values, got {len(sexp) - 1}: {quote(sexp)}"
                )
            method(*sexp[1:])
        except ProtocolError as e:
            _log.error("dropping connection: peer broke the PB protocol: {error}", error=e)
            self._dropConnection()
        except Exception:
            _log.failure("bug in spread: failed handling a PB message; please report it")

    def _dropConnection(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.loseConnection()

    def _didNotUnderstand(self, kind: object) -> None:
        if type(kind) not in (bytes, int, float):
            raise ProtocolError(f"a PB message kind must be a string, not {quote(kind)}")
        _log.info("peer sent unknown PB message kind {kind!r}; replying so", kind=kind)
        self.sendEncoded([b"didNotUnderstand", kind])

    def proto_version(self, vnum: object) -> None:
        """Check the peer speaks our PB version; anything else ends the connection."""
        if vnum != self.version:
            raise ProtocolError(f"peer speaks PB version {quote(vnum)}, we speak {self.version}")

    def proto_didNotUnderstand(self, command: object) -> None:
        """The peer did not know a message kind we sent: note it and carry on."""
        _log.info("peer did not understand PB message kind {command!r}", command=command)

    def proto_message(
        self, requestID: object, objectID: object, message: object, answerRequired: object,
        netArgs: object, netKw: object,
    ) -> None:
        """Call a method of one of our referenced objects."""
        self._recvMessage(
            self._exports.lookup, requestID, objectID, message, answerRequired, netArgs, netKw
        )

    def proto_cachemessage(
        self, requestID: object, objectID: object, message: object, answerRequired: object,
        netArgs: object, netKw: object,
    ) -> None:
        """Call an ``observe_*`` method of one of our cache replicas."""
        self._recvMessage(
            self._cacheImports.replica, requestID, objectID, message, answerRequired, netArgs,
            netKw,
        )

    def _recvMessage(
        self, find: Callable[[object], Any], requestID: object, objectID: object,
        message: object, answerRequired: object, netArgs: object, netKw: object,
    ) -> None:
        if type(requestID) is not int:
            raise ProtocolError(f"a request id must be an int, not {quote(requestID)}")
        if self._runningCalls >= self.limits.maxPendingCalls:
            self._refuseCall(requestID, answerRequired)
            return
        try:
            if type(message) is bytes:
                message = message.decode("utf-8")
            elif type(message) is not str:
                raise Error(f"a method name must be a string, not {quote(message)}")
            target = find(objectID)
            if target is None:
                raise Error(f"Invalid Object ID {quote(objectID)}")
            netResult = target.remoteMessageReceived(self, message, netArgs, netKw)
        except Exception:
            fail = currentFailure()
            self._logCallFailure(fail)
            if answerRequired:
                self._sendError(fail, requestID)
            return
        if isinstance(netResult, defer.Deferred):
            if not netResult.called:
                self._runningCalls += 1
                netResult.addBoth(self._callFinished)
            if answerRequired:
                netResult.addCallbacks(
                    self._sendAnswer, self._sendFailureOrError,
                    callbackArgs=(requestID,), errbackArgs=(requestID,),
                )
            else:
                netResult.addErrback(self._logCallFailure)
        elif answerRequired:
            self._sendAnswer(netResult, requestID)

    def _callFinished(self, result: object) -> object:
        self._runningCalls -= 1
        return result

    def _refuseCall(self, requestID: int, answerRequired: object) -> None:
        """Too many of this peer's calls are still running: fail this one at once."""
        limit = self.limits.maxPendingCalls
        _log.warn(
            "refused a call: the peer already has {limit} calls running", limit=limit
        )
        if answerRequired:
            error = Error(
                f"the server is already running {limit} calls from this connection; wait for "
                "some answers before calling again (the limit is Limits.maxPendingCalls)"
            )
            self._sendError(failureOf(error), requestID)

    def _logCallFailure(self, fail: Failure) -> None:
        if isFailureOf(fail, Error):
            return
        if isFailureOf(fail, NoSuchMethod, InsecureJelly):
            _log.info("refused a call from the peer: {error}", error=exceptionText(fail.value))
            return
        _log.failure("Peer will receive following PB traceback:", loggableFailure(fail))

    def proto_answer(self, requestID: object, netResult: object) -> None:
        """The outcome of one of our calls: fire its Deferred."""
        d = self.waitingForAnswers.pop(requestID, None) if type(requestID) is int else None
        if d is None or self._quietRequests:
            d = self._popRequest(requestID, d)
            if d is None:
                return
        try:
            result = self.unserialize(netResult)
        except Exception:
            d.errback()
            return
        d.callback(result)

    def proto_error(self, requestID: object, fail: object) -> None:
        """One of our calls failed remotely: errback its Deferred with the copied failure."""
        d = self._popRequest(requestID)
        if d is None:
            return
        try:
            error = self.unserialize(fail)
        except Exception:
            d.errback()
            return
        if isinstance(error, (Failure, BaseException)):
            d.errback(error)
        else:
            d.errback(Error(f"the peer reported an error as {quote(error)}"))

    def _popRequest(
        self, requestID: object, popped: defer.Deferred[Any] | None = None
    ) -> defer.Deferred[Any] | None:
        d = popped
        if d is None and type(requestID) is int:
            d = self.waitingForAnswers.pop(requestID, None)
        if d is None:
            _log.info("ignoring answer to unknown request {id!r}", id=requestID)
            return None
        if self._quietRequests:
            self._quietRequests.discard(requestID)
        return d

    def proto_decref(self, objectID: object) -> None:
        """The peer dropped one receipt of one of our objects."""
        released = self._exports.release(objectID, _puid)
        if released is not None:
            self._released(released)

    def proto_decache(self, objectID: object) -> None:
        """The peer dropped one receipt of a cache; at zero, stop observing and say uncache."""
        entry = self._cacheExports.release(objectID, _puid)
        if entry is None:
            return
        self._stopObserving(entry.object, entry.perspective, entry.observer)
        self.sendEncoded([b"uncache", objectID])

    def proto_uncache(self, objectID: object) -> None:
        """The master's side forgot a cache: forget its state too."""
        entry = self._cacheImports.forget(objectID)
        if entry is not None:
            entry.state["broker"] = None

    # -- sending --------------------------------------------------------------------------

    def sendCall(self, *exp: Any) -> None:
        """Send one message (Twisted's name)."""
        self.sendEncoded(list(exp))

    def _sendMessage(
        self, prefix: bytes, perspective: Any, objectID: Any, message: bytes,
        args: tuple[Any, ...], kw: dict[str, Any], quiet: bool = False,
    ) -> defer.Deferred[Any]:
        """Send a call and return the Deferred for its answer; never raises."""
        if self.disconnected:
            return quietFailure(DeadReferenceError("Calling Stale Broker")) if quiet else (
                defer.fail(DeadReferenceError("Calling Stale Broker"))
            )
        answerRequired = 1
        try:
            if kw:
                if "pbanswer" in kw:
                    kw = dict(kw)
                    answerRequired = int(bool(kw.pop("pbanswer")))
                netKw = self.serialize(kw, perspective, message) if kw else _EMPTY_KW
                kw_log = self._takeRegistrations(netKw)
            else:
                netKw, kw_log = _EMPTY_KW, None
            # The hot path: a tuple of plain values needs no jelly machinery.
            netArgs = jellyFlatTuple(args) if self._fastJelly else None
            if netArgs is None:
                netArgs = self.serialize(args, perspective, message)
            args_log = (
                None if self._lastRegistrations is None else self._takeRegistrations(netArgs)
            )
        except Exception:
            if kw:
                self._rollback(self._takeRegistrations(None))
            return defer.fail()
        self.currentRequestID = requestID = self.currentRequestID + 1
        kind = b"message" if not prefix else prefix + b"message"
        try:
            self.sendEncoded([kind, requestID, objectID, message, answerRequired, netArgs, netKw])
        except Exception:
            self._rollback(args_log)
            self._rollback(kw_log)
            return defer.fail()
        if not answerRequired:
            return defer.succeed(None)
        d: defer.Deferred[Any] = defer.Deferred()
        self.waitingForAnswers[requestID] = d
        if quiet:
            self._quietRequests.add(requestID)
        return d

    def _sendAnswer(self, netResult: Any, requestID: int) -> None:
        try:
            self.sendEncoded([b"answer", requestID, netResult])
        except Exception:
            self._rollback(self._takeRegistrations(netResult))
            self._sendError(currentFailure(), requestID)

    def _sendFailureOrError(self, fail: Failure, requestID: int) -> None:
        self._logCallFailure(fail)
        self._sendError(fail, requestID)

    def _sendError(self, fail: Failure, requestID: int) -> None:
        """Send a failure as Twisted does: the exception itself if it may travel as it is
        (Jellyable, or its class allowed), else as a CopyableFailure."""
        unsafe = getattr(self.factory, "unsafeTracebacks", False)
        value = fail.value
        payload: Any
        if isinstance(value, Jellyable) or self._classAllowed(type(value)):
            payload = value
        elif isinstance(fail, CopyableFailure):
            payload = fail
            payload.unsafeTracebacks = unsafe
        else:
            payload = failure2Copyable(fail, unsafe)
        try:
            self.sendEncoded([b"error", requestID, self.serialize(payload)])
        except Exception:
            self._lastRegistrations = None
            self._sendUnsendableError(currentFailure(), fail, requestID)

    def _sendUnsendableError(self, problem: Failure, original: Failure, requestID: int) -> None:
        """The error itself could not be sent (too large, unjellyable): send why instead."""
        message = (
            f"{original.type.__name__ if isinstance(original.type, type) else original.type!r}"
            f" could not be sent: {exceptionText(problem.value)}"
        )[:4096]
        substitute = failure2Copyable(failureOf(Error(message)), False)
        try:
            self.sendEncoded([b"error", requestID, self.serialize(substitute)])
        except Exception:
            _log.failure("could not send an error answer to the peer")

    def _classAllowed(self, cls: type) -> bool:
        check = getattr(self.security, "isClassAllowed", None)
        return bool(check(cls)) if check is not None else False

    def sendDecRef(self, objectID: Any) -> None:
        """Tell the peer we dropped one receipt of its object."""
        self.sendEncoded([b"decref", objectID])

    def decCacheRef(self, objectID: Any) -> None:
        """Tell the peer we dropped one receipt of its cache."""
        self.sendEncoded([b"decache", objectID])

    # -- releases (from finalizers, via the reactor) --------------------------------------

    def _scheduleFlush(self, flush: Callable[[], None]) -> None:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        reactor.callFromThread(flush)

    def _sendReleases(self, items: list[Any]) -> None:
        """Send the decref/decache messages owed for proxies collected since the last turn."""
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
        """Send owed releases now rather than on the next reactor turn (for tests and shutdown)."""
        self._releases.flush()
