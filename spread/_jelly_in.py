"""S-expressions to objects: the unjellier behind ``spread.jelly.unjelly``.

Every list is dispatched on its first element, its tag, in this order:

1. ``invoker.protocolUnjellyables[tag]`` (the PB broker's own forms);
2. the taster must allow the tag (``isTypeAllowed``), else ``InsecureJelly``;
3. a class registered for the tag, 4. a registered factory;
5. a built-in form (``list``, ``dictionary``, ``reference`` ...);
6. a dotted class name whose module and class the taster allows.

A tag is resolved once per ``unjelly()`` call and its handler cached, so the
hot loops (lists and dictionaries) pay one dict lookup per nested form, and
read strings inline.

Shared references and cycles: ``[b"reference", n, form]`` defines id ``n``
and ``[b"dereference", n]`` uses it. Lists, dicts, sets and instances are
created empty and registered under ``n`` *before* their contents are read, so
a reference back to them from inside (an instance whose state names itself)
gets the real object. Tuples and frozensets cannot exist before their items;
a reference back to one from inside is a ``Hole`` (see ``_jelly_holes``)
that is filled in once the tuple is built. A hole left unfilled (an undefined
id, a tuple that contains itself) is an ``InsecureJelly``.

Keys a peer chose: reference ids must be below ``MAX_REFERENCE_ID``, and sets,
frozensets and dicts fill through a ``KeyTable`` that refuses more than
``MAX_KEYS_PER_HASH`` distinct keys of one hash and charges tuple keys to the
call's hashing budget (all in ``_jelly_keys``), so no key costs more than a
bounded number of comparisons and hashing stays linear in the message.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from spread import _jelly_forms as forms
from spread import _jelly_keys as keys
from spread._jelly_base import (
    InsecureJelly,
    unjellyableFactoryRegistry,
    unjellyableRegistry,
)
from spread._jelly_holes import Entry, Gate, Hole
from spread._quote import quote

MAX_DEPTH = 500
"""How deeply forms may nest in one ``unjelly()`` call, in units of Python stack.

A list or dict inside a list or dict costs 1 (one Python frame), a tuple or set
2, an instance or a shared reference 3 or 4, a class with its own ``unjellyFor``
6. So 500 admits lists nested 500 deep (Twisted itself cannot unjelly more
than about 330) while keeping the whole walk within Python's default recursion
limit of 1000, with room for the reactor's frames above it. Hostile input
nests thousands deep and is refused. Pass ``maxDepth`` to ``unjelly`` to change
it for one call; should the Python stack run out first anyway, that is an
``InsecureJelly`` too."""

# The stack a level costs on each path through the unjellier (see MAX_DEPTH).
_USER_CODE_COST = 6  # our frames around unjellyFor and the user's own
_INSTANCE_COST = 3
_NESTED_COST = 4

# Ints of smaller magnitude are their own hash: no two collide, none needs counting.
_MODULUS = keys.HASH_MODULUS
_MAX_REFERENCE_ID = keys.MAX_REFERENCE_ID

# What may appear in an s-expression besides lists: banana's values, and str,
# which Twisted's jelly writes in its (never sent) function and module forms.
_ATOMS = frozenset({bytes, int, float, str})

Handler = Callable[[list[Any]], Any]
Precreator = Callable[[list[Any], int], Any]


def _RELEASED(sexp: list[Any]) -> Any:  # a sentinel that is also a Handler
    """The text form of a released unjellier, until it is needed again (see release)."""
    raise AssertionError("a released unjellier's text form was called")


class Unjellier:
    """The state of one ``unjelly()`` call, handed to ``unjellyFor(unjellier, jellyList)``.

    ``unjelly(sexp)`` rebuilds a nested form; ``unjellyInto(obj, loc, sexp)``
    stores it as ``obj[loc]``, later if it is part of a cycle still being built.
    """

    def __init__(
        self, taster: Any, persistentLoad: Any = None, invoker: Any = None,
        maxDepth: int = MAX_DEPTH,
    ) -> None:
        self.taster = taster
        self.persistentLoad = persistentLoad
        self.invoker = invoker
        self.maxDepth = maxDepth
        self._protocol: dict[bytes, Any] | None = getattr(invoker, "protocolUnjellyables", None)
        self._handlers: dict[Any, Handler] = {}
        self._precreators: dict[bytes, Precreator] = {}
        # The unicode handler, bound once: the hot loops compare against it.
        self._textForm: Handler = self._unicode
        self._refs: dict[int, Any] = {}
        self._holes: dict[int, Hole] = {}
        # Ids whose form is a tuple (or the like) still waiting for a hole.
        self._waiting: set[int] = set()
        # Ids of objects registered before being filled -> dereferenced meanwhile?
        self._precreated: dict[int, bool] = {}
        # id(container) -> the gate of a container still waiting for holes.
        self._unfinished: dict[int, Gate] = {}
        self._postCallbacks: list[Callable[[], Any]] = []
        self._depth = 0
        # What hashing tuple keys may cost (only charged once references are shared).
        self._keys = keys.KeyGuard(self._refs)

    def release(self) -> None:
        """Drop the dispatch caches, which hold bound methods of this unjellier.

        They make a reference cycle; broken here (``unjelly`` does it when done), the
        unjellier is freed at once rather than left for the cyclic garbage collector, whose
        full passes are what thousands of connections pay for every such cycle. A released
        unjellier still works, rebuilding its caches if it is used again.
        """
        self._handlers = {}
        self._precreators = {}
        self._textForm = _RELEASED

    # -- the interface unjellyFor methods use ---------------------------------------------

    def unjelly(self, sexp: Any) -> Any:
        """The object ``sexp`` stands for."""
        if self._keys.message is None:  # called without unjellyRoot: this is the message
            self._keys.message = sexp
        value = self._any(sexp)
        if type(value) is Hole:
            raise InsecureJelly(
                f"{quote(sexp)} refers to an object not built yet (a forward reference, or "
                "a cycle through a tuple); use unjellier.unjellyInto to receive it later"
            )
        return value

    def unjellyInto(self, obj: Any, loc: Any, sexp: Any) -> Any:
        """Set ``obj[loc]`` to what ``sexp`` stands for, now or once it exists.

        Returns the object, or None if it is part of a cycle and arrives later.
        """
        value = self._any(sexp)
        if type(value) is Hole:
            value.waiters.append(lambda known: obj.__setitem__(loc, known))
            return None
        obj[loc] = value
        return value

    # -- the driver -------------------------------------------------------------------------

    def unjellyRoot(self, sexp: Any) -> Any:
        """Rebuild a whole expression, check every reference resolved, run ``postUnjelly``."""
        self._keys.message = sexp
        try:
            value = self._any(sexp)
        except RecursionError:
            raise InsecureJelly(
                "the expression is nested too deeply for the Python stack"
            ) from None
        if self._holes:
            cyclic = sorted(self._waiting & self._holes.keys())[:5]
            if cyclic:
                raise InsecureJelly(
                    f"reference id(s) {cyclic} contain themselves through a tuple, frozenset "
                    "or factory, which cannot be built"
                )
            ids = sorted(self._holes)[:5]
            raise InsecureJelly(f"dereference to id(s) {ids} that are never defined")
        if type(value) is Hole:
            raise InsecureJelly("the expression contains itself through a tuple or frozenset")
        for callback in self._postCallbacks:
            callback()
        return value

    def _any(self, sexp: Any) -> Any:
        kind = type(sexp)
        if kind is list:
            return self._dispatch(sexp)
        if kind in _ATOMS:
            return sexp
        raise InsecureJelly(f"unexpected {kind.__name__} in an s-expression: {quote(sexp)}")

    def _dispatch(self, sexp: list[Any]) -> Any:
        try:
            handler = self._handlers[sexp[0]]
        except (KeyError, IndexError, TypeError):
            handler = self._resolve(sexp)
        return handler(sexp)

    def _deeper(self, cost: int, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` one nesting level down, ``cost`` units of stack deeper (the hot
        containers inline this)."""
        depth = self._depth + cost
        if depth > self.maxDepth:
            raise self._tooDeep()
        self._depth = depth
        try:
            return call(*args)
        finally:
            self._depth = depth - cost

    def _nested(self, call: Callable[..., Any], *args: Any) -> Any:
        return self._deeper(_NESTED_COST, call, *args)

    def _tooDeep(self) -> InsecureJelly:
        return InsecureJelly(
            f"the expression nests deeper than {self.maxDepth} levels (maxDepth)"
        )

    # -- resolving a tag ----------------------------------------------------------------------

    def _resolve(self, sexp: list[Any]) -> Handler:
        if not sexp:
            raise InsecureJelly("an empty list is not an s-expression")
        tag = sexp[0]
        if type(tag) is not bytes:
            raise InsecureJelly(f"expected a type name (bytes) first in {quote(sexp)}")
        handler = self._find(tag)
        self._handlers[tag] = handler
        return handler

    def _find(self, tag: bytes) -> Handler:
        if self._protocol is not None:
            custom = self._protocol.get(tag)
            if custom is not None:
                return partial(self._deeper, _USER_CODE_COST, custom, self)
        if not self.taster.isTypeAllowed(tag):
            raise InsecureJelly(forms.refusal(tag))
        registered = unjellyableRegistry.get(tag)
        if registered is not None:
            return self._registeredHandler(tag, registered)
        factory = unjellyableFactoryRegistry.get(tag)
        if factory is not None:
            return partial(self._deeper, _NESTED_COST, self._fromFactory, factory)
        if tag == b"unicode":
            if self._textForm is _RELEASED:
                self._textForm = self._unicode
            return self._textForm
        leaf = _LEAVES.get(tag)
        if leaf is not None:
            return leaf
        builtin = _BUILTINS.get(tag)
        if builtin is not None:
            precreate = _PRECREATORS.get(tag)
            if precreate is not None:
                self._precreators[tag] = precreate.__get__(self)
            return builtin.__get__(self)  # type: ignore[no-any-return]
        cls = forms.allowedClass(self.taster, tag)
        handler = partial(self._deeper, _INSTANCE_COST, self._instance, cls)
        self._precreators[tag] = handler  # called with (sexp, refid)
        return handler

    def _registeredHandler(self, tag: bytes, registered: Any) -> Handler:
        if isinstance(registered, type) and hasattr(registered, "unjellyFor"):
            handler = partial(self._deeper, _USER_CODE_COST, self._registered, registered)
            self._precreators[tag] = handler  # called with (sexp, refid)
            return handler
        # A callable, or a class without unjellyFor: called as (unjellier, jellyList).
        return partial(self._callRegistered, registered)

    def _callRegistered(self, registered: Callable[[Any, Any], Any], sexp: list[Any]) -> Any:
        return self._maybePostUnjelly(self._deeper(_USER_CODE_COST, registered, self, sexp))

    # -- references ---------------------------------------------------------------------------

    def _define(self, refid: int, value: Any) -> None:
        if refid in self._refs:
            raise InsecureJelly(f"reference id {refid} is defined twice")
        self._refs[refid] = value
        self._waiting.discard(refid)
        hole = self._holes.pop(refid, None)
        if hole is not None:
            hole.fill(value)

    def _reference(self, sexp: list[Any]) -> Any:
        if len(sexp) != 3 or type(sexp[1]) is not int:
            raise forms.malformed(sexp, "[reference, id, form]")
        refid, body = sexp[1], sexp[2]
        if not 0 <= refid < _MAX_REFERENCE_ID:
            raise keys.badReferenceId(refid)
        if type(body) is list and body and type(body[0]) is bytes:
            if body[0] not in self._handlers:
                self._resolve(body)
            precreate = self._precreators.get(body[0])
            if precreate is not None:
                return self._deeper(1, precreate, body, refid)
        value = self._deeper(_NESTED_COST, self._any, body)
        if type(value) is Hole:
            self._waiting.add(refid)
            value.waiters.append(lambda known: self._define(refid, known))
        else:
            self._define(refid, value)
        return value

    def _dereference(self, sexp: list[Any]) -> Any:
        if len(sexp) != 2 or type(sexp[1]) is not int:
            raise forms.malformed(sexp, "[dereference, id]")
        refid = sexp[1]
        try:
            value = self._refs[refid]  # holds only ids in range
        except KeyError:
            if not 0 <= refid < _MAX_REFERENCE_ID:
                raise keys.badReferenceId(refid) from None
            hole = self._holes.get(refid)
            if hole is None:
                hole = self._holes[refid] = Hole()
            return hole
        if refid in self._precreated:
            self._precreated[refid] = True
        return value

    # -- waiting for holes ------------------------------------------------------------------

    def _gate(self, container: object | None) -> Gate:
        """A gate for a container that met its first hole, published as the gate of
        ``container`` (if given) so an instance with that container as state waits."""
        gate = Gate()
        if container is not None:
            key = id(container)  # kept alive by the gate's fillers until it finishes
            self._unfinished[key] = gate
            gate.listeners.append(lambda: self._forget(key))
        return gate

    def _forget(self, key: int) -> None:
        self._unfinished.pop(key, None)

    def _whenFinished(self, value: Any, action: Callable[[Any], None]) -> None:
        """Run ``action(value)`` once ``value`` exists and has no holes of its own."""
        if type(value) is Hole:
            value.waiters.append(lambda known: self._whenFinished(known, action))
            return
        gate = self._unfinished.get(id(value)) if self._unfinished else None
        if gate is not None:
            gate.listeners.append(lambda: action(value))
        else:
            action(value)

    # -- strings and the hot containers -------------------------------------------------------

    def _unicode(self, sexp: list[Any]) -> str:
        if len(sexp) != 2 or type(sexp[1]) is not bytes:
            raise forms.malformed(sexp, "[unicode, utf-8 bytes]")
        try:
            return sexp[1].decode()
        except UnicodeDecodeError:
            raise InsecureJelly(f"invalid UTF-8 in {quote(sexp)}") from None

    def _readInto(
        self, target: list[Any], sexp: list[Any], container: object | None
    ) -> Gate | None:
        """Append the objects of ``sexp[1:]`` to ``target``; returns the open Gate if any
        were holes (their slots hold None until filled), else None."""
        depth = self._depth + 2  # _readInto and its caller
        if depth > self.maxDepth:
            raise self._tooDeep()
        self._depth = depth
        append = target.append
        handlers = self._handlers
        text = self._textForm
        atoms = _ATOMS
        gate = None
        try:
            for item in sexp[1:]:
                if type(item) is list:
                    try:
                        handler = handlers[item[0]]
                    except (KeyError, IndexError, TypeError):
                        handler = self._resolve(item)
                    if handler is text and len(item) == 2:
                        try:
                            item = item[1].decode()
                        except (AttributeError, UnicodeDecodeError):
                            item = text(item)  # raises the right error
                    else:
                        item = handler(item)
                        if type(item) is Hole:
                            if gate is None:
                                gate = self._gate(container)
                            gate.expect(item, target, len(target))
                            item = None
                elif type(item) not in atoms:
                    raise forms.badAtom(item, sexp)
                append(item)
        finally:
            self._depth = depth - 2
        return gate

    def _list(self, sexp: list[Any], refid: int | None = None) -> list[Any]:
        # _readInto, inlined: lists are the commonest container after dicts.
        result: list[Any] = []
        if refid is not None:
            self._define(refid, result)
        depth = self._depth + 1
        if depth > self.maxDepth:
            raise self._tooDeep()
        self._depth = depth
        handlers = self._handlers
        gate = None
        try:
            for item in sexp[1:]:
                if type(item) is list:
                    try:
                        handler = handlers[item[0]]
                    except (KeyError, IndexError, TypeError):
                        handler = self._resolve(item)
                    if handler is self._textForm and len(item) == 2:
                        try:
                            item = item[1].decode()
                        except (AttributeError, UnicodeDecodeError):
                            item = handler(item)  # raises the right error
                    else:
                        item = handler(item)
                        if type(item) is Hole:
                            if gate is None:
                                gate = self._gate(result)
                            gate.expect(item, result, len(result))
                            item = None
                elif type(item) not in _ATOMS:
                    raise forms.badAtom(item, sexp)
                result.append(item)
        finally:
            self._depth = depth - 1
        if gate is not None:
            gate.arrive()
        return result

    def _dictionary(self, sexp: list[Any], refid: int | None = None) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        if refid is not None:
            self._define(refid, result)
        depth = self._depth + 1
        if depth > self.maxDepth:
            raise self._tooDeep()
        self._depth = depth
        handlers = self._handlers
        text = self._textForm
        atoms = _ATOMS
        # A dict of no more than MAX_KEYS_PER_HASH keys cannot hold too many of one hash.
        counted = len(sexp) > keys.MAX_KEYS_PER_HASH + 1
        low, high = -_MODULUS, _MODULUS
        gate = None
        table = None  # made for the first key that is not text: see _jelly_keys.KeyTable
        try:
            for pair in sexp[1:]:
                if type(pair) is not list:
                    raise forms.malformed(sexp, "[dictionary, [key, value], ...]")
                try:
                    key, value = pair
                except ValueError:
                    raise forms.malformed(sexp, "[dictionary, [key, value], ...]") from None
                # Text and ints that are their own hash go straight in; other keys may
                # collide (KeyTable counts them) and holes must wait (Entry).
                slow = False
                if type(key) is list:
                    try:
                        handler = handlers[key[0]]
                    except (KeyError, IndexError, TypeError):
                        handler = self._resolve(key)
                    if handler is text and len(key) == 2:
                        try:
                            key = key[1].decode()
                        except (AttributeError, UnicodeDecodeError):
                            key = text(key)  # raises the right error
                    else:
                        key = handler(key)
                        slow = True
                elif type(key) is int:
                    slow = counted and not low < key < high
                elif type(key) is not bytes:
                    if type(key) not in atoms:
                        raise forms.badAtom(key, sexp)
                    slow = True
                if type(value) is list:
                    try:
                        handler = handlers[value[0]]
                    except (KeyError, IndexError, TypeError):
                        handler = self._resolve(value)
                    if handler is text and len(value) == 2:
                        try:
                            value = value[1].decode()
                        except (AttributeError, UnicodeDecodeError):
                            value = text(value)  # raises the right error
                    else:
                        value = handler(value)
                        if type(value) is Hole:
                            slow = True
                elif type(value) not in atoms:
                    raise forms.badAtom(value, sexp)
                if not slow:
                    result[key] = value
                    continue
                if table is None:
                    table = keys.KeyTable(result, self._keys, "dictionary", len(sexp) - 1)
                if type(key) is Hole or type(value) is Hole:
                    if gate is None:
                        gate = self._gate(result)
                    Entry(table, key, value, gate)
                else:
                    table.store(key, value)
        finally:
            self._depth = depth - 1
        if gate is not None:
            gate.arrive()
        return result

    # -- the other containers -------------------------------------------------------------------

    def _built(self, items: list[Any], gate: Gate | None, build: Callable[[list[Any]], Any]) -> Any:
        """``build(items)`` now, or a hole filled with it once the gate's holes are in."""
        if gate is None:
            return build(items)
        hole = Hole()
        gate.listeners.append(lambda: hole.fill(build(items)))
        gate.arrive()
        return hole

    def _tuple(self, sexp: list[Any]) -> Any:
        items: list[Any] = []
        return self._built(items, self._readInto(items, sexp, None), tuple)

    def _frozenset(self, sexp: list[Any]) -> Any:
        items: list[Any] = []
        gate = self._readInto(items, sexp, None)
        return self._built(items, gate, partial(keys.frozen, guard=self._keys))

    def _set(self, sexp: list[Any], refid: int | None = None) -> set[Any]:
        result: set[Any] = set()
        if refid is not None:
            self._define(refid, result)
        items: list[Any] = []
        gate = self._readInto(items, sexp, result)
        if gate is None:
            keys.addMembers(result, items, self._keys)
        else:
            table = keys.KeyTable(result, self._keys, "set", len(items))
            pending = set(gate.slots)
            table.add([m for i, m in enumerate(items) if i not in pending])
            gate.listeners.append(lambda: table.add([items[i] for i in sorted(pending)]))
            gate.arrive()
        return result

    # -- instances ----------------------------------------------------------------------------

    def _maybePostUnjelly(self, obj: Any) -> Any:
        if hasattr(obj, "postUnjelly"):
            self._postCallbacks.append(obj.postUnjelly)
        return obj

    def _instance(self, cls: type, sexp: list[Any], refid: int | None = None) -> Any:
        """A generic instance of an allowed class: blank, registered, then given its state."""
        if len(sexp) != 2:
            raise forms.malformed(sexp, "[module.Class, state]")
        obj = forms.blank(cls)
        if refid is not None:
            self._define(refid, obj)
        state = sexp[1]
        state = self._dispatch(state) if type(state) is list else self._any(state)
        # The state is applied once complete, so __setstate__ never sees a hole.
        self._whenFinished(state, lambda known: forms.applyState(obj, known))
        return self._maybePostUnjelly(obj)

    def _registered(self, cls: type, sexp: list[Any], refid: int | None = None) -> Any:
        """A registered class: a blank instance fills itself in ``unjellyFor``."""
        obj = forms.blank(cls)
        if refid is None:
            return self._maybePostUnjelly(obj.unjellyFor(self, sexp))
        self._define(refid, obj)
        self._precreated[refid] = False
        result = obj.unjellyFor(self, sexp)
        referred = self._precreated.pop(refid)
        if result is not obj:
            if referred:
                raise InsecureJelly(
                    f"{forms.qualName(cls)}.unjellyFor returned another object while its "
                    "state referred to itself; return self"
                )
            self._refs[refid] = result
        return self._maybePostUnjelly(result)

    def _fromFactory(self, factory: Callable[[Any], Any], sexp: list[Any]) -> Any:
        if len(sexp) != 2:
            raise forms.malformed(sexp, "[tag, state]")
        state = self._any(sexp[1])
        if type(state) is not Hole:
            return self._maybePostUnjelly(factory(state))
        hole = Hole()
        state.waiters.append(lambda known: hole.fill(self._maybePostUnjelly(factory(known))))
        return hole

# Forms that need no unjellier: used as handlers as they are.
_LEAVES: dict[bytes, Handler] = {
    b"None": forms.noneForm,
    b"boolean": forms.booleanForm,
    b"unpersistable": forms.unpersistableForm,
    b"decimal": forms.decimalForm,
    b"datetime": forms.datetimeForm,
    b"date": forms.dateForm,
    b"time": forms.timeForm,
    b"timedelta": forms.timedeltaForm,
}

# Forms read by Unjellier methods (bound to the unjellier when resolved).
_BUILTINS: dict[bytes, Callable[..., Any]] = {
    b"list": Unjellier._list,
    b"tuple": Unjellier._tuple,
    b"dictionary": Unjellier._dictionary,
    b"set": Unjellier._set,
    b"frozenset": Unjellier._frozenset,
    b"reference": Unjellier._reference,
    b"dereference": Unjellier._dereference,
    b"persistent": forms.persistentForm,
    b"instance": forms.oldInstanceForm,
    b"method": forms.methodForm,
    b"module": lambda self, sexp: forms.module(self.taster, sexp),
    b"class": lambda self, sexp: forms.classForm(self.taster, sexp),
    b"function": lambda self, sexp: forms.function(self.taster, sexp),
}

# The containers that can exist before their contents: registered under their
# reference id first, so cycles back to them resolve to the real object.
_PRECREATORS: dict[bytes, Callable[..., Any]] = {
    b"list": Unjellier._list,
    b"dictionary": Unjellier._dictionary,
    b"set": Unjellier._set,
}
