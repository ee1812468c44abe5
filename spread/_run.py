"""Running one coroutine to completion on the global reactor: how the ``spread`` command and
the demo's server process run, and how each turns into an exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

from twisted.internet import defer
from twisted.python.failure import Failure

EXIT_FAILED = 1  # the command line's code for a failure, an unexpected one included


def run(job: Callable[[Any], Coroutine[Any, Any, int]], interrupted: int = EXIT_FAILED) -> int:
    """Run ``job(reactor)`` to completion on the global reactor; its exit status, or
    ``interrupted`` if something else (Ctrl-C, SIGTERM) stopped the reactor first."""
    from twisted.internet import reactor as installed

    reactor = cast(Any, installed)
    outcome: list[int] = []

    def finished(result: int | Failure) -> None:
        if isinstance(result, Failure):
            print(result.getTraceback(), file=sys.stderr)
            result = EXIT_FAILED
        outcome.append(result)
        reactor.stop()

    def start() -> None:
        defer.ensureDeferred(job(reactor)).addBoth(finished)

    reactor.callWhenRunning(start)
    reactor.run()
    return outcome[0] if outcome else interrupted
