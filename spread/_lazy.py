"""Per-connection attributes made on first use.

Most connections of a large server never export a reference, import a cache, page, or ask to
be told of a disconnect. Every object a connection holds is one more that the garbage collector
walks on each full collection, and at thousands of connections that walk is most of what
accepting one more costs: so what most connections never use is not made for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class perConnection(Generic[T]):  # noqa: N801 - used as a decorator, like property
    """An attribute made on first use and kept in the instance's ``__dict__``.

    ``functools.cached_property`` without its lock (on Python 3.11 every first access takes
    it): a connection's state is only touched from its reactor thread. The attribute stays
    assignable, as the plain attribute it replaces was.
    """

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._name = make.__name__

    @overload
    def __get__(self, instance: None, owner: type) -> perConnection[T]: ...

    @overload
    def __get__(self, instance: object, owner: type) -> T: ...

    def __get__(self, instance: object, owner: type) -> T | perConnection[T]:
        if instance is None:
            return self
        value = instance.__dict__[self._name] = self._make(instance)
        return value
