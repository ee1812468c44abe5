"""What jelly's two directions share: the error type, the allowlist and the class registries.

Public names are re-exported (and documented for users) by ``spread.jelly``; this
module exists so the jellier and the unjellier can import them without importing
each other.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from zope.interface import implementer  # type: ignore[import-untyped]

from spread._quote import quote
from spread.interfaces import IJellyable, IUnjellyable

PUBLIC_MODULE = "spread.jelly"
"""Where users import these names from; set as their ``__module__`` by ``spread.jelly``."""


class InsecureJelly(Exception):
    """An s-expression asked for something the receiver did not allow, or was malformed.

    This is the only exception hostile s-expressions can cause: the message
    names what was refused and, where there is one, how to allow it.
    """


class Unpersistable:
    """Stands in for an object that could not be (un)serialized; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unpersistable({self.reason!r})"


def qual(cls: type) -> str:
    """The dotted name jelly puts on the wire for ``cls`` (module + class name, as Twisted)."""
    return f"{cls.__module__}.{cls.__name__}"


def typeName(name: str | bytes | type) -> bytes:
    """A jelly type tag from a class, a dotted name or a tag."""
    if isinstance(name, type):
        name = qual(name)
    if isinstance(name, str):
        return name.encode("utf-8")
    if isinstance(name, bytes):
        return name
    raise TypeError(f"expected a class, str or bytes type name, not {type(name).__name__}")


# -- the allowlist ------------------------------------------------------------------------

# Types SecurityOptions allows from the start: none of them creates anything but
# builtin values. Names such as b"int" or b"long" are legacy and never tags.
_DEFAULT_TYPES = (
    b"None", b"bool", b"boolean", b"string", b"str", b"int", b"float", b"datetime",
    b"time", b"date", b"timedelta", b"NoneType", b"unicode", b"decimal", b"set",
    b"frozenset",
)


class SecurityOptions:
    """An allowlist of the jelly types, modules and classes an unjellier may create.

    A fresh instance allows only simple values (strings, numbers, booleans, None,
    dates, decimals, sets); ``allowBasicTypes`` adds lists, tuples, dictionaries and
    shared references; ``allowInstancesOf`` adds instances of the given classes.

    Unlike Twisted's, ``isTypeAllowed`` does not pass every dotted name: a class
    is allowed only by name (``allowTypes``) or object (``allowInstancesOf``),
    so class registrations never widen an allowlist they were not added to.
    """

    basicTypes = [
        "dictionary", "list", "tuple", "reference", "dereference", "unpersistable",
        "persistent", "long_int", "long", "dict",
    ]

    def __init__(self) -> None:
        self.allowedTypes: dict[bytes, int] = dict.fromkeys(_DEFAULT_TYPES, 1)
        self.allowedModules: dict[bytes, int] = {}
        self.allowedClasses: dict[type, int] = {}

    def allowBasicTypes(self) -> None:
        """Allow lists, tuples, dictionaries and shared references, besides simple values."""
        self.allowTypes(*self.basicTypes)

    def allowTypes(self, *types: str | bytes | type) -> None:
        """Allow jelly types by tag (``"dictionary"``), dotted class name or class."""
        for name in types:
            self.allowedTypes[typeName(name)] = 1

    def allowInstancesOf(self, *classes: type) -> None:
        """Allow instances of ``classes`` (by their dotted names), and the basic types.

        Also allows the ``instance``, ``class`` and ``module`` forms and each class's
        module, as Twisted does.
        """
        self.allowBasicTypes()
        self.allowTypes("instance", "class", "classobj", "module")
        for cls in classes:
            self.allowTypes(qual(cls))
            self.allowModules(cls.__module__)
            self.allowedClasses[cls] = 1

    def allowModules(self, *modules: str | bytes | types.ModuleType) -> None:
        """Allow the named modules (or module objects) in module, class and function forms."""
        for module in modules:
            if isinstance(module, types.ModuleType):
                module = module.__name__
            if isinstance(module, str):
                module = module.encode("utf-8")
            self.allowedModules[module] = 1

    def isModuleAllowed(self, moduleName: str | bytes) -> bool:
        """Whether ``moduleName`` was allowed with ``allowModules`` or ``allowInstancesOf``."""
        if isinstance(moduleName, str):
            moduleName = moduleName.encode("utf-8")
        return moduleName in self.allowedModules

    def isClassAllowed(self, klass: object) -> bool:
        """Whether instances of ``klass`` were allowed with ``allowInstancesOf``."""
        try:
            return klass in self.allowedClasses
        except TypeError:  # unhashable: certainly never allowed
            return False

    def isTypeAllowed(self, typeName: str | bytes) -> bool:
        """Whether the jelly type ``typeName`` (a tag or dotted class name) was allowed."""
        if isinstance(typeName, str):
            typeName = typeName.encode("utf-8")
        return typeName in self.allowedTypes


class DummySecurityOptions:
    """Allows everything: any module may be imported and any class instantiated.

    Only for data you trust completely (it is what ``jelly()`` uses, and what
    Twisted's ``unjelly()`` uses by default). Never unjelly network data with it.
    """

    def isModuleAllowed(self, moduleName: str | bytes) -> bool:
        """Always true."""
        return True

    def isClassAllowed(self, klass: object) -> bool:
        """Always true."""
        return True

    def isTypeAllowed(self, typeName: str | bytes) -> bool:
        """Always true."""
        return True


globalSecurity = SecurityOptions()
"""Basic types plus every class registered with ``setUnjellyableForClass`` (or a factory).

The PB broker's default and plain ``unjelly``'s; pass your own ``SecurityOptions`` to
decide alone."""
globalSecurity.allowBasicTypes()


# -- registries of local classes for remote type names -----------------------------------

unjellyableRegistry: dict[bytes, Any] = {}
"""Type tag -> local class (or callable ``(unjellier, jellyList)``) that rebuilds it."""

unjellyableFactoryRegistry: dict[bytes, Callable[[Any], Any]] = {}
"""Type tag -> factory called with the unjellied state."""


def setUnjellyableForClass(classname: str | bytes | type, unjellyable: Any) -> None:
    """Rebuild objects sent as ``classname`` with the local class ``unjellyable``.

    ``classname`` is the type name the sender puts on the wire (a dotted class
    name, a class, or a tag from ``getTypeToCopy``). Instances of ``unjellyable``
    are made without calling ``__init__`` and filled by their ``unjellyFor``.
    The name is also allowed in ``globalSecurity``; a ``SecurityOptions`` of your
    own must allow it itself (``allowTypes(classname)``).
    """
    tag = typeName(classname)
    unjellyableRegistry[tag] = unjellyable
    globalSecurity.allowTypes(tag)


def setUnjellyableFactoryForClass(
    classname: str | bytes | type, copyFactory: Callable[[Any], Any]
) -> None:
    """Rebuild objects sent as ``classname`` by calling ``copyFactory(state)``.

    Like ``setUnjellyableForClass``, including the entry in ``globalSecurity``.
    """
    tag = typeName(classname)
    unjellyableFactoryRegistry[tag] = copyFactory
    globalSecurity.allowTypes(tag)


def setUnjellyableForClassTree(
    module: types.ModuleType, baseClass: type, prefix: str | None = None
) -> None:
    """Register every subclass of ``baseClass`` found in ``module``.

    Each is registered under ``prefix + "." + its name``; ``prefix`` defaults to
    the module's name, and ``""`` registers bare class names.
    """
    if prefix is None:
        prefix = module.__name__
    if prefix:
        prefix += "."
    for name in dir(module):
        candidate = getattr(module, name)
        if isinstance(candidate, type) and issubclass(candidate, baseClass):
            setUnjellyableForClass(f"{prefix}{name}", candidate)


# -- objects that choose their own jelly form ---------------------------------------------


@implementer(IJellyable)
class Jellyable:
    """Inherit to be jellied as ``[module.Class, state]`` with the state of your choosing.

    Override ``getStateFor`` to choose the state, or ``jellyFor`` for the whole form.
    """

    def getStateFor(self, jellier: Any) -> Any:
        """The state to send; by default the instance dictionary."""
        return self.__dict__

    def jellyFor(self, jellier: Any) -> Any:
        """The s-expression for this object: ``[module.Class, jellied state]``."""
        sexp = jellier.prepare(self)
        sexp.extend([qual(type(self)).encode("utf-8"), jellier.jelly(self.getStateFor(jellier))])
        return jellier.preserve(self, sexp)


@implementer(IUnjellyable)
class Unjellyable:
    """Inherit to be rebuilt from ``[tag, state]`` through ``setStateFor``.

    Register the class with ``setUnjellyableForClass``; instances are made
    without ``__init__`` and then given the unjellied state.
    """

    def setStateFor(self, unjellier: Any, state: Any) -> None:
        """Take the received state; by default it becomes the instance dictionary."""
        if not isinstance(state, dict):
            raise InsecureJelly(
                f"{qual(type(self))} received a {type(state).__name__} as its state; "
                "override setStateFor to accept it"
            )
        self.__dict__ = state

    def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
        """Fill this blank instance from ``[tag, state]`` and return it."""
        if len(jellyList) != 2:
            raise InsecureJelly(
                f"malformed {quote(jellyList[0])}: expected [tag, state],"
                f" got {len(jellyList)} items"
            )
        self.setStateFor(unjellier, unjellier.unjelly(jellyList[1]))
        return self
