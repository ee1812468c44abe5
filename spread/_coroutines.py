"""Running the coroutines that ``async def`` remote methods return, on whichever reactor runs.

A remote method (``remote_*``, ``perspective_*``, ``view_*``, ``observe_*``) may be a
coroutine; the broker hands it to ``runCoroutine`` and answers when the Deferred it gets back
fires. What the coroutine may ``await`` depends on the reactor, so the driver is chosen once
per process, from the installed reactor, the first time a coroutine runs:

- Under Twisted's asyncio reactor (``twisted.internet.asyncioreactor``, which ``spread.aio``
  installs) the coroutine runs as an asyncio ``Task`` on the running event loop, so it may
  await both worlds: asyncio awaitables (``asyncio.sleep``, futures, tasks, streams) pass
  straight to asyncio, and a Deferred it awaits wakes the task through a future when it fires.
  Inside the task, ``asyncio.current_task()``, ``asyncio.timeout()`` and ``wait_for`` work as
  in any asyncio code. The task starts on the loop's next turn, not during the call (as
  ``Deferred.fromCoroutine`` would start it). A coroutine that runs before the loop does (from
  the reactor's startup code) has no loop to run on, and is run as under any other reactor.
- Under any other reactor it is ``Deferred.fromCoroutine``, as in Twisted: Deferreds only.
  There is no asyncio loop then, so an asyncio awaitable fails the call with
  ``AsyncioReactorRequired``, whose message says how to get the asyncio reactor, rather than
  with asyncio's own puzzling "await wasn't used with future" or "no running event loop".

Either way the caller gets a Deferred, and cancelling it cancels the coroutine: under asyncio
its task is cancelled (the coroutine sees ``asyncio.CancelledError`` at its ``await``) and the
Deferred fails at once with Twisted's ``CancelledError``, as a cancelled call does in the
broker; a Deferred the coroutine was awaiting is cancelled with it. A task cancelled by asyncio
itself (as ``asyncio.run`` does to the tasks still running when it ends) fails its Deferred
with ``CancelledError`` too, once the task has ended.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from spread._failures import currentFailure, failureOf, isFailureOf

__all__ = ["AsyncioReactorRequired", "driverFor", "runCoroutine"]

_T = TypeVar("_T")
Driver = Callable[[Coroutine[Any, Any, Any]], "defer.Deferred[Any]"]

_log = Logger()


class AsyncioReactorRequired(RuntimeError):
    """A remote method awaited an asyncio awaitable, but the reactor is not the asyncio one."""


AsyncioReactorRequired.__module__ = "spread.aio"  # its public home, and its name on the wire


def runCoroutine(coroutine: Coroutine[Any, Any, _T]) -> defer.Deferred[_T]:
    """Run a remote method's coroutine with this process's driver; its outcome as a Deferred.

    Until a reactor is installed there is nothing to choose from, so such an early coroutine
    runs with Deferreds only and the choice waits for a later one.
    """
    global _driver
    if _driver is None:
        reactor = sys.modules.get("twisted.internet.reactor")
        if reactor is None:
            return _runWithDeferreds(coroutine)
        _driver = driverFor(reactor)
    return _driver(coroutine)


_driver: Driver | None = None  # chosen at the first coroutine that runs with a reactor installed


def driverFor(reactor: object) -> Driver:
    """How coroutines run under ``reactor``: as asyncio tasks under Twisted's asyncio reactor,
    with ``Deferred.fromCoroutine`` under any other."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if isinstance(reactor, AsyncioSelectorReactor):
        return _runAsTask
    return _runWithDeferreds


# ---------------------------------------------------------------------------------------------
# Under the asyncio reactor: an asyncio Task that also understands Deferreds


def _runAsTask(coroutine: Coroutine[Any, Any, _T]) -> defer.Deferred[_T]:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # Called before the loop runs (code run by the reactor's startup, say): there is no
        # loop to hand a task to, so Deferreds are all this coroutine can await.
        return _runWithDeferreds(coroutine)
    task = loop.create_task(_relayed(coroutine))
    return _deferredOfTask(task, getattr(coroutine, "__qualname__", "a remote method"))


async def _relayed(coroutine: Coroutine[Any, Any, _T]) -> _T:
    # A task needs a real coroutine (Python 3.12 refuses generator-based ones).
    return await _wakingOnDeferreds(coroutine)


@types.coroutine
def _wakingOnDeferreds(coroutine: Coroutine[Any, Any, _T]) -> Generator[Any, Any, _T]:
    """Step ``coroutine`` for an asyncio task, turning each Deferred it awaits into a future.

    Whatever else it yields (asyncio's futures, or a bare yield from ``asyncio.sleep(0)``)
    goes to the task unchanged, and whatever the task sends or throws back goes to the
    coroutine. A Deferred's ``__await__`` reads its result itself once resumed, so for a
    Deferred the task only has to be woken when it has fired.
    """
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            yielded = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]
        sent, thrown = None, None
        try:
            if isinstance(yielded, defer.Deferred):
                yield from _wakerFor(yielded)  # as an await does, so the task accepts it
            else:
                sent = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as error:  # the task's cancellation
            thrown = error


def _wakerFor(awaited: defer.Deferred[Any]) -> asyncio.Future[None]:
    """A future that completes when ``awaited`` fires; cancelling it cancels ``awaited``."""
    waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fired(result: object) -> object:
        if not waker.done():
            waker.set_result(None)
        return result  # left in place for the Deferred's __await__ to return or raise

    def abandoned(waker: asyncio.Future[None]) -> None:
        if waker.cancelled():  # the task was cancelled while it waited
            awaited.cancel()
            awaited.addErrback(_ignoreCancellation)

    awaited.addBoth(fired)
    waker.add_done_callback(abandoned)
    return waker


def _ignoreCancellation(reason: Failure) -> Failure | None:
    return None if isFailureOf(reason, defer.CancelledError) else reason


def _deferredOfTask(task: asyncio.Task[_T], name: str) -> defer.Deferred[_T]:
    """A Deferred for ``task``'s outcome; cancelling it cancels the task.

    The Deferred fails with Twisted's ``CancelledError`` at once, which is what tells the
    broker that its caller stopped waiting; the task ends on its own time, and only an
    unexpected exception from it is then logged.
    """

    def cancel(_: defer.Deferred[_T]) -> None:
        task.cancel()

    running: defer.Deferred[_T] = defer.Deferred(cancel)

    def finished(task: asyncio.Task[_T]) -> None:
        if running.called:
            _logLateFailure(task)
            return
        if task.cancelled():  # by the loop's shutdown, say; the caller still waits
            running.errback(failureOf(defer.CancelledError(f"asyncio cancelled {name}")))
            return
        try:
            result = task.result()
        except BaseException:
            running.errback(currentFailure())
        else:
            running.callback(result)

    task.add_done_callback(finished)
    return running


def _logLateFailure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()  # retrieving it keeps asyncio from reporting it too
    if error is not None and not isinstance(error, (asyncio.CancelledError, defer.CancelledError)):
        _log.failure("a cancelled remote method raised while it stopped", failureOf(error))


# ---------------------------------------------------------------------------------------------
# Under any other reactor: Deferreds only


def _runWithDeferreds(coroutine: Coroutine[Any, Any, _T]) -> defer.Deferred[_T]:
    return defer.Deferred.fromCoroutine(_refusingAsyncio(coroutine))


def _refusingAsyncio(coroutine: Coroutine[Any, Any, _T]) -> Generator[Any, Any, _T]:
    """Step ``coroutine`` for ``Deferred.fromCoroutine``, which understands only Deferreds:
    an asyncio awaitable is refused with an ``AsyncioReactorRequired`` thrown into it."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            yielded = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]
        except RuntimeError as error:
            # What asyncio.sleep, create_task, open_connection... raise with no loop running.
            if str(error) == "no running event loop":
                raise _asyncioRequired(coroutine, "called asyncio") from error
            raise
        sent, thrown = None, None
        if yielded is not None and not isinstance(yielded, defer.Deferred):
            # A future, or a bare yield from asyncio.sleep(0), which fromCoroutine resumes at
            # once and is harmless; a future would never wake this coroutine.
            thrown = _asyncioRequired(coroutine, f"awaited {yielded!r}")
            continue
        try:
            sent = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as error:  # the awaited Deferred failed, or was cancelled
            thrown = error


def _asyncioRequired(coroutine: Coroutine[Any, Any, Any], what: str) -> AsyncioReactorRequired:
    name = getattr(coroutine, "__qualname__", repr(coroutine))
    reactor = sys.modules.get("twisted.internet.reactor")
    running = "no reactor yet" if reactor is None else (
        f"{type(reactor).__module__}.{type(reactor).__qualname__}"
    )
    return AsyncioReactorRequired(
        f"{name} {what}, which needs Twisted's asyncio reactor, but this process runs "
        f"{running}. Install the asyncio reactor "
        "before anything imports twisted.internet.reactor "
        "(twisted.internet.asyncioreactor.install()), or write the program with spread.aio, "
        "which installs it; under this reactor, await Deferreds only."
    )
