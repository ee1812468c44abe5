"""Object graphs to s-expressions and back, secure by default (``twisted.spread.jelly``).

``jelly(obj)`` turns an object into nested lists of bytes, ints, floats and
further lists (an s-expression) that ``spread.banana`` puts on the wire;
``unjelly(sexp)`` rebuilds the object. The forms are exactly Twisted's, so a
spread peer and a Twisted peer understand each other byte for byte::

    "hi"          -> [b"unicode", b"hi"]
    (1, None)     -> [b"tuple", 1, [b"None"]]
    {"a": True}   -> [b"dictionary", [[b"unicode", b"a"], [b"boolean", b"true"]]]
    shared [a, a] -> [b"list", [b"reference", 1, <a>], [b"dereference", 1]]

Security: ``unjelly(sexp)`` with no taster uses ``globalSecurity``: basic types
(values, lists, tuples, dicts, sets, dates, decimals, shared references) and
the classes registered with ``setUnjellyableForClass`` (registering is the
receiver's consent). Any other class needs a ``SecurityOptions`` that
``allowInstancesOf`` it. Twisted's ``unjelly`` default accepts any class named
in the data; ours does not. See docs/serializer.md.

Error contract: an s-expression that is malformed or asks for something the
taster does not allow raises ``InsecureJelly``: wrong shapes, non-wire objects
inside the lists, unparseable dates, bad UTF-8, undefined, duplicate or
out-of-range reference ids, nesting deeper than ``MAX_DEPTH``, sets and dicts
whose keys were chosen to share a hash, shared tuples reused as keys until they
cost far more to hash than to send (see ``_jelly_keys``: keys cost time linear
in the message, whoever chose them). Any other exception from
``unjelly`` is a bug in spread, or comes from user code it called
(``unjellyFor``, ``__setstate__``, factories, ``persistentLoad``), which it
passes on unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from spread._jelly_base import (
    DummySecurityOptions,
    InsecureJelly,
    Jellyable,
    SecurityOptions,
    Unjellyable,
    Unpersistable,
    globalSecurity,
    qual,
    setUnjellyableFactoryForClass,
    setUnjellyableForClass,
    setUnjellyableForClassTree,
    unjellyableFactoryRegistry,
    unjellyableRegistry,
)
from spread._jelly_forms import upgradeIfVersioned
from spread._jelly_holes import Hole
from spread._jelly_in import MAX_DEPTH, Unjellier
from spread._jelly_out import Jellier
from spread._native import speedups as _speedups
from spread._quote import quote
from spread.interfaces import IJellyable, IUnjellyable

# Users know these classes as spread.jelly.*; so do the dotted names jelly writes.
for _public in (
    DummySecurityOptions, InsecureJelly, Jellyable, SecurityOptions, Unjellyable, Unpersistable,
    Jellier, Unjellier,
):
    _public.__module__ = __name__
del _public

_DUMMY = DummySecurityOptions()

NotKnown = Hole
"""What a custom ``unjellyFor`` may get for an object not built yet (a reference
back into a structure still being read): ``addDependant(container, key)`` has
the object put in ``container[key]`` once it exists, as in Twisted."""

# The tags of the built-in forms, by the names Twisted code imports.
None_atom = b"None"
class_atom = b"class"
module_atom = b"module"
function_atom = b"function"
dereference_atom = b"dereference"
persistent_atom = b"persistent"
reference_atom = b"reference"
dictionary_atom = b"dictionary"
list_atom = b"list"
set_atom = b"set"
tuple_atom = b"tuple"
frozenset_atom = b"frozenset"
unpersistable_atom = b"unpersistable"
DictTypes = (dict,)


def jelly(
    object: Any, taster: Any = _DUMMY, persistentStore: Any = None, invoker: Any = None
) -> Any:
    """The s-expression for ``object``.

    ``taster`` decides which instances are written out: one it does not allow
    (``isClassAllowed``) is written as ``[b"unpersistable", reason]``.
    ``persistentStore(obj, jellier)`` may return an id to send instead of an
    instance. ``invoker`` is the PB broker, for ``jellyFor`` methods.
    """
    return Jellier(taster, persistentStore, invoker).jellyRoot(object)


def unjelly(
    sexp: Any, taster: Any = None, persistentLoad: Any = None, invoker: Any = None,
    *, maxDepth: int = MAX_DEPTH,
) -> Any:
    """The object ``sexp`` stands for, creating only what ``taster`` allows.

    ``taster=None`` means ``globalSecurity``: basic types and registered classes.
    Raises ``InsecureJelly`` for anything refused or malformed.
    ``persistentLoad(id, unjellier)`` rebuilds ``[b"persistent", id]`` forms.
    """
    if _speedups is not None and type(sexp) is list:
        # Basic forms only, in C; anything else (or anything wrong) and Python starts over.
        value = _speedups.unjelly(sexp, _builtinForms(taster, invoker), maxDepth)
        if value is not NotImplemented:
            return value
    if taster is None:
        taster = globalSecurity
    unjellier = Unjellier(taster, persistentLoad, invoker, maxDepth)
    try:
        return unjellier.unjellyRoot(sexp)
    finally:
        unjellier.release()


def _builtinForms(taster: Any, invoker: Any) -> Callable[[bytes], bool]:
    """Whether a tag means its built-in form in one unjelly call, as the Unjellier decides:
    not taken by the invoker's own forms nor by a registered class, and allowed."""
    taster = globalSecurity if taster is None else taster
    protocol = getattr(invoker, "protocolUnjellyables", None) or {}

    def builtin(tag: bytes) -> bool:
        return (
            tag not in protocol
            and tag not in unjellyableRegistry
            and tag not in unjellyableFactoryRegistry
            and bool(taster.isTypeAllowed(tag))
        )

    return builtin


def getInstanceState(inst: Any, jellier: Any) -> Any:
    """The usual ``[module.Class, state]`` form of ``inst``, for custom ``jellyFor`` methods
    (the state is ``__getstate__()`` if there is one, else ``__dict__``)."""
    state = inst.__getstate__() if hasattr(inst, "__getstate__") else inst.__dict__
    sexp = jellier.prepare(inst)
    sexp.extend([qual(inst.__class__).encode("utf-8"), jellier.jelly(state)])
    return jellier.preserve(inst, sexp)


def setInstanceState(inst: Any, unjellier: Any, jellyList: Any) -> Any:
    """Fill ``inst`` from ``[tag, state]`` the usual way, for custom ``unjellyFor`` methods
    (``__setstate__(state)`` if there is one, else the state becomes ``__dict__``)."""
    if len(jellyList) != 2:
        raise InsecureJelly(f"malformed {quote(jellyList)}: expected [tag, state]")
    state = unjellier.unjelly(jellyList[1])
    if hasattr(inst, "__setstate__"):
        inst.__setstate__(state)
    elif isinstance(state, dict):
        inst.__dict__ = state
    else:
        raise InsecureJelly(
            f"{qual(type(inst))} received a {type(state).__name__} as its state; "
            "give it a __setstate__ that accepts one"
        )
    upgradeIfVersioned(inst)
    return inst


def __getattr__(name: str) -> Any:
    # Twisted's deprecated tag of old-style instances: still readable, with its warning.
    if name == "instance_atom":
        warnings.warn(
            "spread.jelly.instance_atom was deprecated in Twisted 15.0.0: "
            "instance_atom is unused within Twisted.",
            DeprecationWarning,
            stacklevel=2,
        )
        return b"instance"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "instance_atom"])


__all__ = [
    "MAX_DEPTH",
    "DictTypes",
    "DummySecurityOptions",
    "IJellyable",
    "IUnjellyable",
    "InsecureJelly",
    "Jellier",
    "Jellyable",
    "None_atom",
    "NotKnown",
    "SecurityOptions",
    "Unjellier",
    "Unjellyable",
    "Unpersistable",
    "class_atom",
    "dereference_atom",
    "dictionary_atom",
    "frozenset_atom",
    "function_atom",
    "getInstanceState",
    "globalSecurity",
    "jelly",
    "list_atom",
    "module_atom",
    "persistent_atom",
    "reference_atom",
    "setInstanceState",
    "setUnjellyableFactoryForClass",
    "setUnjellyableForClass",
    "setUnjellyableForClassTree",
    "set_atom",
    "tuple_atom",
    "unjelly",
    "unjellyableFactoryRegistry",
    "unjellyableRegistry",
    "unpersistable_atom",
]
