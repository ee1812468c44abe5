"""Objects to s-expressions: the jellier behind ``spread.jelly.jelly``.

The output is exactly Twisted's, down to reference numbering, so the bytes on
the wire match. The facts that shape it:

* Only containers (list, tuple, dict, set, frozenset) and instances are tracked
  for sharing; strings, numbers, dates and the like are written out each time.
* A tracked object seen a second time is written ``[b"dereference", n]``, and its
  first occurrence becomes ``[b"reference", n, <its form>]``. Ids are numbered
  in the order the second occurrences are met, starting at 1.

Twisted rewrites the first occurrence in place the moment the second is seen,
which needs a placeholder list per tracked object. We only note the id, and wrap
every noted first occurrence in place once the whole graph is written
(``jellyRoot``): the same result, with less work per container on the hot path.

The output is for banana and should be treated as read-only: a string used as a
key in many dicts shares one ``[b"unicode", ...]`` list.
"""

from __future__ import annotations

import datetime
import decimal
import types
from collections.abc import Callable
from typing import Any

from spread._jelly_base import (
    DummySecurityOptions,
    InsecureJelly,
    Jellyable,
    SecurityOptions,
    Unpersistable,
    qual,
)
from spread._quote import quote

_OUR_TYPE_CHECKS = (SecurityOptions.isTypeAllowed, DummySecurityOptions.isTypeAllowed)


class Jellier:
    """The state of one ``jelly()`` call, handed to ``jellyFor(jellier)`` methods.

    ``jelly(obj)`` writes a nested object; ``prepare``/``preserve`` bracket a
    custom form so that it can be shared and take part in cycles::

        def jellyFor(self, jellier):
            sexp = jellier.prepare(self)
            sexp.extend([b"my.Type", jellier.jelly(self.state)])
            return jellier.preserve(self, sexp)
    """

    def __init__(self, taster: Any, persistentStore: Any = None, invoker: Any = None) -> None:
        self.taster = taster
        self.persistentStore = persistentStore
        self.invoker = invoker
        # id -> the list that stands for that object in the output.
        self._preserved: dict[int, list[Any]] = {}
        # Ids are only meaningful while their objects live. Containers met while
        # walking are held by their parents; what user code hands us (states from
        # __getstate__ or getStateFor, objects given to jelly() or prepare()) may
        # be temporary, so we hold it until the end.
        self._alive: list[object] = []
        # id -> its [b"dereference", n], for objects met a second time.
        self._cooked: dict[int, list[Any]] = {}
        self._keyForms: dict[str, list[Any]] = {}
        # Twisted's own allowlists pass every type when jellying (any dotted name
        # passed its isTypeAllowed); a taster of the user's making is asked.
        self._checkTypes = getattr(type(taster), "isTypeAllowed", None) not in _OUR_TYPE_CHECKS

    # -- the interface jellyFor methods use -----------------------------------------------

    def jelly(self, obj: Any) -> Any:
        """The s-expression for ``obj`` (a back-reference if it was written before)."""
        self._alive.append(obj)
        kind = type(obj)
        if kind is str:
            return [b"unicode", obj.encode()]  # UTF-8, strict
        if kind is int or kind is float or kind is bytes:
            return obj
        handler = _HANDLERS.get(kind)
        if handler is not None:
            return handler(self, obj)
        return self._jellyOther(obj)

    def prepare(self, obj: object) -> list[Any]:
        """Start the form for ``obj``: extend the returned list, then ``preserve`` it."""
        sexp: list[Any] = []
        self._preserved[id(obj)] = sexp
        self._alive.append(obj)
        return sexp

    def preserve(self, obj: object, sexp: list[Any]) -> list[Any]:
        """Finish the form for ``obj`` so later occurrences refer back to it."""
        self._preserved[id(obj)] = sexp
        return sexp

    def unpersistable(self, reason: str | bytes, sxp: list[Any] | None = None) -> list[Any]:
        """``[b"unpersistable", reason]`` (appended to ``sxp`` if given): a note that an
        object was not sent."""
        if sxp is None:
            sxp = []
        sxp.append(b"unpersistable")
        sxp.append(reason.encode("utf-8") if isinstance(reason, str) else reason)
        return sxp

    # -- the driver -------------------------------------------------------------------------

    def jellyRoot(self, obj: Any) -> Any:
        """Jelly a whole graph, then wrap the first occurrence of each shared object."""
        sexp = self.jelly(obj)
        if self._cooked:
            preserved = self._preserved
            for obj_id, deref in self._cooked.items():
                first = preserved[obj_id]
                first[:] = [b"reference", deref[1], first[:]]
        return sexp

    def _seenAgain(self, obj_id: int) -> list[Any]:
        deref = self._cooked.get(obj_id)
        if deref is None:
            deref = [b"dereference", len(self._cooked) + 1]
            self._cooked[obj_id] = deref
        return deref

    # -- containers ---------------------------------------------------------------------------

    def _jellyDict(self, obj: dict[Any, Any]) -> list[Any]:
        obj_id = id(obj)
        preserved = self._preserved
        if obj_id in preserved:
            return self._seenAgain(obj_id)
        sexp: list[Any] = [b"dictionary"]
        preserved[obj_id] = sexp
        append = sexp.append
        handlers = _HANDLERS
        # Dictionaries in one message mostly share their keys: write each string
        # key's form once and reuse that list (the output is read-only anyway).
        key_forms = self._keyForms
        for key, value in obj.items():
            if type(key) is str:
                form = key_forms.get(key)
                if form is None:
                    form = key_forms[key] = [b"unicode", key.encode()]
                key = form
            else:
                kind = type(key)
                if kind is not int and kind is not float and kind is not bytes:
                    handler = handlers.get(kind)
                    key = handler(self, key) if handler is not None else self._jellyOther(key)
            kind = type(value)
            if kind is str:
                value = [b"unicode", value.encode()]
            elif kind is bool:
                value = [b"boolean", b"true" if value else b"false"]
            elif kind is not int and kind is not float and kind is not bytes:
                handler = handlers.get(kind)
                value = handler(self, value) if handler is not None else self._jellyOther(value)
            append([key, value])
        return sexp

    # -- simple values ------------------------------------------------------------------------

    def _jellyNone(self, obj: None) -> list[Any]:
        return [b"None"]

    def _jellyBool(self, obj: bool) -> list[Any]:
        return [b"boolean", b"true" if obj else b"false"]

    def _jellyDatetime(self, obj: datetime.datetime) -> list[Any]:
        if obj.tzinfo is not None:
            raise NotImplementedError("jelly has no form for a datetime with a tzinfo")
        fields = (obj.year, obj.month, obj.day, obj.hour, obj.minute, obj.second, obj.microsecond)
        return [b"datetime", _spaced(fields)]

    def _jellyTime(self, obj: datetime.time) -> list[Any]:
        if obj.tzinfo is not None:
            raise NotImplementedError("jelly has no form for a time with a tzinfo")
        return [b"time", _spaced((obj.hour, obj.minute, obj.second, obj.microsecond))]

    def _jellyDate(self, obj: datetime.date) -> list[Any]:
        return [b"date", _spaced((obj.year, obj.month, obj.day))]

    def _jellyTimedelta(self, obj: datetime.timedelta) -> list[Any]:
        return [b"timedelta", _spaced((obj.days, obj.seconds, obj.microseconds))]

    def _jellyDecimal(self, obj: decimal.Decimal) -> list[Any]:
        # [decimal, signed digits as an int, exponent]. Infinity and NaN have a
        # str exponent ("F", "n", "N"), as in Twisted; banana cannot carry those.
        sign, digits, exponent = obj.as_tuple()
        # Through Decimal, not str: int() refuses strings of over 4300 digits.
        value = int(decimal.Decimal((0, digits, 0))) if digits else 0
        return [b"decimal", -value if sign else value, exponent]

    # -- everything else: Jellyables, code objects, instances --------------------------------

    def _jellyOther(self, obj: Any) -> Any:
        if isinstance(obj, Jellyable):
            obj_id = id(obj)
            if obj_id in self._preserved:
                return self._seenAgain(obj_id)
            if self.invoker is not None and not getattr(
                type(obj).jellyFor, "sameForEveryConnection", False
            ):
                specific = getattr(self.invoker, "_connectionSpecific", None)
                if specific is not None:
                    specific()
            return obj.jellyFor(self)
        kind = type(obj)
        if self._checkTypes and not self.taster.isTypeAllowed(qual(kind).encode("utf-8")):
            raise InsecureJelly(f"type {qual(kind)!r} is not allowed by the taster: {quote(obj)}")
        if isinstance(obj, types.MethodType):
            method_self = obj.__self__
            return [
                b"method", obj.__func__.__name__, self.jelly(method_self),
                self.jelly(method_self.__class__),
            ]
        if isinstance(obj, types.FunctionType):
            return [b"function", f"{obj.__module__}.{obj.__qualname__}"]
        if isinstance(obj, types.ModuleType):
            return [b"module", obj.__name__]
        if issubclass(kind, type):
            return [b"class", qual(obj).encode("utf-8")]
        return self._jellyInstance(obj)

    def _jellyInstance(self, obj: Any) -> list[Any]:
        obj_id = id(obj)
        if obj_id in self._preserved:
            return self._seenAgain(obj_id)
        sexp = self.prepare(obj)
        if self.persistentStore:
            persistent = self.persistentStore(obj, self)
            if persistent is not None:
                sexp.extend([b"persistent", persistent])
                return sexp
        cls = obj.__class__
        if not self.taster.isClassAllowed(cls):
            if self.invoker is not None and cls is not Unpersistable:  # (not one passed on)
                _refuseTwistedFlavor(cls)
                self.invoker.placeholderSent(cls)
            return self.unpersistable(f"instance of class {qual(cls)} deemed insecure", sexp)
        sexp.append(qual(cls).encode("utf-8"))
        state = obj.__getstate__() if hasattr(obj, "__getstate__") else obj.__dict__
        sexp.append(self.jelly(state))  # (the public method: keeps the state alive)
        return sexp


def _refuseTwistedFlavor(cls: type) -> None:
    """Refuse, naming the fix, an instance of a ``twisted.spread`` class on a spread broker.

    In a program half-way through the import swap, a class still deriving from
    Twisted's ``Copyable`` or ``Referenceable`` would otherwise travel as a
    placeholder and fail much later, far from its cause.
    """
    for base in cls.__mro__:
        if base.__module__.startswith("twisted.spread."):
            raise TypeError(
                f"cannot send a {qual(cls)}: it derives from Twisted's "
                f"{base.__module__}.{base.__qualname__}, which a spread broker does not "
                f"serialize; import {base.__name__} from spread.pb (or spread.flavors) instead"
            )


def _spaced(fields: tuple[int, ...]) -> bytes:
    return " ".join(map(str, fields)).encode("ascii")


def _sequence(tag: bytes) -> Callable[[Jellier, Any], list[Any]]:
    """The handler for a list, tuple, set or frozenset: ``[tag, item, ...]``, tracked."""

    def jellySequence(jellier: Jellier, obj: Any) -> list[Any]:
        obj_id = id(obj)
        preserved = jellier._preserved
        if obj_id in preserved:
            return jellier._seenAgain(obj_id)
        sexp: list[Any] = [tag]
        preserved[obj_id] = sexp
        # Simple values are written inline: the handlers cost a call each.
        append = sexp.append
        for value in obj:
            kind = type(value)
            if kind is str:
                append([b"unicode", value.encode()])
            elif kind is int or kind is float or kind is bytes:
                append(value)
            else:
                handler = _HANDLERS.get(kind)
                if handler is not None:
                    append(handler(jellier, value))
                else:
                    append(jellier._jellyOther(value))
        return sexp

    return jellySequence


# Exact types only: a subclass of list or int is an instance, as in Twisted.
_HANDLERS: dict[type, Callable[[Jellier, Any], Any]] = {
    type(None): Jellier._jellyNone,
    bool: Jellier._jellyBool,
    list: _sequence(b"list"),
    tuple: _sequence(b"tuple"),
    dict: Jellier._jellyDict,
    set: _sequence(b"set"),
    frozenset: _sequence(b"frozenset"),
    datetime.datetime: Jellier._jellyDatetime,
    datetime.date: Jellier._jellyDate,
    datetime.time: Jellier._jellyTime,
    datetime.timedelta: Jellier._jellyTimedelta,
    decimal.Decimal: Jellier._jellyDecimal,
}
