"""Call PB servers from plain blocking code: scripts, REPLs, notebooks, thread pools.

    from spread import blocking

    root = blocking.connect("tcp:localhost:8789")
    root.callRemote("echo", "hi")  # -> "hi", or raises the remote error as pb.RemoteError

Twisted still does the networking. One daemon thread, shared by every blocking connection in
the process, runs the global reactor: it is started on first use, unless the reactor already
runs in another thread, which is then used instead. Each blocking call hands its work to that
thread and waits for the answer, as ``twisted.internet.threads.blockingCallFromThread`` does,
with a timeout. Calls are safe from any thread except the reactor's own, where waiting would
deadlock (there, use the Deferred API).

Every wait is bounded: by the connection's ``timeout`` (30 s unless ``connect`` was given
another), or by ``ref.withTimeout(seconds)`` for the calls made through that view. The timeout
is not a keyword of ``callRemote`` so that every keyword argument reaches the remote method.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import threading
from collections.abc import Callable
from concurrent import futures
from types import TracebackType
from typing import Any

from twisted.internet import defer, endpoints, error
from twisted.python import threadable
from twisted.python.failure import Failure

from spread import pb

__all__ = ["DEFAULT_TIMEOUT", "BlockingCache", "BlockingReference", "connect", "login"]

DEFAULT_TIMEOUT = 30.0
"""Seconds a blocking call waits, unless told otherwise: the same bound as Twisted's TCP connect
(``connectTCP(timeout=30)``) and ``PBClientFactory``'s handshake, so a silent server or a lost
answer ends in a ``TimeoutError`` rather than a script that hangs."""

STOP_WAIT = 10.0
"""Seconds the exit handler waits for the reactor thread to close connections and stop."""


# ---------------------------------------------------------------------------------------------
# The reactor thread


def _globalReactor() -> Any:
    """The global reactor; importing it installs the platform's default one if none is yet."""
    from twisted.internet import reactor

    return reactor


def _inReactorThread() -> bool:
    return bool(threadable.isInIOThread())  # type: ignore[no-untyped-call]


def _refuseReactorThread(what: str) -> None:
    if _inReactorThread():
        raise RuntimeError(
            f"{what} was called in the reactor thread, which it would block while waiting "
            "for the reactor: a deadlock. In reactor code (a remote method, a Deferred "
            "callback, a notifyOnDisconnect callback) use the Deferred API instead: "
            "ref.reference.callRemote(...) returns a Deferred to await; or move the "
            "blocking code to another thread (twisted.internet.threads.deferToThread)."
        )


def _stopRunning(reactor: Any) -> None:
    with contextlib.suppress(error.ReactorNotRunning):
        reactor.stop()


class _ReactorThread:
    """Runs the global reactor in a daemon thread for blocking callers, started on first use.

    If the reactor is already running (in another thread), it is used as it is, and left
    for its owner to stop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.exiting = threading.Event()

    def running(self, timeout: float | None) -> Any:
        """The global reactor, running: started in our thread if nobody runs it yet."""
        reactor = _globalReactor()
        with self._lock:
            if self._thread is None and not reactor.running:
                self._start(reactor, DEFAULT_TIMEOUT if timeout is None else timeout)
        return reactor

    def _start(self, reactor: Any, timeout: float) -> None:
        running = threading.Event()
        refused: list[BaseException] = []

        def run() -> None:
            try:
                # Signal handlers can only be installed by the main thread; Ctrl-C stays
                # the caller's (a KeyboardInterrupt in a blocking wait abandons that call).
                reactor.run(installSignalHandlers=False)
            except Exception as reason:  # ReactorNotRestartable, ReactorAlreadyRunning
                refused.append(reason)
                running.set()

        reactor.callFromThread(running.set)  # runs once the reactor loop turns
        thread = threading.Thread(target=run, name="spread.blocking reactor", daemon=True)
        thread.start()
        if not running.wait(timeout):
            raise TimeoutError(f"the reactor thread did not start within {timeout:g} s")
        if refused and not reactor.running:
            raise RuntimeError(
                f"spread.blocking cannot run the reactor ({refused[0]!r}); a reactor that "
                "has stopped cannot be started again, so make blocking calls before it stops"
            ) from refused[0]
        if not refused:
            self._thread = thread
            atexit.register(self._stopAtExit, reactor)

    def _stopAtExit(self, reactor: Any) -> None:
        """Stop our reactor cleanly (connections closed, nothing left half-done) at exit."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self.exiting.set()
            reactor.callFromThread(_stopRunning, reactor)
            thread.join(STOP_WAIT)


_reactorThread = _ReactorThread()
_MAIN_THREAD = threading.main_thread()


def _waitFor(
    reactor: Any, start: Callable[[], object], timeout: float | None, what: str,
    discard: Callable[[Any], object] | None = None, hint: str = "",
) -> Any:
    """Run ``start()`` in the reactor thread and wait for its result (a Deferred's, if it
    returns one): return it, or raise its failure as ``Failure.raiseException`` does.

    After ``timeout`` seconds (None: never), or on KeyboardInterrupt, stop waiting: the
    Deferred is cancelled, and ``discard`` gets a result that arrived too late to be used.
    ``what`` and ``hint`` make the timeout's message.
    """
    _refuseReactorThread(what)
    if not reactor.running:
        raise RuntimeError(f"{what}: the reactor has stopped; blocking calls need it running")
    outcome: futures.Future[Any] = futures.Future()
    started: list[defer.Deferred[Any]] = []

    def begin() -> None:
        d = defer.maybeDeferred(start)
        started.append(d)
        d.addBoth(outcome.set_result)  # consumes any failure: nothing is logged as unhandled

    def abandon() -> None:
        for d in started:
            d.cancel()
        late = outcome.result() if outcome.done() else None
        if discard is not None and late is not None and not isinstance(late, Failure):
            discard(late)

    reactor.callFromThread(begin)
    try:
        result = outcome.result(timeout)
    except futures.TimeoutError:
        reactor.callFromThread(abandon)
        raise TimeoutError(f"{what}: no answer within {timeout:g} s{hint}") from None
    except BaseException:
        reactor.callFromThread(abandon)
        raise
    if _reactorThread.exiting.is_set() and threading.current_thread() is not _MAIN_THREAD:
        # The process is ending and this call with it (its connection closed under it): the
        # thread stays waiting, as Python leaves every daemon thread, instead of waking up
        # with PBConnectionLost to print a traceback on the way out.
        threading.Event().wait()
    if isinstance(result, Failure):
        result.raiseException()
    return result


# ---------------------------------------------------------------------------------------------
# Connections


_HOST_PORT = re.compile(r"(?P<host>\[[^\]]+\]|[^:\[\]]+):(?P<port>\d+)")


def _endpointFor(reactor: Any, description: str) -> Any:
    """The client endpoint ``description`` names: a Twisted endpoint string, or HOST:PORT."""
    try:
        return endpoints.clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    except ValueError as unknown:
        plain = _HOST_PORT.fullmatch(description.strip())
        if plain is None:
            raise _badEndpoint(description, unknown) from unknown
        host = plain["host"].strip("[]")
        return endpoints.HostnameEndpoint(reactor, host, int(plain["port"]))
    except TypeError as incomplete:  # "tcp:8789": the endpoint's parser lacks an argument
        raise _badEndpoint(description, incomplete) from incomplete


def _badEndpoint(description: str, reason: Exception) -> ValueError:
    return ValueError(
        f"{description!r} is not a client endpoint ({reason}); write for instance "
        "'tcp:HOST:PORT', 'unix:/path/to/socket', 'tls:HOST:PORT' or just 'HOST:PORT'"
    )


class _Connection:
    """One PB connection made for blocking callers; every reference that came over it
    shares it (and closing it closes them all)."""

    def __init__(self, description: str, timeout: float | None) -> None:
        self.reactor = _globalReactor()
        self.endpoint = _endpointFor(self.reactor, description)  # a bad one fails here, early
        self.description = description
        self.timeout = timeout
        self.factory = pb.PBClientFactory(handshakeTimeout=None)  # our wait bounds it
        self.broker: Any = None

    def open(self, then: Callable[[pb.PBClientFactory], defer.Deferred[Any]]) -> Any:
        """Connect and wait for ``then(factory)`` (the root or a login): its reference."""
        endpoint = self.endpoint
        _reactorThread.running(self.timeout)

        async def opening() -> Any:
            broker = await endpoint.connect(self.factory)
            try:
                return await then(self.factory)
            except BaseException:
                broker.transport.loseConnection()  # refused, timed out or cancelled
                raise

        reference = _waitFor(
            self.reactor, lambda: defer.ensureDeferred(opening()), self.timeout,
            f"connecting to {self.description!r}", discard=self._dropLate,
        )
        self.broker = reference.broker
        return reference

    def _dropLate(self, reference: Any) -> None:
        reference.broker.transport.loseConnection()

    def run(
        self, start: Callable[[], object], timeout: float | None, what: str, hint: str = ""
    ) -> Any:
        """``start()``'s result from the reactor thread, with any references wrapped."""
        return self.wrap(_waitFor(self.reactor, start, timeout, what, hint=hint))

    def wrap(self, value: Any) -> Any:
        """``value`` with its references (in lists, tuples, dicts and sets too) made
        blocking."""
        return _mapped(value, self._wrapOne, {})

    def _wrapOne(self, value: Any) -> Any:
        if isinstance(value, pb.RemoteReference):
            return BlockingReference(value, self, self.timeout)
        if isinstance(value, pb.RemoteCache):
            return BlockingCache(value, self)
        return value

    @property
    def closed(self) -> bool:
        return self.broker is None or bool(self.broker.disconnected)

    def close(self) -> None:
        """Close the connection and wait until it has closed (at once in the reactor)."""
        if self.closed or not self.reactor.running:
            return
        if _inReactorThread():
            self.broker.transport.loseConnection()
            return
        _waitFor(
            self.reactor, self._closing, self.timeout,
            f"closing the connection to {self.description!r}",
        )

    def _closing(self) -> defer.Deferred[None]:
        closed: defer.Deferred[None] = defer.Deferred()
        self.broker.notifyOnDisconnect(lambda: closed.callback(None))
        self.broker.transport.loseConnection()
        return closed


# ---------------------------------------------------------------------------------------------
# Walking results and arguments

_CONTAINERS = (list, tuple, dict, set, frozenset)


def _mapped(value: Any, leaf: Callable[[Any], Any], memo: dict[int, Any]) -> Any:
    """``value`` with ``leaf`` applied to everything that is not a plain container.

    Containers are rebuilt only if something in them changed; shared and cyclic parts stay
    shared and cyclic (``memo`` maps ids already seen to their results).
    """
    kind = type(value)
    if kind not in _CONTAINERS:
        return leaf(value)
    seen = memo.get(id(value))
    if seen is not None:
        return seen
    changed = False

    def each(item: Any) -> Any:
        nonlocal changed
        new = _mapped(item, leaf, memo)
        changed = changed or new is not item
        return new

    rebuilt: Any
    if kind is list:
        rebuilt = memo[id(value)] = []  # first, so that a list inside itself finds it
        rebuilt.extend(each(item) for item in value)
    elif kind is dict:
        rebuilt = memo[id(value)] = {}
        for key, item in value.items():
            rebuilt[each(key)] = each(item)
    else:
        rebuilt = kind(each(item) for item in value)
    result = rebuilt if changed else value
    memo[id(value)] = result
    return result


def _unwrapOne(value: Any) -> Any:
    if isinstance(value, BlockingReference):
        return value.reference
    if isinstance(value, BlockingCache):
        return value.replica
    return value


def _unwrapped(value: Any) -> Any:
    """Arguments as PB sends them: blocking wrappers replaced by what they wrap."""
    return _mapped(value, _unwrapOne, {})


# ---------------------------------------------------------------------------------------------
# What users hold


class BlockingReference:
    """A ``RemoteReference`` whose ``callRemote`` waits for the answer and returns it.

    A remote exception raises ``pb.RemoteError`` (as ``await`` does), with the remote class's
    name in ``typeName``; a closed connection raises ``pb.DeadReferenceError``, and one that
    closes while the call waits ``pb.PBConnectionLost``; no answer in time raises
    ``TimeoutError``. References in the answer (also inside lists, tuples, dicts and sets)
    come back as ``BlockingReference`` objects, ``RemoteCache`` replicas as ``BlockingCache``.

    ``close()`` (or leaving a ``with`` block) closes the connection the reference came over,
    and with it every reference from that connection.
    """

    __slots__ = ("_connection", "_reference", "_relays", "_timeout")

    def __init__(
        self, reference: pb.RemoteReference, connection: _Connection, timeout: float | None,
        relays: dict[Any, Callable[[pb.RemoteReference], None]] | None = None,
    ) -> None:
        self._reference = reference
        self._connection = connection
        self._timeout = timeout
        # notifyOnDisconnect callbacks and what stands for each on the reference; shared by
        # the withTimeout views of one reference, so any of them can forget a callback.
        self._relays = {} if relays is None else relays

    @property
    def reference(self) -> pb.RemoteReference:
        """The underlying ``RemoteReference``, for Deferred code running in the reactor."""
        return self._reference

    @property
    def timeout(self) -> float | None:
        """Seconds each call through this reference waits for its answer (None: for ever)."""
        return self._timeout

    @property
    def disconnected(self) -> bool:
        """Whether the connection this reference came over has closed."""
        return bool(self._reference.broker.disconnected)

    def callRemote(self, name: str, /, *args: Any, **kw: Any) -> Any:
        """Call ``remote_<name>(*args, **kw)`` on the remote object and return its answer.

        Waits at most ``self.timeout`` seconds; use ``withTimeout(seconds)`` for a call that
        needs another bound. Arguments may hold blocking references and caches.
        """
        args, kw = _unwrapped(args), _unwrapped(kw)
        reference = self._reference
        return self._connection.run(
            lambda: reference.callRemote(name, *args, **kw), self._timeout,
            f"callRemote({name!r}) on {self._label()}",
            hint="; the server may still be running it (to wait longer, call through "
            "ref.withTimeout(seconds))",
        )

    def withTimeout(self, seconds: float | None) -> BlockingReference:
        """This reference, with calls through it waiting at most ``seconds`` (None: for ever).

        ``root.withTimeout(300).callRemote("report")`` waits five minutes for that call.
        """
        if seconds is not None and not seconds > 0:
            raise ValueError(f"a timeout is a positive number of seconds or None, not {seconds!r}")
        return BlockingReference(self._reference, self._connection, seconds, self._relays)

    def remoteMethod(self, name: str) -> Callable[..., Any]:
        """A function that does ``callRemote(name, ...)``."""

        def call(*args: Any, **kw: Any) -> Any:
            return self.callRemote(name, *args, **kw)

        call.__name__ = name
        return call

    def notifyOnDisconnect(self, callback: Callable[[BlockingReference], object]) -> None:
        """Call ``callback(self)`` once when the connection closes (at once if it has).

        The callback runs in the reactor thread: keep it short, and make no blocking calls
        from it (hand work to another thread, or set a ``threading.Event``).
        """
        if not callable(callback):
            raise TypeError(f"notifyOnDisconnect needs a callable, not {callback!r}")

        def relay(_reference: pb.RemoteReference) -> None:
            callback(self)

        self._relays[callback] = relay
        reference = self._reference
        _waitFor(
            self._connection.reactor, lambda: reference.notifyOnDisconnect(relay),
            self._connection.timeout, "notifyOnDisconnect",
        )

    def dontNotifyOnDisconnect(self, callback: Callable[[BlockingReference], object]) -> None:
        """Forget a callback given to ``notifyOnDisconnect`` (unknown ones are ignored)."""
        relay = self._relays.pop(callback, None)
        if relay is not None:
            reference = self._reference
            _waitFor(
                self._connection.reactor, lambda: reference.dontNotifyOnDisconnect(relay),
                self._connection.timeout, "dontNotifyOnDisconnect",
            )

    def close(self) -> None:
        """Close this reference's connection; wait until it has closed. Closing twice is
        harmless."""
        self._connection.close()

    def __enter__(self) -> BlockingReference:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockingReference):
            return self._reference == other._reference
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._reference)

    def _label(self) -> str:
        luid = self._reference.luid
        name = luid.decode("utf-8", "replace") if isinstance(luid, bytes) else f"#{luid}"
        return f"{name} at {self._connection.description}"

    def __repr__(self) -> str:
        if self.disconnected:
            state = "disconnected"
        elif self._timeout is None:
            state = "no timeout"
        else:
            state = f"timeout {self._timeout:g} s"
        return f"<BlockingReference {self._label()} ({state})>"


class BlockingCache:
    """A ``RemoteCache`` replica, read safely from any thread.

    The master's updates (``observe_*``) change the replica in the reactor thread, so every
    attribute is read there: ``cache.name`` waits for the attribute's value, and calling a
    method (``cache.count()``) runs it there and waits for its result. A value read this way
    is the replica's own object, which later updates may change; copy it in a method of the
    replica if it must stay still. ``replica`` is the replica itself, for reactor code.
    """

    __slots__ = ("_connection", "_replica")

    def __init__(self, replica: pb.RemoteCache, connection: _Connection) -> None:
        self._replica = replica
        self._connection = connection

    @property
    def replica(self) -> pb.RemoteCache:
        """The ``RemoteCache`` object itself; touch it only in the reactor thread."""
        return self._replica

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in BlockingCache.__slots__:
            # copy, pickle and friends probing for protocols; or our own fields, unset
            raise AttributeError(name)
        replica, connection = self._replica, self._connection
        value = connection.run(
            lambda: getattr(replica, name), connection.timeout, f"reading {name!r}"
        )
        if not callable(value) or isinstance(value, (BlockingReference, BlockingCache)):
            return value

        def method(*args: Any, **kw: Any) -> Any:
            args, kw = _unwrapped(args), _unwrapped(kw)
            return connection.run(lambda: value(*args, **kw), connection.timeout, f"{name}()")

        method.__name__ = name
        return method

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BlockingCache):
            return self._replica == other._replica
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._replica)

    def __repr__(self) -> str:
        kind = type(self._replica).__qualname__
        return f"<BlockingCache of a {kind} at {self._connection.description}>"


# ---------------------------------------------------------------------------------------------
# Entry points


def connect(endpoint: str, *, timeout: float | None = DEFAULT_TIMEOUT) -> BlockingReference:
    """Connect to the PB server at ``endpoint`` and return its root object.

    ``endpoint`` is a Twisted client endpoint string (``"tcp:HOST:PORT"``,
    ``"unix:/path/to/socket"``, ``"tls:HOST:PORT"``) or just ``"HOST:PORT"``. ``timeout``
    bounds the connection and is the default for every call over it (None: wait for ever).
    Raises Twisted's ``ConnectError`` family if the connection fails, ``TimeoutError`` if no
    PB connection is ready in time.
    """
    _refuseReactorThread("spread.blocking.connect")
    connection = _Connection(endpoint, timeout)
    root = connection.open(lambda factory: factory.getRootObject())
    return BlockingReference(root, connection, timeout)


def login(
    endpoint: str, credentials: Any, client: Any = None, *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> BlockingReference:
    """Connect to the PB login server at ``endpoint``, log in, and return the perspective.

    ``credentials`` come from ``twisted.cred.credentials``: ``UsernamePassword(b"alice",
    b"secret")`` or ``Anonymous()``. ``client`` is the mind, a ``pb.Referenceable`` the server
    may call back; its ``remote_*`` methods run in the reactor thread. A refused login raises
    ``pb.RemoteError`` (``typeName`` ``"twisted.cred.error.UnauthorizedLogin"``). ``endpoint``
    and ``timeout`` are as for ``connect``.
    """
    _refuseReactorThread("spread.blocking.login")
    connection = _Connection(endpoint, timeout)
    perspective = connection.open(lambda factory: factory.login(credentials, client))
    return BlockingReference(perspective, connection, timeout)
