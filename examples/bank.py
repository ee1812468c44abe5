"""What the bank example's server and client share: the errors the server raises on purpose.

A pb.Error crosses the wire under its dotted class name, "bank.InsufficientFunds", so the
client can tell it apart by importing the same class. See docs/howto-errors.md.
"""

from __future__ import annotations

from spread import pb


class InsufficientFunds(pb.Error):
    """The account holds less than was asked for."""
