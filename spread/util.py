"""Helpers around PB (``twisted.spread.util``): local stand-ins for remote objects, and
paging large data to a peer in pieces the transport can absorb."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from twisted.internet import defer, interfaces
from twisted.protocols import basic
from zope.interface import implementer  # type: ignore[import-untyped]

from spread import pb
from spread._failures import currentFailure


class LocalMethod:
    """``local.remoteMethod(name)`` for a ``LocalAsRemote``."""

    def __init__(self, local: LocalAsRemote, name: str) -> None:
        self.local = local
        self.name = name

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self.local.callRemote(self.name, *args, **kw)


class LocalAsRemote:
    """A local object that answers ``callRemote`` like a remote one (handy in tests).

    ``callRemote("x")`` runs ``sync_x`` if there is one and returns what it
    returns; otherwise it runs ``async_x`` and wraps the outcome in a Deferred.
    """

    reportAllTracebacks = True

    def callRemote(self, name: str, *args: Any, **kw: Any) -> Any:
        """Call ``sync_<name>`` directly, or ``async_<name>`` with its outcome in a Deferred."""
        sync = getattr(self, "sync_" + name, None)
        if sync is not None:
            return sync(*args, **kw)
        try:
            result = getattr(self, "async_" + name)(*args, **kw)
        except Exception:
            return self._failed()
        return defer.succeed(result)

    def _failed(self) -> defer.Deferred[Any]:
        # Not in callRemote: its frame is in the traceback, and the failure held there
        # would make a reference cycle.
        failure = currentFailure()
        if self.reportAllTracebacks:
            failure.printTraceback()  # type: ignore[no-untyped-call]
        return defer.fail(failure)

    def remoteMethod(self, name: str) -> LocalMethod:
        """A callable that does ``callRemote(name, ...)``."""
        return LocalMethod(self, name)


class LocalAsyncForwarder:
    """Forwards ``callRemote`` to a local object, for the methods of one interface only."""

    def __init__(
        self, forwarded: Any, interfaceClass: Any, failWhenNotImplemented: bool = False
    ) -> None:
        if not interfaceClass.providedBy(forwarded):
            raise TypeError(f"{forwarded!r} does not provide {interfaceClass!r}")
        self.forwarded = forwarded
        self.interfaceClass = interfaceClass
        self.failWhenNotImplemented = failWhenNotImplemented

    def _callMethod(self, method: str, *args: Any, **kw: Any) -> Any:
        return getattr(self.forwarded, method)(*args, **kw)

    def callRemote(self, method: str, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        """Run ``method`` if the interface declares it; else succeed with None (or fail)."""
        if self.interfaceClass.queryDescriptionFor(method):
            return defer.maybeDeferred(self._callMethod, method, *args, **kw)
        if self.failWhenNotImplemented:
            return defer.fail(NotImplementedError(f"No Such Method in Interface: {method}"))
        return defer.succeed(None)


class Pager:
    """Sends pages to a remote collector (``remote_gotPage``, ``remote_endedPaging``)
    whenever the connection has room; subclasses say what a page is (``nextPage``)."""

    def __init__(
        self, collector: pb.RemoteReference, callback: Callable[..., object] | None = None,
        *args: Any, **kw: Any,
    ) -> None:
        self.callback = callback if callable(callback) else None
        self.callbackArgs = args
        self.callbackKeyword = kw
        self._stillPaging = True
        self.collector = collector
        broker: Any = collector.broker  # a Broker: pages need its transport
        broker.registerPageProducer(self)

    def stillPaging(self) -> bool:
        """Whether more pages follow; on the last, tell the collector and run the callback."""
        if not self._stillPaging:
            self.collector.callRemote("endedPaging", pbanswer=False)
            if self.callback is not None:
                self.callback(*self.callbackArgs, **self.callbackKeyword)
        return self._stillPaging

    def sendNextPage(self) -> None:
        """Send one page to the collector."""
        self.collector.callRemote("gotPage", self.nextPage(), pbanswer=False)

    def nextPage(self) -> Any:
        """Return the next page; call ``stopPaging`` when it is the last."""
        raise NotImplementedError(f"{type(self).__name__}.nextPage")

    def stopPaging(self) -> None:
        """Say that no pages follow the current one."""
        self._stillPaging = False


class StringPager(Pager):
    """Pages out a byte string in ``chunkSize`` pieces."""

    def __init__(
        self, collector: pb.RemoteReference, st: bytes, chunkSize: int = 8192,
        callback: Callable[..., object] | None = None, *args: Any, **kw: Any,
    ) -> None:
        self.string = st
        self.pointer = 0
        self.chunkSize = chunkSize
        super().__init__(collector, callback, *args, **kw)

    def nextPage(self) -> bytes:
        """The next chunk of the string."""
        page = self.string[self.pointer : self.pointer + self.chunkSize]
        self.pointer += self.chunkSize
        if self.pointer >= len(self.string):
            self.stopPaging()
        return page


@implementer(interfaces.IConsumer)
class FilePager(Pager):
    """Pages out a file's contents as they are read."""

    def __init__(
        self, collector: pb.RemoteReference, fd: IO[bytes],
        callback: Callable[..., object] | None = None, *args: Any, **kw: Any,
    ) -> None:
        self.chunks: list[bytes] = []
        self.producer: Any = None
        super().__init__(collector, callback, *args, **kw)
        self.startProducing(fd)

    def startProducing(self, fd: IO[bytes]) -> None:
        """Start reading ``fd``; paging stops when the file is done."""
        sender = basic.FileSender()
        self.deferred = sender.beginFileTransfer(fd, self)  # type: ignore[no-untyped-call]
        self.deferred.addBoth(lambda _: self.stopPaging())

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """The file reader hands itself over; a pull reader is started at once."""
        self.producer = producer
        if not streaming:
            self.producer.resumeProducing()

    def unregisterProducer(self) -> None:
        """The file reader is done."""
        self.producer = None

    def write(self, chunk: bytes) -> None:
        """Keep a chunk read from the file until the connection wants a page."""
        self.chunks.append(chunk)

    def sendNextPage(self) -> None:
        """Send the oldest chunk read so far, and read another."""
        if not self.chunks:
            return
        page = self.chunks.pop(0)
        if self.producer is not None:
            self.producer.resumeProducing()
        self.collector.callRemote("gotPage", page, pbanswer=False)


class CallbackPageCollector(pb.Referenceable):
    """Receives pages from a peer's pager and calls ``callback(pages)`` when they are all in."""

    def __init__(self, callback: Callable[[list[Any]], object]) -> None:
        self.pages: list[Any] = []
        self.callback = callback

    def remote_gotPage(self, page: Any) -> None:
        self.pages.append(page)

    def remote_endedPaging(self) -> None:
        self.callback(self.pages)


def getAllPages(referenceable: Any, methodName: str, *args: Any, **kw: Any) -> defer.Deferred[Any]:
    """Call ``methodName(collector, *args)`` remotely; fire with the list of pages it sends.

    If the call itself fails (a remote error, the connection lost), so does the result:
    Twisted's version waits for ever then.
    """
    d: defer.Deferred[Any] = defer.Deferred()
    call = referenceable.callRemote(methodName, CallbackPageCollector(d.callback), *args, **kw)
    call.addErrback(lambda failure: None if d.called else d.errback(failure))
    return d


__all__ = [
    "CallbackPageCollector",
    "FilePager",
    "LocalAsRemote",
    "LocalAsyncForwarder",
    "LocalMethod",
    "Pager",
    "StringPager",
    "getAllPages",
]
