"""Failures that cross the wire: ``CopyableFailure`` going out, ``CopiedFailure`` coming in.

On the wire a failure is Twisted's ``twisted.spread.pb.CopyableFailure`` with a
state dictionary (count, type, value, captureVars, tb, unsafeTracebacks,
parents, frames, stack, traceback), so Twisted peers read ours and we read
theirs. Unlike Twisted we never put stack frames in it: file names and line
numbers stay home unless the factory sets ``unsafeTracebacks``, and then they
travel only as the formatted ``traceback`` text.
"""

from __future__ import annotations

from typing import IO, Any, NoReturn

from twisted.python import failure, log
from twisted.python.reflect import qual

from spread._errors import RemoteError
from spread._quote import exceptionText, isFlat, quote
from spread._wirenames import COPYABLE_FAILURE, fromWire, toWire
from spread.flavors import Copyable, RemoteCopy
from spread.jelly import InsecureJelly, setUnjellyableForClass

TRACEBACK_UNAVAILABLE = "Traceback unavailable\n"


# Typed doors to Twisted's untyped Failure API.
def currentFailure() -> failure.Failure:
    """The exception being handled, as a Failure."""
    return failure.Failure()  # type: ignore[no-untyped-call]


def failureOf(error: BaseException) -> failure.Failure:
    """``error`` as a Failure."""
    return failure.Failure(error)  # type: ignore[no-untyped-call]


def isFailureOf(fail: failure.Failure, *errorTypes: type[BaseException] | str) -> bool:
    """Whether ``fail`` is one of ``errorTypes`` (classes or dotted names)."""
    return fail.check(*errorTypes) is not None  # type: ignore[no-untyped-call]


class _QuotedError(Exception):
    """Stands in for an exception whose own text may be costly, only for logging."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def loggableFailure(fail: failure.Failure) -> failure.Failure:
    """``fail``, or a copy whose value's text is bounded, so that logging it is cheap.

    Log observers format ``str(fail.value)``; a copy keeps the type, parents
    and traceback, so the log line reads as before.
    """
    value = fail.value
    if not isinstance(value, BaseException) or all(isFlat(arg) for arg in value.args):
        return fail
    copy: failure.Failure = failure.Failure.__new__(failure.Failure)
    copy.__dict__.update(fail.__dict__)
    copy.value = _QuotedError(exceptionText(value))
    return copy


def _typeName(failure_type: Any) -> bytes:
    if isinstance(failure_type, bytes):
        return failure_type
    if isinstance(failure_type, str):
        return failure_type.encode("utf-8")
    return toWire(qual(failure_type)).encode("utf-8")


def _parentName(parent: object) -> str:
    if isinstance(parent, bytes):
        return parent.decode("utf-8", "replace")
    return parent if isinstance(parent, str) else quote(parent)


def _wireParents(parents: list[Any]) -> list[str]:
    return list(dict.fromkeys(toWire(_parentName(parent)) for parent in parents))


class CopyableFailure(failure.Failure, Copyable):
    """A ``Failure`` that can be sent to the peer, as Twisted's ``CopyableFailure``."""

    unsafeTracebacks: Any = False

    def getTypeToCopy(self) -> bytes:
        """Always Twisted's tag, so either kind of peer can read it."""
        return COPYABLE_FAILURE

    def jellyFor(self, jellier: Any) -> Any:
        """Under Twisted's tag in plain ``jelly()`` too (where Twisted's class name is that
        tag), so ``unjelly(jelly(failure))`` gives a ``CopiedFailure`` on either side."""
        if jellier.invoker is not None:
            return super().jellyFor(jellier)
        sexp = jellier.prepare(self)
        sexp.extend([COPYABLE_FAILURE, jellier.jelly(self.getStateToCopy())])
        return jellier.preserve(self, sexp)

    def getStateToCopy(self) -> dict[str, Any]:
        """The failure's type, message and class names, and a traceback only if allowed."""
        if self.unsafeTracebacks:
            remote_traceback = getattr(self, "traceback", None)
            if not isinstance(remote_traceback, str):
                remote_traceback = self.getTraceback()
        else:
            remote_traceback = TRACEBACK_UNAVAILABLE
        return {
            "count": getattr(self, "count", 0),
            "type": _typeName(self.type),
            "value": exceptionText(self.value),
            "captureVars": bool(getattr(self, "captureVars", False)),
            "tb": None,
            "unsafeTracebacks": self.unsafeTracebacks,
            "parents": _wireParents(self.parents),
            "frames": [],
            "stack": [],
            "traceback": remote_traceback,
        }


def failure2Copyable(fail: failure.Failure, unsafeTracebacks: Any = False) -> CopyableFailure:
    """Wrap any ``Failure`` (including one copied from a third peer) for sending."""
    copy: CopyableFailure = CopyableFailure.__new__(CopyableFailure)
    copy.__dict__.update(fail.__dict__)
    if isinstance(fail, CopiedFailure):
        copy._parents = list(fail.parents)
    copy.unsafeTracebacks = unsafeTracebacks
    return copy


_FIELDS = frozenset(
    name.encode("ascii")
    for name in ("count", "type", "value", "parents", "traceback", "unsafeTracebacks")
)


def _knownFields(state: Any) -> Any:
    """A failure's jellied state dictionary without the fields we never read.

    Twisted before 24.7 sends the sender's whole ``Failure.__dict__``, which may
    hold anything (a test runner's exception info, an application's own fields)
    in forms we would refuse; only the fields read here need to be readable.
    """
    if type(state) is not list or not state or state[0] != b"dictionary":
        return state
    kept: list[Any] = [state[0]]
    for item in state[1:]:
        key = item[0] if type(item) is list and len(item) == 2 else None
        if type(key) is list and len(key) == 2 and key[0] in (b"unicode", b"string"):
            key = key[1]
        if type(key) is not bytes or key in _FIELDS:
            kept.append(item)
    return kept


def _failureLists(parents: list[str]) -> dict[str, Any]:
    """A filled-in ``Failure``'s class names and frames, as instance fields.

    Twisted 24.7 made ``parents``, ``frames`` and ``stack`` properties over
    ``_parents``/``_frames``; before that they were plain attributes. Setting
    both spellings suits either (the properties shadow the plain ones).
    """
    return {"_parents": parents, "parents": parents, "_frames": [], "frames": [], "stack": []}


class CopiedFailure(RemoteCopy, failure.Failure):
    """A failure that happened in the peer: errbacks of remote calls receive these.

    ``type`` is the remote class's dotted name as bytes (as in Twisted) and
    ``typeName`` the same as text; ``value`` is the remote message (a str);
    ``traceback`` is the remote traceback text or ``"Traceback unavailable"``.
    ``check`` and ``trap`` accept classes or dotted names
    (``failure.check("myapp.errors.Overdrawn")``); Twisted's own error names
    also match spread's classes (``check(spread.pb.Error)``). Raising it (as
    ``await`` does) raises ``RemoteError`` carrying all of the above.
    """

    type: Any
    value: Any
    traceback: str

    def setCopyableState(self, state: Any) -> None:
        """Take the fields every PB peer sends, checking their types."""
        if not isinstance(state, dict):
            raise InsecureJelly(
                f"a copied failure's state must be a dictionary, not {quote(state)}"
            )
        remote_type = state.get("type", b"")
        if isinstance(remote_type, str):
            remote_type = remote_type.encode("utf-8")
        if not isinstance(remote_type, bytes):
            raise InsecureJelly(
                f"a copied failure's type must be a string, not {quote(remote_type)}"
            )
        value = state.get("value", "")
        parents = state.get("parents") or [remote_type]
        if not isinstance(parents, list):
            raise InsecureJelly("a copied failure's parents must be a list")
        names = [_parentName(parent) for parent in parents]
        local = [ours for name in names if (ours := fromWire(name)) is not None]
        remote_traceback = state.get("traceback", TRACEBACK_UNAVAILABLE)
        count = state.get("count", 0)
        self.__dict__.update(
            count=count if type(count) is int else 0,
            type=remote_type,
            value=value if isinstance(value, str) else exceptionText(value),
            captureVars=False,
            tb=None,
            unsafeTracebacks=bool(state.get("unsafeTracebacks", False)),
            traceback=remote_traceback if isinstance(remote_traceback, str) else "",
            pickled=1,
            **_failureLists(names + [name for name in local if name not in names]),
        )

    def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
        """Always rebuild through ``setCopyableState``, with or without a broker."""
        if len(jellyList) != 2:
            raise InsecureJelly("malformed copied failure: expected [type, state]")
        self.setCopyableState(unjellier.unjelly(_knownFields(jellyList[1])))
        return self

    @property
    def typeName(self) -> str:
        """The remote exception's dotted class name as text."""
        if isinstance(self.type, bytes):
            return self.type.decode("utf-8", "replace")
        return str(self.type)

    def _remoteError(self) -> RemoteError:
        return RemoteError(self.type, self.value, self.traceback, self)

    def raiseException(self) -> NoReturn:
        """Raise a ``RemoteError`` (the remote class may not exist here)."""
        raise self._remoteError()

    def throwExceptionIntoGenerator(self, g: Any) -> Any:
        """Throw a ``RemoteError`` into ``g`` (what ``inlineCallbacks`` does with failures)."""
        return g.throw(self._remoteError())

    def cleanFailure(self) -> None:
        """Nothing to clean: a copied failure holds only strings."""

    def printTraceback(
        self, file: IO[str] | None = None, elideFrameworkCode: Any = 0, detail: str = "default"
    ) -> None:
        """Write one line naming the remote error, then the remote traceback if one was sent."""
        out: Any = file if file is not None else log.logfile
        out.write(f"Traceback from remote host -- {self.typeName}: {self.value}\n")
        if self.traceback and self.traceback != TRACEBACK_UNAVAILABLE:
            out.write(self.traceback)

    printBriefTraceback = printTraceback
    printDetailedTraceback = printTraceback

    def __repr__(self) -> str:
        return f"<{qual(type(self))} {self.typeName}: {self.value}>"


for _cls in (CopyableFailure, CopiedFailure):
    _cls.__module__ = "spread.pb"
del _cls

# Plain jelly.unjelly (no broker) of a copied failure works as in Twisted.
setUnjellyableForClass(COPYABLE_FAILURE.decode("ascii"), CopiedFailure)
