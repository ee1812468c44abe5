"""The unjellier's leaf forms (dates, decimals, code objects) and its error messages.

Every function here turns malformed input into ``InsecureJelly``: a date
string that does not parse, a decimal with a list for an exponent, a class
name that does not import. Nothing else may escape for bad input. The guards
against costly keys live in ``spread._jelly_keys``.
"""

from __future__ import annotations

import datetime
import decimal
import importlib
import sys
import types
from typing import Any

from spread._jelly_base import InsecureJelly, Unpersistable, qual
from spread._jelly_holes import Hole
from spread._quote import quote


def qualName(cls: type) -> str:
    """``module.Class``, for messages."""
    return qual(cls)


# -- messages ---------------------------------------------------------------------------------


def refusal(tag: bytes) -> str:
    """Why the taster refused ``tag``, and how to allow it."""
    name = tag.decode("utf-8", "backslashreplace")
    if b"." in tag:
        return (
            f"class {name!r} is not allowed; register it with "
            f"setUnjellyableForClass({name!r}, YourClass) or allow it with "
            f"SecurityOptions.allowInstancesOf(...) (or allowTypes({name!r}) "
            "on the SecurityOptions you pass as the taster)"
        )
    if tag in (b"dictionary", b"list", b"tuple", b"reference", b"dereference"):
        return (
            f"type {name!r} is not allowed by this SecurityOptions; "
            "call allowBasicTypes() on it"
        )
    return f"type {name!r} is not allowed; allow it with SecurityOptions.allowTypes({name!r})"


def malformed(sexp: list[Any], expected: str) -> InsecureJelly:
    """The error for a form of the wrong shape."""
    return InsecureJelly(f"malformed s-expression {quote(sexp)}: expected {expected}")


def badAtom(item: Any, sexp: list[Any]) -> InsecureJelly:
    """The error for something that is neither a list nor a wire value."""
    return InsecureJelly(
        f"unexpected {type(item).__name__} {quote(item)} in s-expression {quote(sexp)}"
    )


# -- containers and instances -----------------------------------------------------------------


def blank(cls: type) -> Any:
    """An instance of ``cls`` made without calling ``__init__`` (state comes later)."""
    try:
        return cls.__new__(cls)  # type: ignore[call-overload]
    except TypeError as exc:
        raise InsecureJelly(f"cannot make a blank {qual(cls)}: {exc}") from None


def applyState(obj: Any, state: Any) -> None:
    """Give a generic instance its state: ``__setstate__`` if it has one, else a dict
    becomes its ``__dict__`` (other states are ignored, as Twisted does)."""
    setter = getattr(obj, "__setstate__", None)
    if setter is not None:
        setter(state)
    elif isinstance(state, dict):
        try:
            obj.__dict__ = state or {}
        except (AttributeError, TypeError):
            raise InsecureJelly(f"cannot set the state of a {qual(type(obj))}") from None
    upgradeIfVersioned(obj)


def upgradeIfVersioned(obj: Any) -> None:
    """Bring a ``spread.styles.Versioned`` instance to its class's current version now.

    A peer may hold state saved by an older version of the class; the receiver
    should never see that layout, so the upgrade runs as soon as the state is in
    (``spread.styles`` is looked up, not imported: jelly must not depend on it).
    """
    styles = sys.modules.get("spread.styles")  # not imported: nothing can be Versioned
    if styles is not None and isinstance(obj, styles.Versioned):
        styles.requireUpgrade(obj)


# -- names of modules, classes and functions ----------------------------------------------------


def _text(name: Any, sexp: Any) -> str:
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            raise InsecureJelly(f"invalid UTF-8 in name {quote(name)}") from None
    if not isinstance(name, str) or not name or not all(
        part.isidentifier() for part in name.split(".")
    ):
        raise InsecureJelly(f"expected a dotted Python name in {quote(sexp)}")
    return name


def _import(module_name: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise InsecureJelly(f"module {module_name!r} cannot be imported: {exc}") from None


def _namedAny(name: str) -> Any:
    """The object at dotted path ``name``: the longest importable module prefix, then
    attributes (resolves ``pkg.mod.Class.method`` as Twisted's ``namedAny`` does)."""
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            if not hasattr(obj, attr):
                raise InsecureJelly(f"{name!r} does not exist")
            obj = getattr(obj, attr)
        return obj
    raise InsecureJelly(f"no module of {name!r} can be imported")


def _oneName(sexp: list[Any], form: str) -> str:
    if len(sexp) != 2:
        raise malformed(sexp, f"[{form}, name]")
    return _text(sexp[1], sexp)


def allowedClass(taster: Any, tag: bytes) -> type:
    """The class named by an instance tag, if the taster allows its module and itself."""
    name = _text(tag, tag)
    module_name, _, class_name = name.rpartition(".")
    if not module_name:
        raise InsecureJelly(f"unknown jelly type {name!r}")
    if not taster.isModuleAllowed(module_name):
        raise InsecureJelly(
            f"class {name!r} is not allowed: its module {module_name!r} is not; allow it "
            "with SecurityOptions.allowInstancesOf(...)"
        )
    cls = getattr(_import(module_name), class_name, None)
    if not isinstance(cls, type):
        raise InsecureJelly(f"{name!r} is not a class")
    if not taster.isClassAllowed(cls):
        raise InsecureJelly(
            f"class {name!r} is not allowed; allow it with SecurityOptions.allowInstancesOf(...)"
        )
    return cls


def module(taster: Any, sexp: list[Any]) -> types.ModuleType:
    """``[module, name]``: the module, if the taster allows it."""
    name = _oneName(sexp, "module")
    if not taster.isModuleAllowed(name):
        raise InsecureJelly(
            f"module {name!r} is not allowed; allow it with SecurityOptions.allowModules({name!r})"
        )
    return _import(name)


def classForm(taster: Any, sexp: list[Any]) -> type:
    """``[class, module.Class]``: the class, if the taster allows its module and itself."""
    name = _oneName(sexp, "class")
    module_name, _, class_name = name.rpartition(".")
    if not module_name or not taster.isModuleAllowed(module_name):
        raise InsecureJelly(
            f"class {name!r} is not allowed: its module is not; allow it with "
            "SecurityOptions.allowInstancesOf(...)"
        )
    cls = getattr(_import(module_name), class_name, None)
    if not isinstance(cls, type):
        raise InsecureJelly(f"{name!r} is not a class")
    if not taster.isClassAllowed(cls):
        raise InsecureJelly(
            f"class {name!r} is not allowed; allow it with SecurityOptions.allowInstancesOf(...)"
        )
    return cls


def function(taster: Any, sexp: list[Any]) -> Any:
    """``[function, module.name]``: the function, if the taster allows its module."""
    name = _oneName(sexp, "function")
    module_name = name.rpartition(".")[0]
    if not module_name or not taster.isModuleAllowed(module_name):
        raise InsecureJelly(
            f"function {name!r} is not allowed: allow its module with "
            f"SecurityOptions.allowModules({module_name!r})"
        )
    found = _namedAny(name)
    if not isinstance(found, (types.FunctionType, types.BuiltinFunctionType)):
        raise InsecureJelly(f"{name!r} is not a function")
    return found


def boundMethod(name: Any, owner: Any, cls: Any) -> Any:
    """``[method, name, self, class]``: ``owner``'s method ``name`` defined on ``cls``."""
    if isinstance(name, bytes):
        name = _text(name, name)
    if not isinstance(cls, type) or not isinstance(name, str):
        raise InsecureJelly(f"malformed method {quote(name)} of {quote(cls)}")
    if name not in cls.__dict__:
        raise InsecureJelly(f"{qual(cls)} has no method {name!r}")
    if owner is None:
        return getattr(cls, name)
    try:
        return types.MethodType(cls.__dict__[name], owner)
    except TypeError:
        raise InsecureJelly(f"{qual(cls)}.{name} is not a method") from None


# -- simple values ------------------------------------------------------------------------------


def noneForm(sexp: list[Any]) -> None:
    """``[None]``."""
    if len(sexp) != 1:
        raise malformed(sexp, "[None]")


def booleanForm(sexp: list[Any]) -> bool:
    """``[boolean, true|false]``."""
    if len(sexp) == 2:
        if sexp[1] == b"true":
            return True
        if sexp[1] == b"false":
            return False
    raise malformed(sexp, "[boolean, true|false]")


def unpersistableForm(sexp: list[Any]) -> Unpersistable:
    """``[unpersistable, reason]``: what the sender could not send, and why."""
    if len(sexp) != 2:
        raise malformed(sexp, "[unpersistable, reason]")
    return Unpersistable(f"Unpersistable data: {sexp[1]}")


# -- dates and decimals -----------------------------------------------------------------------


def _numbers(sexp: list[Any], form: str, least: int, most: int) -> list[int]:
    if len(sexp) != 2 or type(sexp[1]) is not bytes:
        raise malformed(sexp, f"[{form}, b'<numbers separated by spaces>']")
    fields = sexp[1].split()
    if not least <= len(fields) <= most:
        raise malformed(sexp, f"{least} to {most} numbers in a {form}")
    try:
        return [int(field) for field in fields]
    except ValueError:
        raise malformed(sexp, f"integers in a {form}") from None


def _build(kind: Any, sexp: list[Any], *args: int, **kwargs: int) -> Any:
    try:
        return kind(*args, **kwargs)
    except (ValueError, OverflowError, TypeError) as exc:
        raise InsecureJelly(f"invalid {kind.__name__} {quote(sexp)}: {exc}") from None


def datetimeForm(sexp: list[Any]) -> datetime.datetime:
    """``[datetime, b"Y M D h m s us"]``."""
    return _build(datetime.datetime, sexp, *_numbers(sexp, "datetime", 3, 7))  # type: ignore[no-any-return]


def dateForm(sexp: list[Any]) -> datetime.date:
    """``[date, b"Y M D"]``."""
    return _build(datetime.date, sexp, *_numbers(sexp, "date", 3, 3))  # type: ignore[no-any-return]


def timeForm(sexp: list[Any]) -> datetime.time:
    """``[time, b"h m s us"]``."""
    return _build(datetime.time, sexp, *_numbers(sexp, "time", 0, 4))  # type: ignore[no-any-return]


def timedeltaForm(sexp: list[Any]) -> datetime.timedelta:
    """``[timedelta, b"days seconds microseconds"]``."""
    days, seconds, microseconds = _numbers(sexp, "timedelta", 3, 3)
    return _build(  # type: ignore[no-any-return]
        datetime.timedelta, sexp, days=days, seconds=seconds, microseconds=microseconds
    )


# Exponents of the special values, which Twisted writes as str (never on the wire).
_SPECIAL_EXPONENTS = ("F", "n", "N")


def decimalForm(sexp: list[Any]) -> decimal.Decimal:
    """``[decimal, signed digits, exponent]``."""
    if len(sexp) != 3 or type(sexp[1]) is not int:
        raise malformed(sexp, "[decimal, int digits, int exponent]")
    value, exponent = sexp[1], sexp[2]
    if type(exponent) is not int and exponent not in _SPECIAL_EXPONENTS:
        raise malformed(sexp, "[decimal, int digits, int exponent]")
    try:
        digits = decimal.Decimal(value).as_tuple().digits
        return decimal.Decimal((1 if value < 0 else 0, digits, exponent))
    except (ValueError, ArithmeticError) as exc:
        raise InsecureJelly(f"invalid decimal {quote(sexp)}: {exc}") from None


# -- forms that call back into the unjellier ------------------------------------------------------


def oldInstanceForm(unjellier: Any, sexp: list[Any]) -> Any:
    """``[instance, [class, name], state]``, the form Twisted stopped writing in 2015."""
    if len(sexp) != 3:
        raise malformed(sexp, "[instance, class, state]")
    cls = unjellier._nested(unjellier._any, sexp[1])
    if not isinstance(cls, type):
        raise InsecureJelly(f"expected a class form in {quote(sexp)}")
    return unjellier._nested(unjellier._instance, cls, [b"instance", sexp[2]])


def methodForm(unjellier: Any, sexp: list[Any]) -> Any:
    """``[method, name, self, class]``: a bound method of an object in the same message."""
    if len(sexp) != 4:
        raise malformed(sexp, "[method, name, self, class]")
    owner = unjellier._nested(unjellier._any, sexp[2])
    cls = unjellier._nested(unjellier._any, sexp[3])
    if type(owner) is Hole:
        raise InsecureJelly("a method of an object still being built cannot be unjellied")
    return boundMethod(sexp[1], owner, cls)


def persistentForm(unjellier: Any, sexp: list[Any]) -> Any:
    """``[persistent, id]``: whatever the caller's ``persistentLoad`` makes of the id."""
    if len(sexp) != 2:
        raise malformed(sexp, "[persistent, id]")
    if unjellier.persistentLoad:
        return unjellier.persistentLoad(sexp[1], unjellier)
    return Unpersistable("Persistent callback not found")
