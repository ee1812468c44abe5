"""Every public name of a twisted.spread module (and of twisted.persisted.styles and
twisted.python.rebuild) is there in ours, so switching is a matter of changing imports.

Names Twisted's modules only have because they imported them for their own use (helper
modules and functions) are not part of that promise; each module's IGNORED set lists them,
with the reason, so that anything missing that is real API makes a test fail.
"""

from __future__ import annotations

import importlib
import types
from types import ModuleType

import pytest

# Twisted's imports of helpers, in every module below: not spread's API to re-export.
HELPERS = {
    "annotations",  # from __future__ import annotations
    "copy",  # stdlib module
    "implementer",  # zope.interface class decorator
    "Interface",  # zope.interface base class
    "log",  # twisted.python.log, the legacy logging module
    "reflect",  # twisted.python.reflect helpers
    "types",  # stdlib module
    "cmp",  # twisted.python.compat helper for comparisons
    "Callable",  # typing (some Twisted releases import it, some do not)
    "Dict",  # typing
    "TYPE_CHECKING",  # typing
    "comparable",  # twisted.python.compat class decorator
}

IGNORED: dict[str, set[str]] = {
    "banana": HELPERS
    | {
        "BytesIO",  # io.BytesIO, used for buffering
        "fullyQualifiedName",  # twisted.python.reflect helper for log messages
        "iterbytes",  # twisted.python.compat helper
        "protocol",  # twisted.internet.protocol module
        "struct",  # stdlib module
        "styles",  # twisted.persisted.styles module (spread.styles is ours)
    },
    "jelly": HELPERS
    | {
        "Version",  # incremental.Version, for deprecating instance_atom
        "datetime",  # stdlib module
        "decimal",  # stdlib module
        "deprecatedModuleAttribute",  # twisted.python.deprecate helper
        "namedAny",  # twisted.python.reflect helper
        "namedObject",  # twisted.python.reflect helper
        "nativeString",  # twisted.python.compat helper
        "qual",  # twisted.python.reflect helper
        "reduce",  # functools.reduce
        "warnings",  # stdlib module
    },
    "flavors": HELPERS
    | {
        "sys",  # stdlib module
    },
    "pb": HELPERS
    | {
        "banana",  # twisted.spread.banana module
        "defer",  # twisted.internet.defer module
        "failure",  # twisted.python.failure module
        "md5",  # hashlib.md5, for the challenge-response login
        "protocol",  # twisted.internet.protocol module
        "random",  # stdlib module
        "registerAdapter",  # twisted.python.components helper
        "styles",  # twisted.persisted.styles module
    },
    "publish": HELPERS
    | {
        "banana",  # twisted.spread.banana module
        "defer",  # twisted.internet.defer module
        "flavors",  # twisted.spread.flavors module
        "jelly",  # twisted.spread.jelly module
        "time",  # stdlib module
    },
    "util": HELPERS
    | {
        "Failure",  # twisted.python.failure.Failure; import it from there
        "basic",  # twisted.protocols.basic module
        "defer",  # twisted.internet.defer module
        "interfaces",  # twisted.internet.interfaces module
        "pb",  # twisted.spread.pb module
    },
    "styles": HELPERS
    | {
        "copy_reg",  # copyreg under its Python 2 name
        "inspect",  # stdlib module
        "pickle",  # stdlib module
    },
    "rebuild": HELPERS
    | {
        "ModuleType",  # types.ModuleType, for annotations
        "linecache",  # stdlib module
        "reload",  # importlib.reload
        "sys",  # stdlib module
        "time",  # stdlib module
    },
}

TWISTED_MODULES = {
    "banana": "twisted.spread.banana",
    "jelly": "twisted.spread.jelly",
    "flavors": "twisted.spread.flavors",
    "pb": "twisted.spread.pb",
    "publish": "twisted.spread.publish",
    "util": "twisted.spread.util",
    "styles": "twisted.persisted.styles",
    "rebuild": "twisted.python.rebuild",
}


def public_names(module: ModuleType) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


@pytest.mark.parametrize("short", sorted(TWISTED_MODULES))
def test_every_public_twisted_name_is_ours_too(short: str) -> None:
    theirs = public_names(importlib.import_module(TWISTED_MODULES[short]))
    ours = public_names(importlib.import_module(f"spread.{short}"))
    missing = sorted(theirs - ours - IGNORED[short])
    assert not missing, f"spread.{short} lacks {TWISTED_MODULES[short]}'s {missing}"


@pytest.mark.parametrize("short", sorted(TWISTED_MODULES))
def test_every_ignored_name_is_in_twisteds_module(short: str) -> None:
    # Keeps the IGNORED sets from outliving what they excuse: a name Twisted drops goes too.
    theirs = public_names(importlib.import_module(TWISTED_MODULES[short]))
    stale = sorted(IGNORED[short] - HELPERS - theirs)
    assert not stale, f"IGNORED[{short!r}] lists {stale}, which Twisted no longer has"


def test_Broker_has_maxBrokerRefsViolations() -> None:
    from spread.pb import Broker

    assert Broker.maxBrokerRefsViolations == 0


def test_RemoteReference_unjellyFor_makes_a_reference_on_the_unjelliers_broker() -> None:
    from spread.pb import Broker, RemoteReference

    broker = Broker()
    unjellier = types.SimpleNamespace(invoker=broker)
    ref = RemoteReference.__new__(RemoteReference)
    assert ref.unjellyFor(unjellier, [b"remote", 7]) is ref
    assert (ref.broker, ref.luid) == (broker, 7)


def test_instance_atom_is_there_and_deprecated_as_in_twisted() -> None:
    from twisted.spread import jelly as tjelly

    from spread import jelly

    with pytest.warns(DeprecationWarning, match="deprecated in Twisted 15.0.0") as ours:
        value = jelly.instance_atom
    with pytest.warns(DeprecationWarning) as theirs:
        expected = tjelly.instance_atom
    assert value == expected == b"instance"
    assert str(ours[0].message).split(":", 1)[1] == str(theirs[0].message).split(":", 1)[1]


def test_NotKnown_fills_its_dependants_once_the_object_exists() -> None:
    from spread.jelly import NotKnown

    hole = NotKnown()
    holder: list[object] = [None, None]
    hole.addDependant(holder, 1)
    hole.resolveDependants("built")
    assert holder == [None, "built"]


@pytest.mark.parametrize(
    ("reader", "tag"),
    [("unjellyLocal", b"local"), ("unjellyCached", b"cached"), ("unjellyLCache", b"lcache")],
)
def test_the_broker_form_readers_use_the_brokers_reading(reader: str, tag: bytes) -> None:
    from spread import flavors, jelly
    from spread.pb import Broker

    broker = Broker()
    seen: list[list[object]] = []
    broker.protocolUnjellyables[tag] = lambda unjellier, sexp: seen.append(sexp) or "read"
    read = getattr(flavors, reader)
    assert read(types.SimpleNamespace(invoker=broker), [tag, 3]) == "read"
    assert seen == [[tag, 3]]
    with pytest.raises(jelly.InsecureJelly):
        read(types.SimpleNamespace(invoker=None), [tag, 3])
