"""The one table of class names spread sends and accepts in place of its own.

Jelly puts dotted class names on the wire (a copied failure's tag, the type
and parent classes inside it). A Twisted peer knows these classes as
``twisted.spread.*``; spread's equivalents are named by where users import
them from. Sending Twisted's names keeps the bytes identical to Twisted's, and
mapping them back on receipt lets ``failure.check(spread.pb.Error)`` match an
error from either kind of peer. It is a plain table of strings, imported by
anything and importing nothing; ``tests/test_pb_wire.py`` holds each entry to
the class it names, so moving a class between our modules cannot change the
wire unnoticed.
"""

from __future__ import annotations

COPYABLE_FAILURE = b"twisted.spread.pb.CopyableFailure"
"""The jelly tag of a copied failure, whichever side sends it."""

TWISTED_NAMES: dict[str, str] = {
    "spread.pb.Error": "twisted.spread.pb.Error",
    "spread.pb.ProtocolError": "twisted.spread.pb.ProtocolError",
    "spread.pb.DeadReferenceError": "twisted.spread.pb.DeadReferenceError",
    "spread.pb.RemoteError": "twisted.spread.pb.RemoteError",
    "spread.pb.PBConnectionLost": "twisted.spread.pb.PBConnectionLost",
    "spread.flavors.NoSuchMethod": "twisted.spread.flavors.NoSuchMethod",
    "spread.pb.CopyableFailure": COPYABLE_FAILURE.decode("ascii"),
    "spread.jelly.InsecureJelly": "twisted.spread.jelly.InsecureJelly",
    "spread.banana.BananaError": "twisted.spread.banana.BananaError",
}
"""spread's dotted class name -> the name a Twisted peer knows for the same class."""

_OURS: dict[str, str] = {theirs: ours for ours, theirs in TWISTED_NAMES.items()}


def toWire(name: str) -> str:
    """The name a Twisted peer knows for the class spread calls ``name``."""
    return TWISTED_NAMES.get(name, name)


def fromWire(name: str) -> str | None:
    """spread's name for a class a peer named ``name``, or None if it is not one of ours."""
    return _OURS.get(name)
