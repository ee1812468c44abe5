"""Published objects whose copies persist across sessions (as in Twisted's PB ``publish``).

A ``Publishable`` travels as a cache carrying a timestamp. The receiving
``RemotePublished`` keeps the last full state it saw in a file
(``service-perspective-id.pub`` in the current directory); if that file is as
recent as the timestamp, it activates from the file, otherwise it asks the
publisher for the state (``getStateToPublish``). ``whenReady`` waits for
activation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from spread import banana, flavors, jelly


class Publishable(flavors.Cacheable):
    """An object whose state remote caches keep between sessions."""

    def __init__(self, publishedID: Any) -> None:
        self.republish()
        self.publishedID = publishedID

    def republish(self) -> None:
        """Mark the state as changed now, so cached copies older than this are refreshed."""
        self.timestamp = time.time()

    def view_getStateToPublish(self, perspective: Any) -> Any:
        """(internal) What a ``RemotePublished`` fetches when its file is stale."""
        return self.getStateToPublishFor(perspective)

    def getStateToPublishFor(self, perspective: Any) -> Any:
        """The state to publish to ``perspective``; by default ``getStateToPublish()``."""
        return self.getStateToPublish()

    def getStateToPublish(self) -> Any:
        """Override: return the state to publish."""
        raise NotImplementedError(f"{type(self).__name__}.getStateToPublishFor")

    def getStateToCacheAndObserveFor(self, perspective: Any, observer: Any) -> Any:
        """The metadata a remote copy needs to find or fetch its state."""
        if perspective:
            perspective_name = getattr(perspective, "perspectiveName", str(perspective))
            get_service = getattr(perspective, "getService", None)
            service_name = get_service().serviceName if get_service is not None else "None"
        else:
            perspective_name = service_name = "None"
        return {
            "remote": flavors.ViewPoint(perspective, self),
            "publishedID": self.publishedID,
            "perspective": perspective_name,
            "service": service_name,
            "timestamp": self.timestamp,
        }


class RemotePublished(flavors.RemoteCache):
    """The local copy of a remote ``Publishable``; see the module docstring."""

    isActivated = 0
    _wasCleanWhenLoaded = 0
    # Set by the publisher's state (Publishable.getStateToCacheAndObserveFor).
    service: str
    perspective: str
    publishedID: Any
    timestamp: float
    remote: Any

    def getFileName(self, ext: str = "pub") -> str:
        """Where this copy's state is kept between sessions."""
        return f"{self.service}-{self.perspective}-{self.publishedID}.{ext}"

    def setCopyableState(self, state: Any) -> None:
        """Take the metadata, then activate from the file if fresh, else fetch the state."""
        self.__dict__.update(state)
        self._activationListeners: list[Callable[[RemotePublished], object]] = []
        self._failureListeners: list[Callable[[Failure], object]] = []
        self._activationFailure: Failure | None = None
        saved = self._load()
        if saved is not None and saved.get("timestamp") == self.timestamp:
            self._cbGotUpdate(saved)
            self._wasCleanWhenLoaded = 1
        else:
            fetch = self.remote.callRemote("getStateToPublish")
            fetch.addCallbacks(self._cbGotUpdate, self._fetchFailed)

    def _load(self) -> dict[str, Any] | None:
        """The state saved by an earlier session, or None if absent or unreadable."""
        try:
            with open(self.getFileName(), "rb") as saved_file:
                data = saved_file.read()
        except OSError:
            return None
        # Only this class and basic types may come back from the file.
        taster = jelly.SecurityOptions()
        taster.allowBasicTypes()
        taster.allowInstancesOf(type(self))
        try:
            saved = jelly.unjelly(banana.decode(data), taster)
        except Exception:
            return None
        state = getattr(saved, "__dict__", None)
        return state if isinstance(state, dict) else None

    def __getstate__(self) -> dict[str, Any]:
        """What is saved to the file: the state, without connection or bookkeeping fields."""
        state = self.__dict__.copy()
        for name in ("broker", "remote", "luid", "_activationListeners", "isActivated",
                     "_failureListeners", "_activationFailure"):  # fmt: skip
            state.pop(name, None)
        return state

    def _cbGotUpdate(self, newState: dict[str, Any]) -> None:
        self.__dict__.update(newState)
        self.isActivated = 1
        listeners, self._activationListeners = self._activationListeners, []
        for listener in listeners:
            listener(self)
        self.activated()
        with open(self.getFileName(), "wb") as saved_file:
            saved_file.write(banana.encode(jelly.jelly(self)))

    def _fetchFailed(self, failure: Failure) -> None:
        """The publisher could not send the state: tell ``whenReady`` callers, not silence."""
        self._activationFailure = failure
        listeners, self._failureListeners = self._failureListeners, []
        self._activationListeners = []
        for listener in listeners:
            listener(failure)

    def activated(self) -> None:
        """Override to hear when the state has arrived (from the file or the publisher)."""

    def callWhenActivated(self, callback: Callable[[RemotePublished], object]) -> None:
        """Call ``callback(self)`` once the state is in (at once if it already is)."""
        if self.isActivated:
            callback(self)
        else:
            self._activationListeners.append(callback)


def whenReady(d: defer.Deferred[Any]) -> defer.Deferred[Any]:
    """Wrap a Deferred that fires with a ``RemotePublished``: fire when it is activated,
    or fail if its state cannot be fetched (Twisted's waits for ever then).

    ``whenReady(ref.callRemote("getPublished")).addCallback(use)``
    """
    ready: defer.Deferred[Any] = defer.Deferred()
    d.addCallbacks(_pubReady, ready.errback, callbackArgs=(ready,))
    return ready


def _pubReady(result: RemotePublished, ready: defer.Deferred[Any]) -> None:
    failure = getattr(result, "_activationFailure", None)
    if failure is not None:
        ready.errback(failure)
        return
    if not getattr(result, "isActivated", False):
        result._failureListeners.append(ready.errback)
    result.callWhenActivated(ready.callback)


__all__ = ["Publishable", "RemotePublished", "whenReady"]
