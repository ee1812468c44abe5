"""The exceptions of ``spread.pb``.

They live here so that every private module can raise them without importing
``spread.pb``; ``__module__`` says ``spread.pb`` because that is where users
import them from and what shows in their tracebacks.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent something PB does not allow (a malformed or out-of-order message)."""


class DeadReferenceError(ProtocolError):
    """A remote object was called after its connection had closed.

    Reconnect (for instance with ``PBClientFactory.getRootObject()`` on a new
    connection) and fetch a fresh reference.
    """


class Error(Exception):
    """Raise me (or a subclass) in a remote method to send the caller a plain error.

    The caller's errback receives the type name and message; no traceback is
    logged on the server, because a ``pb.Error`` is an expected outcome.
    """


class RemoteError(Exception):
    """A remote exception re-raised locally (by ``await`` or ``raiseException``).

    ``str(error)`` and ``args[0]`` are the remote message (as in Twisted);
    ``remoteType`` is the remote class's dotted name as bytes (as in Twisted),
    ``typeName`` the same as text, and
    ``remoteTraceback`` the remote traceback text (``"Traceback unavailable"``
    unless the server enabled ``unsafeTracebacks``). ``failure``, when set, is
    the ``CopiedFailure`` it came from, so ``err.failure.check("pkg.Err")`` works.
    """

    def __init__(
        self, remoteType: bytes | str, value: str, remoteTraceback: str, failure: object = None
    ) -> None:
        super().__init__(value)
        self.remoteType = remoteType
        self.remoteTraceback = remoteTraceback
        self.failure = failure
        if hasattr(self, "add_note"):
            self.add_note(f"(raised remotely as {self.typeName})")

    @property
    def typeName(self) -> str:
        """The remote exception's dotted class name as text."""
        if isinstance(self.remoteType, bytes):
            return self.remoteType.decode("utf-8", "replace")
        return str(self.remoteType)

    # str() is the remote message alone, as in Twisted; the type is in repr() and, on
    # Python 3.11+, in a note that tracebacks print.

    def __repr__(self) -> str:
        message = self.args[0] if self.args else ""
        return f"RemoteError({self.typeName!r}, {message!r})"


class PBConnectionLost(Exception):
    """The connection closed while this call was waiting for its answer."""


for _cls in (ProtocolError, DeadReferenceError, Error, RemoteError, PBConnectionLost):
    _cls.__module__ = "spread.pb"
del _cls
