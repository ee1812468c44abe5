"""The one table of class names spread sends and accepts in place of its own.

Jelly puts dotted class names on the wire (a copied failure's tag, the type
and parent classes inside it). A Twisted peer knows these classes as
``twisted.spread.*``; spread's equivalents live elsewhere. Sending Twisted's
names keeps the bytes identical to Twisted's, and mapping them back on
receipt lets ``failure.check(spread.pb.Error)`` match an error from either
kind of peer. The table is keyed by the class objects, so moving a class
between our modules never changes the wire.
"""

from __future__ import annotations

from functools import lru_cache

from twisted.python.reflect import qual

COPYABLE_FAILURE = b"twisted.spread.pb.CopyableFailure"
"""The jelly tag of a copied failure, whichever side sends it."""


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str]]:
    """Build (ours -> Twisted's, Twisted's -> ours) on first use, once every module exists."""
    from spread import _errors, flavors
    from spread._failures import CopyableFailure
    from spread.banana import BananaError
    from spread.jelly import InsecureJelly

    twisted_names: dict[type, str] = {
        _errors.Error: "twisted.spread.pb.Error",
        _errors.ProtocolError: "twisted.spread.pb.ProtocolError",
        _errors.DeadReferenceError: "twisted.spread.pb.DeadReferenceError",
        _errors.RemoteError: "twisted.spread.pb.RemoteError",
        _errors.PBConnectionLost: "twisted.spread.pb.PBConnectionLost",
        flavors.NoSuchMethod: "twisted.spread.flavors.NoSuchMethod",
        CopyableFailure: COPYABLE_FAILURE.decode("ascii"),
        InsecureJelly: "twisted.spread.jelly.InsecureJelly",
        BananaError: "twisted.spread.banana.BananaError",
    }
    outgoing = {qual(cls): name for cls, name in twisted_names.items()}
    incoming = {name: ours for ours, name in outgoing.items()}
    return outgoing, incoming


def toWire(name: str) -> str:
    """The name a Twisted peer knows for the class spread calls ``name``."""
    return _tables()[0].get(name, name)


def fromWire(name: str) -> str | None:
    """spread's name for a class a peer named ``name``, or None if it is not one of ours."""
    return _tables()[1].get(name)
