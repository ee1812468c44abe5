"""Avatars: what a logged-in user's calls reach (``perspective_*`` methods)."""

from __future__ import annotations

from typing import Any

from zope.interface import Interface, implementer  # type: ignore[import-untyped]

from spread.flavors import Referenceable, callArguments, findMethod


class IPerspective(Interface):  # type: ignore[misc]
    """A user's view of a service, reached after logging in (an avatar)."""

    def perspectiveMessageReceived(
        broker: Any,  # noqa: N805
        message: str,
        args: Any,
        kwargs: Any,
    ) -> Any:
        """Handle a call from the peer; return its jellied result (see ``Avatar``)."""


@implementer(IPerspective)
class Avatar:
    """A logged-in user's object: the peer's calls run its ``perspective_*`` methods."""

    def perspectiveMessageReceived(self, broker: Any, message: str, args: Any, kw: Any) -> Any:
        """Run ``perspective_<message>`` with the unjellied arguments."""
        method = findMethod(self, "perspective_", message)
        args, kw = callArguments(broker, args, kw, self)
        return broker.serialize(method(*args, **kw), self, method, args, kw)


class AsReferenceable(Referenceable):
    """Pass ``object`` by reference, sending calls to its ``<messageType>MessageReceived``."""

    def __init__(self, object: Any, messageType: str = "remote") -> None:
        self.remoteMessageReceived = getattr(  # type: ignore[method-assign]
            object, messageType + "MessageReceived"
        )


for _cls in (Avatar, AsReferenceable):
    _cls.__module__ = "spread.pb"
del _cls
