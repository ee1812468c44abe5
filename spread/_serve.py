"""``spread serve MODULE:OBJECT``: publish an object from any importable module as a PB root.

Kept out of ``spread.cli`` so the command line's main module stays about parsing and printing.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from twisted.cred.portal import Portal
from twisted.internet import defer, error

from spread import pb

__all__ = ["ServeError", "load_root", "serve"]


class ServeError(Exception):
    """The object to serve could not be found or cannot be a PB root; the message says why."""


def load_root(spec: str) -> Any:
    """The object ``MODULE:OBJECT`` names, called first if it is a class or a factory function.

    The current directory is searched first, as ``python -m`` would, so ``spread serve
    myservice:root`` works from the directory holding ``myservice.py``.
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ServeError(f"expected MODULE:OBJECT (for example myapp.service:root), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ServeError(f"cannot import {module_name!r}: {error}") from error
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise ServeError(f"{module_name} has no {attribute!r}") from None
    if isinstance(found, type) or (
        callable(found) and not isinstance(found, (pb.Referenceable, Portal))
    ):
        found = found()
    if not pb.IPBRoot.providedBy(found) and not isinstance(found, Portal):
        raise ServeError(
            f"{spec} is a {type(found).__name__}, which cannot be a PB root; serve a pb.Root "
            "(or another IPBRoot), a twisted.cred Portal, or a function returning one"
        )
    return found


class _AnnouncingFactory(pb.PBServerFactory):
    """A server factory that prints a line when each client connects and leaves."""

    def buildProtocol(self, addr: Any) -> pb.Broker | None:
        broker = super().buildProtocol(addr)
        if broker is None:
            return None
        peer = f"{getattr(addr, 'host', addr)}:{getattr(addr, 'port', '')}".rstrip(":")
        print(f"connection from {peer}", flush=True)
        broker.notifyOnDisconnect(lambda: print(f"connection from {peer} closed", flush=True))
        return broker


EXIT_CANNOT_LISTEN = 2  # the command line's code for a bad command line, a busy port included


async def serve(reactor: Any, root: Any, spec: str, endpoint: Any, description: str) -> int:
    """Serve ``root`` (what ``spec`` named) at ``endpoint`` (``description`` parsed) until the
    process is stopped."""
    factory = _AnnouncingFactory(root)
    try:
        listening = await endpoint.listen(factory)
    except error.CannotListenError as problem:
        reason = " ".join(str(problem.socketError).split()) or "cannot listen"
        print(f"spread serve: cannot listen on port {problem.port}: {reason}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    host = listening.getHost()
    where = getattr(host, "port", None) or getattr(host, "name", host)
    print(f"serving {spec} on {description}: listening on port {where}", flush=True)
    await defer.Deferred()  # until Ctrl-C or SIGTERM stops the reactor
    return 0
