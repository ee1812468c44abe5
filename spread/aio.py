"""PB for asyncio programs: ``asyncio.run(main())``, and no reactor in sight.

    from spread import aio

    async def main():
        root = await aio.connect("tcp:localhost:8789")
        print(await root.callRemote("echo", "hello"))
        await root.close()

    asyncio.run(main())

Twisted still does the networking, as a guest on your event loop. The first call into this
module installs Twisted's asyncio reactor on the running loop (the one ``asyncio.run`` made)
and starts it without blocking: the loop already runs, so the reactor only has to be marked
running (``startRunning``), and its timers and sockets then live on that loop. When
``asyncio.run`` ends, after it has cancelled your remaining tasks, the reactor is stopped: its
connections closed and its threads joined (a hostname lookup starts some), so the process can
exit. Stopping it never stops the loop, which is asyncio's to stop.

A process has one reactor, for good: use one ``asyncio.run`` per process, and let nothing
import ``twisted.internet.reactor`` first. If another reactor is installed, the first call
raises ``ReactorMismatch``, saying what to do. Twisted's asyncio reactor installed by the
program itself is used if it runs on this loop (and is then the program's to stop).

``connect`` and ``login`` give ``AioReference``s, whose ``callRemote`` returns an asyncio
future: await it, pass it to ``asyncio.gather`` or ``asyncio.wait_for``, or cancel it, which
cancels the call (its answer is ignored; a spread server cancels the method too). References
in answers come wrapped the same way. ``serve`` publishes a root object or a twisted.cred
portal; its ``async def`` remote methods may await asyncio and Deferreds alike (see
``spread._coroutines``), and receive plain ``RemoteReference``s as arguments: wrap one in
``AioReference`` to use it from other asyncio code. All of it is for the loop's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncGenerator, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

from twisted.internet import defer, endpoints, error
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.main import installReactor
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread import pb
from spread._coroutines import AsyncioReactorRequired
from spread.blocking import _mapped
from spread.jelly import globalSecurity
from spread.limits import Limits

__all__ = [
    "CLOSE_TIMEOUT",
    "CONNECT_TIMEOUT",
    "AioReference",
    "AsyncioReactorRequired",
    "ReactorMismatch",
    "Server",
    "asFuture",
    "connect",
    "login",
    "serve",
]

_T = TypeVar("_T")
_log = Logger()

CONNECT_TIMEOUT = 30.0
"""Seconds ``connect`` and ``login`` wait for a ready PB connection, by default: the bound
Twisted puts on a TCP connect (``connectTCP(timeout=30)``) and ``PBClientFactory`` on the PB
handshake, so that a silent server fails the call instead of hanging it."""

CLOSE_TIMEOUT = 10.0
"""Seconds ``close()`` lets a connection send what it still has queued before it is aborted."""

STOP_TIMEOUT = 10.0
"""Seconds the reactor gets to shut down (its shutdown triggers) when the loop ends."""

_PROBE_TIMEOUT = 10.0
"""Seconds an asyncio reactor installed by the program gets to show it runs on this loop. It
answers on the loop's next turn if it does, and never if it does not."""


class ReactorMismatch(RuntimeError):
    """The reactor installed in this process cannot run on this event loop."""


# ---------------------------------------------------------------------------------------------
# The reactor, as a guest on the running loop


class _GuestReactor(AsyncioSelectorReactor):
    """Twisted's asyncio reactor on a loop that asyncio runs: started without ``run()``, and
    stopping it stops Twisted's side only."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.loop = loop

    def crash(self) -> None:
        # reactor.stop() ends in crash(), and AsyncioSelectorReactor's also stops the loop:
        # under asyncio.run's feet, which then fails with "Event loop stopped before Future
        # completed". Only the crash every reactor does (no longer running) is wanted here.
        super(AsyncioSelectorReactor, self).crash()


_lifetime: AsyncGenerator[None, None] | None = None
"""Kept open while our reactor runs, so that the loop closes it (and so stops the reactor)
when it shuts down; the loop itself holds it only weakly."""


async def _runningReactor() -> Any:
    """The reactor, running on the running loop: installed and started on first use."""
    loop = asyncio.get_running_loop()
    installed = sys.modules.get("twisted.internet.reactor")
    if installed is None:
        return await _installOn(loop)
    if isinstance(installed, _GuestReactor):
        if installed.loop is not loop:
            raise ReactorMismatch(
                "spread.aio's reactor belongs to an earlier event loop (an asyncio.run that "
                "has finished), and a Twisted reactor cannot move or restart: run the whole "
                "program under one asyncio.run()"
            )
        return installed
    if not isinstance(installed, AsyncioSelectorReactor):
        raise ReactorMismatch(_otherReactor(installed))
    await _adopt(installed, loop)
    return installed


async def _installOn(loop: asyncio.AbstractEventLoop) -> _GuestReactor:
    global _lifetime
    reactor = _GuestReactor(loop)
    installReactor(reactor)  # type: ignore[no-untyped-call]
    # No signal handlers: asyncio.run has its own for Ctrl-C.
    reactor.startRunning(installSignalHandlers=False)
    _lifetime = _stoppedWithLoop(reactor)
    await _lifetime.asend(None)
    return reactor


async def _stoppedWithLoop(reactor: _GuestReactor) -> AsyncGenerator[None, None]:
    """Wait, open, for the loop to shut down, then stop ``reactor``.

    ``asyncio.run`` closes every asynchronous generator still open once the program's tasks
    are done (``loop.shutdown_asyncgens``), while the loop still runs: that is this one's cue.
    """
    global _lifetime
    try:
        yield
    finally:
        _lifetime = None
        await _stop(reactor)


async def _stop(reactor: Any) -> None:
    if not reactor.running:
        return
    stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    reactor.addSystemEventTrigger("after", "shutdown", _resolve, stopped)
    reactor.stop()
    try:
        await asyncio.wait_for(stopped, STOP_TIMEOUT)
    except asyncio.TimeoutError:
        _log.warn("the reactor did not shut down within {timeout} s", timeout=STOP_TIMEOUT)


async def _adopt(reactor: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Use an asyncio reactor the program installed: start it if need be, and check that it
    runs on this loop (Twisted does not say which loop it wraps, so ask it to call back)."""
    with contextlib.suppress(error.ReactorAlreadyRunning):
        if not reactor.running:
            reactor.startRunning(installSignalHandlers=False)
    answered = loop.create_future()
    reactor.callLater(0, _resolve, answered)
    try:
        await asyncio.wait_for(answered, _PROBE_TIMEOUT)
    except asyncio.TimeoutError:
        raise ReactorMismatch(
            "Twisted's asyncio reactor is installed, but on another event loop than the "
            "running one (installed before asyncio.run made this loop, say). Leave the "
            "installing to spread.aio, or do it first thing in main(): "
            "twisted.internet.asyncioreactor.install(asyncio.get_running_loop())"
        ) from None


def _otherReactor(installed: object) -> str:
    kind = f"{type(installed).__module__}.{type(installed).__qualname__}"
    return (
        f"another Twisted reactor ({kind}) is already installed in this process, and "
        "spread.aio needs Twisted's asyncio reactor on the running event loop. Something "
        "imported twisted.internet.reactor before spread.aio was first used: let spread.aio "
        "come first, or install the asyncio reactor yourself first thing in main() "
        "(twisted.internet.asyncioreactor.install(asyncio.get_running_loop())). A Twisted "
        "program with another reactor uses spread.pb, whose Deferreds it can await."
    )


# ---------------------------------------------------------------------------------------------
# Deferreds as futures


def _resolve(future: asyncio.Future[None]) -> None:
    """Mark ``future`` done, unless it already is (cancelled by a timeout, say)."""
    if not future.done():
        future.set_result(None)


def asFuture(deferred: defer.Deferred[_T]) -> asyncio.Future[_T]:
    """``deferred`` as a future of the running loop, for asyncio code to await, gather or
    ``wait_for``. Cancelling the future cancels the Deferred.

    Its exception is what awaiting the Deferred would raise: ``pb.RemoteError`` for a remote
    one (Twisted's ``Deferred.asFuture`` cannot carry those). As with that method, the
    Deferred's result goes to the future and the Deferred is left with None.
    """
    future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()

    def settle(result: Any) -> None:
        if future.cancelled():
            return  # a Failure here is the CancelledError of cancelling: consumed
        if isinstance(result, Failure):
            future.set_exception(_raised(result))
        else:
            future.set_result(result)

    def abandoned(future: asyncio.Future[_T]) -> None:
        if future.cancelled():
            deferred.cancel()

    deferred.addBoth(settle)
    future.add_done_callback(abandoned)
    return future


def _raised(reason: Failure) -> BaseException:
    """The exception ``reason`` raises (a copied failure raises ``pb.RemoteError``)."""
    try:
        reason.raiseException()
    except StopIteration as stop:  # a future refuses these: they confuse generators
        return RuntimeError(f"StopIteration: {stop}")
    except BaseException as raised:
        return raised
    return RuntimeError(f"{reason} raised nothing")  # pragma: no cover - raiseException raises


# ---------------------------------------------------------------------------------------------
# References


def _wrapOne(value: Any) -> Any:
    return AioReference(value) if isinstance(value, pb.RemoteReference) else value


def _unwrapOne(value: Any) -> Any:
    return value.reference if isinstance(value, AioReference) else value


def _wrapped(value: Any) -> Any:
    """``value`` with its references (in lists, tuples, dicts and sets too) as AioReferences."""
    return _mapped(value, _wrapOne, {})


def _unwrapped(value: Any) -> Any:
    """Arguments as PB sends them: AioReferences replaced by the references they wrap."""
    return _mapped(value, _unwrapOne, {})


class AioReference:
    """A ``RemoteReference`` for asyncio code: ``callRemote`` returns an asyncio future.

    ``connect`` and ``login`` return these, and references in answers arrive as these too.
    Wrap a plain ``RemoteReference`` (one a server's method received, say) to use it the same
    way: ``AioReference(reference)``. ``close()``, or leaving an ``async with`` block, closes
    the connection the reference came over, and with it every reference from that connection.
    """

    __slots__ = ("_reference", "_relays")

    def __init__(self, reference: pb.RemoteReference) -> None:
        self._reference = reference
        # notifyOnDisconnect callbacks, and what stands for each on the reference
        self._relays: dict[Any, Callable[[pb.RemoteReference], None]] = {}

    @property
    def reference(self) -> pb.RemoteReference:
        """The underlying ``RemoteReference``, whose ``callRemote`` returns a Deferred."""
        return self._reference

    @property
    def disconnected(self) -> bool:
        """Whether the connection this reference came over has closed."""
        return bool(self._reference.broker.disconnected)

    def callRemote(self, name: str, /, *args: Any, **kw: Any) -> asyncio.Future[Any]:
        """Call ``remote_<name>(*args, **kw)`` on the remote object; a future of its answer.

        The call is sent at once. A remote exception raises ``pb.RemoteError`` from the
        future, a connection lost while waiting ``pb.PBConnectionLost``; as in Twisted, the
        call itself raises ``pb.DeadReferenceError`` once the connection has closed. Cancel the
        future (or the task awaiting it) to stop waiting: the answer is ignored when it
        comes, and a spread server cancels the method. Arguments may hold AioReferences.
        """
        answer = self._reference.callRemote(name, *_unwrapped(args), **_unwrapped(kw))
        return asFuture(answer.addCallback(_wrapped))

    def remoteMethod(self, name: str) -> Callable[..., asyncio.Future[Any]]:
        """A function that does ``callRemote(name, ...)``."""

        def call(*args: Any, **kw: Any) -> asyncio.Future[Any]:
            return self.callRemote(name, *args, **kw)

        call.__name__ = name
        return call

    def notifyOnDisconnect(self, callback: Callable[[AioReference], object]) -> None:
        """Call ``callback(self)`` once when the connection closes (at once if it has)."""
        if not callable(callback):
            raise TypeError(f"notifyOnDisconnect needs a callable, not {callback!r}")

        def relay(_reference: pb.RemoteReference) -> None:
            callback(self)

        self._relays[callback] = relay
        self._reference.notifyOnDisconnect(relay)

    def dontNotifyOnDisconnect(self, callback: Callable[[AioReference], object]) -> None:
        """Forget a callback given to ``notifyOnDisconnect`` (unknown ones are ignored)."""
        relay = self._relays.pop(callback, None)
        if relay is not None:
            self._reference.dontNotifyOnDisconnect(relay)

    async def close(self) -> None:
        """Close this reference's connection; return once it has closed. Closing twice is
        harmless."""
        await _closeConnections([self._reference.broker])

    async def __aenter__(self) -> AioReference:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AioReference):
            return self._reference == other._reference
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._reference)

    def __repr__(self) -> str:
        return f"<AioReference to {self._reference!r}>"


async def _closeConnections(brokers: Iterable[Any]) -> None:
    """Close the brokers' connections and wait until they have: cleanly (what they have
    queued sent first) within CLOSE_TIMEOUT seconds, or else by abort."""
    loop = asyncio.get_running_loop()
    closing: dict[asyncio.Future[None], Any] = {}
    for broker in brokers:
        if broker.disconnected or broker.transport is None:
            continue
        gone: asyncio.Future[None] = loop.create_future()
        broker.notifyOnDisconnect(functools.partial(_resolve, gone))
        closing[gone] = broker
        broker.transport.loseConnection()
    if not closing:
        return
    _, late = await asyncio.wait(list(closing), timeout=CLOSE_TIMEOUT)
    for gone in late:
        closing[gone].transport.abortConnection()
    if late:
        await asyncio.wait(late, timeout=CLOSE_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Clients


async def connect(
    endpoint: str, *, timeout: float | None = CONNECT_TIMEOUT, security: Any = globalSecurity,
    limits: Limits | None = None,
) -> AioReference:
    """Connect to the PB server at ``endpoint``; its root object.

    ``endpoint`` is a Twisted client endpoint string: ``"tcp:HOST:PORT"``,
    ``"unix:/path/to/socket"``, ``"tls:HOST:PORT"``. Raises Twisted's ``ConnectError`` family
    if the connection fails, ``TimeoutError`` if no PB connection is ready within ``timeout``
    seconds (None: no bound). ``security`` and ``limits`` are ``PBClientFactory``'s.
    """
    reactor = await _runningReactor()
    factory = pb.PBClientFactory(security=security, limits=limits, reactor=reactor)
    return await _opened(reactor, endpoint, factory, factory.getRootObject, timeout)


async def login(
    endpoint: str, credentials: Any, client: Any = None, *,
    timeout: float | None = CONNECT_TIMEOUT, security: Any = globalSecurity,
    limits: Limits | None = None,
) -> AioReference:
    """Connect to the PB login server at ``endpoint``, log in, and return the perspective.

    ``credentials`` come from ``twisted.cred.credentials``: ``UsernamePassword(b"alice",
    b"secret")`` or ``Anonymous()``. ``client`` is the mind, a ``pb.Referenceable`` the server
    may call back (its ``async def`` remote methods may await asyncio). A refused login raises
    ``pb.RemoteError`` (``typeName`` ``"twisted.cred.error.UnauthorizedLogin"``). The rest is
    as for ``connect``.
    """
    reactor = await _runningReactor()
    factory = pb.PBClientFactory(security=security, limits=limits, reactor=reactor)
    return await _opened(
        reactor, endpoint, factory, lambda: factory.login(credentials, client), timeout
    )


async def _opened(
    reactor: Any, description: str, factory: pb.PBClientFactory,
    then: Callable[[], defer.Deferred[pb.RemoteReference]], timeout: float | None,
) -> AioReference:
    """Connect ``factory`` to ``description``, then wait for ``then()``: its reference."""
    endpoint = _clientEndpoint(reactor, description)

    async def opening() -> pb.RemoteReference:
        broker = await asFuture(endpoint.connect(factory))
        try:
            return await asFuture(then())
        except BaseException:  # refused, failed, cancelled or timed out: hang up
            broker.transport.loseConnection()
            raise

    try:
        return AioReference(await asyncio.wait_for(opening(), timeout))
    except asyncio.TimeoutError:
        raise TimeoutError(f"no PB connection to {description!r} within {timeout:g} s") from None


def _clientEndpoint(reactor: Any, description: str) -> Any:
    try:
        return endpoints.clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as bad:  # unknown kind; or "tcp:8789", an argument short
        raise ValueError(
            f"{description!r} is not a client endpoint ({bad}); write for instance "
            "'tcp:HOST:PORT', 'unix:/path/to/socket' or 'tls:HOST:PORT'"
        ) from bad


# ---------------------------------------------------------------------------------------------
# Servers


class _TrackedServerFactory(pb.PBServerFactory):
    """A server factory that knows its open connections, so that ``Server.close`` can close
    them."""

    def __init__(self, root: Any, **options: Any) -> None:
        super().__init__(root, **options)
        self.brokers: set[pb.Broker] = set()

    def buildProtocol(self, addr: Any) -> pb.Broker | None:
        broker = super().buildProtocol(addr)
        if broker is not None:
            self.brokers.add(broker)
        return broker

    def brokerDisconnected(self, broker: pb.Broker, reason: Failure) -> None:
        super().brokerDisconnected(broker, reason)
        self.brokers.discard(broker)


class Server:
    """A PB server ``serve`` started: where it listens, and ``close()`` to stop it.

    ``async with await aio.serve(...) as server:`` closes it when the block ends.
    """

    def __init__(self, listening: Any, factory: _TrackedServerFactory) -> None:
        self._listening = listening
        self._factory = factory
        self._closed = False
        self.address: Any = listening.getHost()
        """The address it listens on: a Twisted ``IPv4Address``, ``IPv6Address`` or
        ``UNIXAddress``."""

    @property
    def port(self) -> int:
        """The TCP port it listens on (the one the system chose, for ``tcp:0``)."""
        port = getattr(self.address, "port", None)
        if not isinstance(port, int):
            raise AttributeError(f"a server listening on {self.address} has no port number")
        return port

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._factory.brokers)

    async def close(self) -> None:
        """Stop listening and close every connection; return once all that is done.
        Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            await asFuture(defer.maybeDeferred(self._listening.stopListening))
        await _closeConnections(list(self._factory.brokers))

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.connections} connection(s)"
        return f"<aio.Server on {self.address} ({state})>"


async def serve(
    root: Any, endpoint: str, *, security: Any = globalSecurity, limits: Limits | None = None,
    unsafeTracebacks: bool = False,
) -> Server:
    """Publish ``root`` at ``endpoint``; the running ``Server``.

    ``root`` is a ``pb.Root`` (or anything ``PBServerFactory`` serves, such as a twisted.cred
    ``Portal``); its remote methods run on this loop, and ``async def`` ones may await asyncio
    and Deferreds alike. ``endpoint`` is a Twisted server endpoint string: ``"tcp:8789"``,
    ``"tcp:0:interface=127.0.0.1"`` (a free port, see ``Server.port``),
    ``"unix:/path/to/socket"``, ``"ssl:8789:privateKey=key.pem:certKey=cert.pem"``. The
    other arguments are ``PBServerFactory``'s. Raises ``CannotListenError`` if it cannot
    listen there.
    """
    reactor = await _runningReactor()
    factory = _TrackedServerFactory(
        root, unsafeTracebacks=unsafeTracebacks, security=security, limits=limits,
        reactor=reactor,
    )
    try:
        listener = endpoints.serverFromString(reactor, endpoint)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError) as bad:
        raise ValueError(
            f"{endpoint!r} is not a server endpoint ({bad}); write for instance 'tcp:8789', "
            "'tcp:0:interface=127.0.0.1' or 'unix:/path/to/socket'"
        ) from bad
    return Server(await asFuture(listener.listen(factory)), factory)
