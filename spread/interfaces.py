"""Interfaces for objects that choose their own jelly form (``twisted.spread.interfaces``)."""

from __future__ import annotations

from zope.interface import Interface  # type: ignore[import-untyped]


class IJellyable(Interface):  # type: ignore[misc]
    """An object that writes its own s-expression when it is jellied."""

    def jellyFor(jellier: object) -> object:  # noqa: N805
        """Return the s-expression that stands for this object on the wire."""


class IUnjellyable(Interface):  # type: ignore[misc]
    """An object that rebuilds itself from the s-expression it was sent as."""

    def unjellyFor(unjellier: object, jellyList: list[object]) -> object:  # noqa: N805
        """Fill this blank instance from ``jellyList`` and return the finished object.

        ``unjellier`` lives for one call to ``unjelly``; ``jellyList`` is the list
        whose first element is the type tag this class was registered for.
        """


__all__ = ["IJellyable", "IUnjellyable"]
