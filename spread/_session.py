"""``PBSession``: the PB conversation of one connection, with no I/O of its own.

Messages (each a list; ids are ints, names bytes):

    [version, 6]                                  both sides, once, on connect
    [message, req, object, name, answer?, args, kw]    call a referenced object
    [cachemessage, req, cache, name, answer?, args, kw] call observe_* on a replica
    [answer, req, result] / [error, req, failure]      the outcome of a call
    [decref, object] / [decache, cache]           the peer dropped one receipt
    [uncache, cache]                              the master forgot the cache
    [didNotUnderstand, kind]                      reply to an unknown kind

S-expressions come in through ``expressionReceived`` and go out through one
hook, ``sendEncoded``; releases of collected proxies are drained when the
``schedule`` hook says so. The session imports no reactor and no transport:
``spread._protocol.Broker`` puts it on a Twisted connection, and tests drive
it with plain function calls (``tests/test_session.py``).

Error contract: a malformed message drops the connection (``ProtocolError``,
logged, then the ``drop`` hook); a failure inside a call, including a refused
argument (``InsecureJelly``) or an unencodable result, goes back to the caller
as an error answer and the connection keeps serving.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread._broker import MAX_BROKER_REFS
from spread._calls import quietFailure, silence
from spread._errors import DeadReferenceError, Error, PBConnectionLost, ProtocolError
from spread._failures import (
    CopyableFailure,
    currentFailure,
    failure2Copyable,
    failureOf,
    isFailureOf,
    loggableFailure,
)
from spread._lazy import perConnection
from spread._quote import exceptionText, quote
from spread._serialize import ObjectTables, Registrations, _puid, jellyFlatTuple
from spread._wirenames import COPYABLE_FAILURE
from spread.jelly import Jellyable, globalSecurity
from spread.limits import Limits, withBrokerRefs

_log = Logger()

PROTOCOL_VERSION = 6
_EMPTY_KW: list[Any] = [b"dictionary"]  # read-only: banana never mutates what it sends
_IntSet = set[int]  # (made once: a subscript in a hot path builds a new alias each time)
_STALE = "Calling Stale Broker"
_NONE: frozenset[int] = frozenset()


# Each message kind: how many values follow it, and the method that takes them (looked up
# on the session for each message, so subclasses and instances may override it, as in Twisted).
_HANDLERS: dict[object, tuple[int, str]] = {
    b"version": (1, "proto_version"),
    b"message": (6, "proto_message"),
    b"cachemessage": (6, "proto_cachemessage"),
    b"answer": (2, "proto_answer"),
    b"error": (2, "proto_error"),
    b"decref": (1, "proto_decref"),
    b"decache": (1, "proto_decache"),
    b"uncache": (1, "proto_uncache"),
    b"didNotUnderstand": (1, "proto_didNotUnderstand"),
}

# What the spread dialect adds; in the pb dialect these kinds are unknown, as to Twisted.
_SPREAD_HANDLERS: dict[object, tuple[int, str]] = {
    b"cancel": (1, "proto_cancel"),
    b"ping": (0, "proto_ping"),
    b"pong": (0, "proto_pong"),
}


class SessionState(enum.Enum):
    """Where a PB conversation is in its life."""

    NEGOTIATING = "negotiating"
    """Connected; the dialect and version are not settled yet."""
    READY = "ready"
    """Calls may flow both ways."""
    CLOSED = "closed"
    """The connection is gone; every call fails with ``DeadReferenceError``."""


_NEGOTIATING, _READY, _CLOSED = SessionState.NEGOTIATING, SessionState.READY, SessionState.CLOSED
# (plain globals: reading an Enum member from its class costs a descriptor call each time)
_CALL_KINDS = {b"": b"message", b"cache": b"cachemessage"}

# What a jellied answer usually is: never a Deferred, checked without Deferred's slower
# isinstance (its class is an ABC).
_SEXP_TYPES = frozenset({list, bytes, int, float, str})


class _Answer(defer.Deferred[Any]):
    """The Deferred of one of our calls. It carries its session and request id for its
    canceller, rather than a closure made for each call: a call waiting for its answer is
    then two objects for the garbage collector, not four. (Named ``Deferred`` below, so that
    its repr is Twisted's.)"""

    __slots__ = ("quiet", "requestID", "session")

    quiet: bool
    requestID: int
    session: PBSession


_Answer.__name__ = _Answer.__qualname__ = "Deferred"


def _cancelAnswer(d: defer.Deferred[Any]) -> None:
    answer = cast(_Answer, d)
    answer.session._cancelRequest(answer.requestID, answer)


def _sessionsForm(method: str) -> Callable[[Any, list[Any]], object]:
    """A form read by the session's ``method``, the session being the unjellier's invoker:
    one function for every connection, where bound methods would be five objects each."""

    def form(unjellier: Any, jellyList: list[Any]) -> object:
        return getattr(unjellier.invoker, method)(unjellier, jellyList)

    return form


_PROTOCOL_FORMS = {
    b"remote": _sessionsForm("_unjellyRemote"),
    b"local": _sessionsForm("_unjellyLocal"),
    b"cached": _sessionsForm("_unjellyCached"),
    b"lcache": _sessionsForm("_unjellyLCache"),
    COPYABLE_FAILURE: _sessionsForm("_unjellyFailure"),
}


class PBSession(ObjectTables):
    """References, calls, copies and caches in both directions over one connection.

    ``send(sexp)`` writes one s-expression to the peer, ``schedule(flush)`` runs
    ``flush()`` soon on the session's thread (it may be called from a finalizer),
    ``drop()`` ends a connection whose peer broke the protocol. Subclasses such as
    ``Broker`` override ``sendEncoded``, ``_scheduleFlush`` and ``_dropConnection``
    instead of passing them.
    """

    version = PROTOCOL_VERSION
    username = None
    factory: Any = None
    maxBrokerRefs = MAX_BROKER_REFS
    callTimeout: float | None = None
    """Seconds each call of ours may wait for its answer (None: for ever); past it the call
    fails with ``TimeoutError`` and, in the spread dialect, the callee is cancelled. Set it
    with the factories' ``callTimeout=``."""
    # Where a session starts (class attributes: set on the instance when they change).
    state = SessionState.NEGOTIATING
    _send: Callable[[object], None] | None = None
    _schedule: Callable[[Callable[[], None]], object] | None = None
    _drop: Callable[[], None] | None = None
    _runningCalls = 0  # incoming calls whose answer is not ready yet
    # Request ids the caller cancelled (no answer is sent): usually none, so one shared
    # empty set until the first.
    _cancelled: set[int] | frozenset[int] = _NONE
    _quietCount = 0
    """Our ``quiet`` calls (cache updates) still waiting for their answers."""
    _protocolForms: dict[bytes, Callable[[Any, list[Any]], object]] | None = None

    spreadDialect = False
    """True when both sides chose the ``spread`` dialect (both are spread): then a
    cancelled call is cancelled in the callee too, and ``Versioned`` copies carry their
    versions. With a Twisted peer it stays False and the wire is exactly Twisted's."""

    def __init__(
        self,
        security: Any = globalSecurity,
        *,
        maxBrokerRefs: int | None = None,
        limits: Limits | None = None,
        send: Callable[[object], None] | None = None,
        schedule: Callable[[Callable[[], None]], object] | None = None,
        drop: Callable[[], None] | None = None,
    ) -> None:
        if maxBrokerRefs is None and type(self).maxBrokerRefs != MAX_BROKER_REFS:
            maxBrokerRefs = type(self).maxBrokerRefs  # a subclass's own default
        self.limits = withBrokerRefs(limits, maxBrokerRefs)
        if send is not None:
            self._send = send
        if schedule is not None:
            self._schedule = schedule
        if drop is not None:
            self._drop = drop
        self._answering: dict[int, defer.Deferred[Any]] = {}  # those calls, by request id
        self.waitingForAnswers: dict[int, _Answer] = {}
        ObjectTables.__init__(self, security, self.limits)

    @property
    def protocolUnjellyables(self) -> dict[bytes, Callable[[Any, list[Any]], object]]:
        """The jelly forms this session reads itself (references, caches, copied failures).

        Made on first use: an idle connection (most of a large server's) never needs it.
        """
        forms = self._protocolForms
        if forms is None:
            forms = self._protocolForms = dict(_PROTOCOL_FORMS)
        return forms

    @protocolUnjellyables.setter
    def protocolUnjellyables(self, forms: dict[bytes, Callable[[Any, list[Any]], object]]) -> None:
        self._protocolForms = forms
    # -- the hooks (a Broker overrides these; a bare session is given callables) ----------

    def sendEncoded(self, obj: object) -> None:
        """Send one s-expression to the peer."""
        if self._send is None:
            raise NotImplementedError("give PBSession a send= callable, or override sendEncoded")
        self._send(obj)

    def _scheduleFlush(self, flush: Callable[[], None]) -> None:
        if self._schedule is not None:
            self._schedule(flush)

    def _timeoutClock(self) -> Any:
        """What ``callTimeout`` schedules on (a reactor); None: a bare session has no clock."""
        return None

    def _dropConnection(self) -> None:
        """The peer broke the protocol: end the connection."""
        if self._drop is not None:
            self._drop()

    # -- lifecycle ------------------------------------------------------------------------

    # Callbacks for notifyOnDisconnect, notifyOnFail and notifyOnConnect (``connects`` is None
    # once the connection is ready), by Twisted's names; made on first use (see spread._lazy).

    @perConnection
    def disconnects(self) -> list[Callable[[], object]]:
        return []

    @perConnection
    def failures(self) -> list[Callable[[], object]]:
        return []

    @perConnection
    def connects(self) -> list[Callable[[], object]] | None:
        return []

    @property
    def disconnected(self) -> int:
        """1 once the connection has closed, else 0 (Twisted's flag, read-only here)."""
        return 1 if self.state is _CLOSED else 0

    def connectionReady(self) -> None:
        """The dialect is settled: say our version and tell whoever waits for us."""
        if self.state is not _NEGOTIATING:
            return
        self.state = _READY
        self.sendEncoded([b"version", self.version])
        connects = self.__dict__.get("connects") or ()
        self.connects = None
        for notifier in connects:
            self._runNotifier(notifier, "a notifyOnConnect callback raised")

    def connectionFailed(self) -> None:
        """Run ``notifyOnFail`` callbacks (kept for Twisted compatibility)."""
        for notifier in self.__dict__.pop("failures", ()):
            self._runNotifier(notifier, "a notifyOnFail callback raised")

    def connectionLost(self, reason: Failure) -> None:
        """Fail every pending call, stop every observer, notify, and free every table."""
        if self.state is _CLOSED:
            return
        self.state = _CLOSED
        pending, self.waitingForAnswers = self.waitingForAnswers, {}
        self._quietCount = 0
        for d in pending.values():
            d.errback(failureOf(PBConnectionLost(reason)))
            if d.quiet:
                silence(d)
        for entry in self._cacheExports.drain() if "_cacheExports" in vars(self) else ():
            self._stopObserving(entry.object, entry.perspective, entry.observer)
        for notifier in self.__dict__.pop("disconnects", ()):
            self._runNotifier(notifier, "a notifyOnDisconnect callback raised")
        self._clearTables()
        # Bound methods of ourselves: without them a closed session is freed at once by
        # reference counting, not at the next cyclic collection.
        self.protocolUnjellyables = {}

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
            handler = _HANDLERS.get(kind) if type(kind) is bytes else None
            if handler is None and self.spreadDialect and type(kind) is bytes:
                handler = _SPREAD_HANDLERS.get(kind)
            if handler is None:
                self._didNotUnderstand(sexp[0])
                return
            arity, name = handler
            if len(sexp) != arity + 1:
                raise ProtocolError(
                    f"{sexp[0]!r} takes {arity} values, got {len(sexp) - 1}: {quote(sexp)}"
                )
            getattr(self, name)(*sexp[1:])
        except ProtocolError as e:
            _log.error("dropping connection: peer broke the PB protocol: {error}", error=e)
            self._dropConnection()
        except Exception:
            _log.failure("bug in spread: failed handling a PB message; please report it")

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
            self.localObjectForID, requestID, objectID, message, answerRequired, netArgs, netKw
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
        exported: Registrations = []  # what the answer exports, to take back if unsent
        try:
            if type(message) is bytes:
                message = message.decode("utf-8")
            elif type(message) is not str:
                raise Error(f"a method name must be a string, not {quote(message)}")
            target = find(objectID)
            if target is None:
                raise Error(f"Invalid Object ID {quote(objectID)}")
            outer, self._registrationLog = self._registrationLog, exported
            try:
                netResult = target.remoteMessageReceived(self, message, netArgs, netKw)
            finally:
                self._registrationLog = outer
        except Exception:
            self._callRaised(exported, requestID, answerRequired)
            return
        if type(netResult) not in _SEXP_TYPES and isinstance(netResult, defer.Deferred):
            if not netResult.called:
                self._runningCalls += 1
                if answerRequired:
                    self._answering[requestID] = netResult
                netResult.addBoth(self._callFinished, requestID)
            if answerRequired:
                netResult.addCallbacks(
                    self._sendAnswer, self._sendFailureOrError,
                    callbackArgs=(requestID, exported), errbackArgs=(requestID,),
                )
            else:
                netResult.addErrback(self._logCallFailure)
        elif answerRequired:
            self._sendAnswer(netResult, requestID, exported)

    def _callRaised(self, exported: Registrations, requestID: int, answerRequired: object) -> None:
        # The failure lives in this frame, not in _recvMessage's: that frame is in its
        # traceback, and a local there holding the failure would make a reference cycle,
        # leaving every failed call's frames to the cyclic garbage collector.
        self.rollback(exported)
        fail = currentFailure()
        self._logCallFailure(fail)
        if answerRequired:
            self._sendError(fail, requestID)

    def _callFinished(self, result: object, requestID: int) -> object:
        self._runningCalls -= 1
        self._answering.pop(requestID, None)
        return result

    def proto_cancel(self, requestID: object) -> None:
        """The caller cancelled its call (spread dialect): cancel what the method returned.

        Its canceller runs, or a coroutine sees ``CancelledError`` at its ``await``; the
        caller has stopped waiting, so no answer is sent.
        """
        running = self._answering.pop(requestID, None) if type(requestID) is int else None
        if running is None:
            return  # answered already, or never asked: the answer crossed the cancel
        if not self._cancelled:
            self._cancelled = set()
        cast(_IntSet, self._cancelled).add(cast(int, requestID))
        running.cancel()

    def proto_ping(self) -> None:
        """A spread peer checks that we are alive: answer from the reactor, at once."""
        self.sendEncoded([b"pong"])

    def proto_pong(self) -> None:
        """The answer to our ping (its arrival is what counts, see ``spread._keepalive``)."""

    def _cancelRequest(self, requestID: int, d: _Answer) -> None:
        """Our caller cancelled ``d``: stop waiting, and in the spread dialect tell the peer.

        ``d`` then fails with ``CancelledError``; an answer arriving later is dropped.
        """
        if self.waitingForAnswers.pop(requestID, None) is None:
            return
        if d.quiet:
            self._quietCount -= 1
        if self.spreadDialect and self.state is _READY:
            try:
                self.sendEncoded([b"cancel", requestID])
            except Exception:
                _log.failure("could not send a cancel")

    def _refuseCall(self, requestID: int, answerRequired: object) -> None:
        """Too many of this peer's calls are still running: fail this one at once."""
        limit = self.limits.maxPendingCalls
        _log.warn("refused a call: the peer already has {limit} calls running", limit=limit)
        if answerRequired:
            error = Error(
                f"the server is already running {limit} calls from this connection; wait for "
                "some answers before calling again (the limit is Limits.maxPendingCalls)"
            )
            self._sendError(failureOf(error), requestID)

    def _logCallFailure(self, fail: Failure) -> None:
        # As Twisted: a pb.Error is the method's answer; anything else (a missing method
        # and a refused argument too) is logged, bounded, as the error it is.
        if isFailureOf(fail, Error):
            return
        _log.failure("Peer will receive following PB traceback:", loggableFailure(fail))

    def proto_answer(self, requestID: object, netResult: object) -> None:
        """The outcome of one of our calls: fire its Deferred."""
        d = self.waitingForAnswers.pop(requestID, None) if type(requestID) is int else None
        if d is None or d.quiet:
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

    def _popRequest(self, requestID: object, popped: _Answer | None = None) -> _Answer | None:
        d = popped
        if d is None and type(requestID) is int:
            d = self.waitingForAnswers.pop(requestID, None)
        if d is None:
            _log.info("ignoring answer to unknown request {id!r}", id=requestID)
            return None
        if d.quiet:
            self._quietCount -= 1
        return d

    def proto_decref(self, objectID: object) -> None:
        """The peer dropped one receipt of one of our objects."""
        exports = self.__dict__.get("_exports")  # (none made: the peer holds none of ours)
        released = None if exports is None else exports.release(objectID, _puid)
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

    def sendRemoteCall(
        self, prefix: bytes, perspective: Any, objectID: Any, message: bytes,
        args: tuple[Any, ...], kw: dict[str, Any], quiet: bool = False,
        shared: dict[Any, Any] | None = None,
    ) -> defer.Deferred[Any]:
        """Send a call and return the Deferred for its answer.

        ``prefix`` is ``b""`` for a referenced object, ``b"cache"`` for a replica.
        Raises where Twisted raises: ``DeadReferenceError`` once the connection has
        closed, and the encoder's ``BananaError`` for a message it cannot send (so
        ``try: ref.callRemote(...) except DeadReferenceError:`` works as in Twisted);
        a value the serializer refuses fails the Deferred instead. A ``quiet`` call (a
        master updating its replicas) never raises, and its failures are not logged if
        nobody looks at them. Calls given one ``shared`` dict (``flavors.broadcast``)
        serialize their arguments once per kind of connection that can share them.
        """
        if self.state is _CLOSED:
            if not quiet:
                raise DeadReferenceError(_STALE)
            return quietFailure(DeadReferenceError(_STALE))
        if quiet and self._quietCount >= self.limits.maxPendingCalls:
            # A replica's peer that leaves this many updates unanswered is not keeping up:
            # drop it rather than queue updates for it without end.
            _log.warn(
                "dropping a peer that leaves {n} cache updates unanswered",
                n=self._quietCount,
            )
            self._dropConnection()
            return quietFailure(DeadReferenceError("the peer stopped answering cache updates"))
        answerRequired = 1
        if kw and "pbanswer" in kw:
            kw = dict(kw)
            answerRequired = int(bool(kw.pop("pbanswer")))
        key = None
        if shared is not None:
            # What jelly makes of the arguments depends on these alone, as long as it
            # exported nothing and made nothing connection-specific (checked below).
            key = (type(self), id(self.security), self.spreadDialect, self._fastJelly)
            hit = shared.get(key)
            if hit is not None:
                return self._sendCall(
                    prefix, objectID, message, answerRequired, hit[0], hit[1], None, None,
                    quiet,
                )
        specific = self._specific
        netKw: Any = _EMPTY_KW
        kw_log: Registrations | None = None
        try:
            if kw:
                netKw, kw_log = self.serializeLogged(kw, perspective, message)
        except Exception:
            return defer.fail()
        # The hot path: a tuple of plain values needs no jelly machinery.
        netArgs = jellyFlatTuple(args) if self._fastJelly else None
        args_log: Registrations | None = None
        if netArgs is None:
            try:
                netArgs, args_log = self.serializeLogged(args, perspective, message)
            except Exception:
                self.rollback(kw_log)
                return defer.fail()
        if shared is not None and not args_log and not kw_log and self._specific == specific:
            shared[key] = (netArgs, netKw, self.security)  # (holding what the id names)
        return self._sendCall(
            prefix, objectID, message, answerRequired, netArgs, netKw, args_log, kw_log, quiet
        )

    def _sendCall(
        self, prefix: bytes, objectID: Any, message: bytes, answerRequired: int, netArgs: Any,
        netKw: Any, args_log: Registrations | None, kw_log: Registrations | None, quiet: bool,
    ) -> defer.Deferred[Any]:
        self.currentRequestID = requestID = self.currentRequestID + 1
        kind = _CALL_KINDS.get(prefix) or prefix + b"message"
        try:
            self.sendEncoded([kind, requestID, objectID, message, answerRequired, netArgs, netKw])
        except Exception as e:
            self.rollback(args_log)
            self.rollback(kw_log)
            if not quiet:
                raise
            return quietFailure(e)
        if not answerRequired:
            return defer.succeed(None)
        d = _Answer(_cancelAnswer)
        d.session, d.requestID, d.quiet = self, requestID, quiet
        self.waitingForAnswers[requestID] = d
        if self.callTimeout is not None and not quiet:
            clock = self._timeoutClock()
            if clock is not None:
                d.addTimeout(self.callTimeout, clock)
        if quiet:
            self._quietCount += 1
        return d

    def _sendAnswer(self, netResult: Any, requestID: int, exported: Registrations) -> None:
        if self._cancelled and requestID in self._cancelled:
            # (answered despite the cancel: still sent)
            cast(_IntSet, self._cancelled).discard(requestID)
        try:
            self.sendEncoded([b"answer", requestID, netResult])
        except Exception:
            self.rollback(exported)
            self._sendError(currentFailure(), requestID)

    def _sendFailureOrError(self, fail: Failure, requestID: int) -> None:
        if self._cancelled and requestID in self._cancelled:
            cast(_IntSet, self._cancelled).discard(requestID)
            if isFailureOf(fail, defer.CancelledError):
                return  # the caller cancelled it: nobody waits for this
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
        exported: Registrations = []
        try:
            netFailure, exported = self.serializeLogged(payload)
            self.sendEncoded([b"error", requestID, netFailure])
        except Exception:
            self.rollback(exported)
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
