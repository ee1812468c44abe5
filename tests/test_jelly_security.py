"""What spread.jelly refuses: the secure default, SecurityOptions, the Twisted bugs we fix,
the dispatch order, and the error contract (hostile input raises InsecureJelly, nothing else)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.spread import jelly as tjelly

from spread import jelly, pb
from spread.jelly import (
    MAX_DEPTH,
    DummySecurityOptions,
    InsecureJelly,
    SecurityOptions,
    Unjellyable,
    globalSecurity,
    setUnjellyableFactoryForClass,
    setUnjellyableForClass,
    unjellyableRegistry,
)

# Registrations are process-wide: conftest's clean_registries undoes the ones each test makes.
pytestmark = pytest.mark.usefixtures("clean_registries")


class Point:
    made = 0

    def __new__(cls) -> Point:
        cls.made += 1
        return super().__new__(cls)

    def __init__(self) -> None:
        self.x = 1


MODULE = Point.__module__
POINT = f"{MODULE}.Point".encode()
POINT_SEXP = [POINT, [b"dictionary", [[b"unicode", b"x"], 1]]]


class Copy(Unjellyable):
    pass


def basic() -> SecurityOptions:
    options = SecurityOptions()
    options.allowBasicTypes()
    return options


# -- the secure default -----------------------------------------------------------------------


def test_default_accepts_basic_types() -> None:
    shared = [1]
    value = [shared, shared, (1, "s"), {"k": {2}}, frozenset({3}), None, True, 1.5, b"b"]
    back = jelly.unjelly(jelly.jelly(value))
    assert back == value
    assert back[0] is back[1]


def test_default_refuses_instances_and_says_how_to_allow_them() -> None:
    with pytest.raises(InsecureJelly) as caught:
        jelly.unjelly(POINT_SEXP)
    message = str(caught.value)
    assert repr(POINT.decode()) in message
    assert "setUnjellyableForClass" in message
    assert "allowInstancesOf" in message


def test_default_creates_nothing_it_refuses() -> None:
    before = Point.made
    with pytest.raises(InsecureJelly):
        jelly.unjelly(POINT_SEXP)
    assert Point.made == before


def test_twisted_default_would_have_created_it() -> None:
    """The difference we document: Twisted's unjelly() default is DummySecurityOptions."""
    assert type(tjelly.unjelly(POINT_SEXP)) is Point


@pytest.mark.parametrize(
    "sexp",
    [
        [b"module", b"os"],
        [b"class", b"os.PathLike"],
        [b"function", b"os.system"],
        [b"method", b"m", [b"None"], [b"class", b"os.PathLike"]],
        [b"instance", [b"class", b"os.PathLike"], [b"None"]],
        [b"os.PathLike", [b"None"]],
    ],
)
def test_default_refuses_code_forms(sexp: Any) -> None:
    with pytest.raises(InsecureJelly):
        jelly.unjelly(sexp)


def test_registration_is_consent_for_the_default() -> None:
    setUnjellyableForClass(POINT, Copy)
    back = jelly.unjelly(POINT_SEXP)
    assert type(back) is Copy and back.x == 1


def test_the_default_still_refuses_an_unregistered_class() -> None:
    with pytest.raises(InsecureJelly, match="not allowed"):
        jelly.unjelly(POINT_SEXP)


def test_a_copyable_failure_round_trips_through_plain_jelly() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        copyable = pb.CopyableFailure()
    back = jelly.unjelly(jelly.jelly(copyable))
    assert isinstance(back, pb.CopiedFailure)
    assert back.check(ValueError) and back.getErrorMessage() == "bad value"


def test_dummy_security_options_allow_everything() -> None:
    back = jelly.unjelly(POINT_SEXP, DummySecurityOptions())
    assert type(back) is Point
    assert back.x == 1


# -- SecurityOptions --------------------------------------------------------------------------


def test_fresh_options_refuse_lists_and_suggest_allowBasicTypes() -> None:
    with pytest.raises(InsecureJelly, match="allowBasicTypes"):
        jelly.unjelly([b"list", 1], SecurityOptions())


def test_fresh_options_accept_simple_values() -> None:
    options = SecurityOptions()
    assert jelly.unjelly([b"unicode", b"a"], options) == "a"
    assert jelly.unjelly([b"set", 1], options) == {1}


def test_allowBasicTypes() -> None:
    options = basic()
    for name in (b"list", b"tuple", b"dictionary", b"reference", b"dereference"):
        assert options.isTypeAllowed(name)
    assert jelly.unjelly([b"list", [b"tuple", 1]], options) == [(1,)]


@pytest.mark.parametrize("name", ["app.Thing", b"app.Thing"])
def test_allowTypes_by_name(name: str | bytes) -> None:
    options = SecurityOptions()
    options.allowTypes(name)
    assert options.isTypeAllowed(b"app.Thing")
    assert options.isTypeAllowed("app.Thing")


def test_allowTypes_by_class_stores_its_dotted_name() -> None:
    """Twisted stores a str here, which never matches the bytes it looks up."""
    options = SecurityOptions()
    options.allowTypes(Point)
    assert options.isTypeAllowed(POINT)


def test_allowInstancesOf() -> None:
    options = SecurityOptions()
    options.allowInstancesOf(Point)
    assert options.isTypeAllowed(POINT)
    assert options.isModuleAllowed(MODULE)
    assert options.isClassAllowed(Point)
    assert type(jelly.unjelly(POINT_SEXP, options)) is Point
    assert jelly.unjelly([b"class", POINT], options) is Point
    assert jelly.unjelly([b"list", 1], options) == [1]


def test_allowModules() -> None:
    options = SecurityOptions()
    options.allowModules("os", b"sys", sys.modules[__name__])
    assert options.isModuleAllowed("os")
    assert options.isModuleAllowed(b"sys")
    assert options.isModuleAllowed(__name__)
    assert not options.isModuleAllowed("shutil")
    options.allowTypes("module")
    assert jelly.unjelly([b"module", b"os"], options) is sys.modules["os"]


def test_allowModules_does_not_allow_the_classes_in_them() -> None:
    options = SecurityOptions()
    options.allowModules(MODULE)
    options.allowTypes(POINT)
    before = Point.made
    with pytest.raises(InsecureJelly, match="allowInstancesOf"):
        jelly.unjelly(POINT_SEXP, options)
    assert Point.made == before


def test_isClassAllowed() -> None:
    options = SecurityOptions()
    assert not options.isClassAllowed(Point)
    options.allowInstancesOf(Point)
    assert options.isClassAllowed(Point)
    assert not options.isClassAllowed(Copy)


def test_isTypeAllowed_does_not_pass_dotted_names() -> None:
    """twisted#6355: Twisted allows every name containing a dot."""
    assert tjelly.SecurityOptions().isTypeAllowed(b"os.system")
    assert not SecurityOptions().isTypeAllowed(b"os.system")
    assert not globalSecurity.isTypeAllowed(b"os.system")


def test_module_of_a_refused_class_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "jelly_never_imported.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    options = SecurityOptions()
    options.allowTypes("jelly_never_imported.Thing")
    with pytest.raises(InsecureJelly, match="module"):
        jelly.unjelly([b"jelly_never_imported.Thing", [b"None"]], options)
    assert "jelly_never_imported" not in sys.modules


def test_refused_instance_state_is_never_read() -> None:
    options = SecurityOptions()
    with pytest.raises(InsecureJelly):
        jelly.unjelly([b"list", POINT_SEXP], options)


# -- registrations and globalSecurity (twisted#5258) ------------------------------------------


def test_registration_allows_the_type_in_globalSecurity() -> None:
    assert not globalSecurity.isTypeAllowed(b"app.Copy")
    setUnjellyableForClass("app.Copy", Copy)
    assert globalSecurity.isTypeAllowed(b"app.Copy")
    assert type(jelly.unjelly([b"app.Copy", [b"dictionary"]], globalSecurity)) is Copy


def test_registration_by_class_uses_its_dotted_name() -> None:
    setUnjellyableForClass(Copy, Copy)
    assert unjellyableRegistry[f"{MODULE}.Copy".encode()] is Copy
    assert globalSecurity.isTypeAllowed(f"{MODULE}.Copy")


def test_registration_does_not_bypass_a_given_taster() -> None:
    """twisted#5258: in Twisted, any registered class passes any SecurityOptions."""
    setUnjellyableForClass("app.Copy", Copy)
    with pytest.raises(InsecureJelly, match=r"app\.Copy"):
        jelly.unjelly([b"app.Copy", [b"dictionary"]], basic())


def test_a_given_taster_can_allow_a_registered_tag() -> None:
    setUnjellyableForClass("app.Copy", Copy)
    options = basic()
    options.allowTypes("app.Copy")
    assert type(jelly.unjelly([b"app.Copy", [b"dictionary"]], options)) is Copy


def test_factory_registration_does_not_bypass_a_given_taster() -> None:
    setUnjellyableFactoryForClass("app.Made", lambda state: state)
    assert jelly.unjelly([b"app.Made", 5], globalSecurity) == 5
    with pytest.raises(InsecureJelly):
        jelly.unjelly([b"app.Made", 5], basic())


def test_globalSecurity_allows_basic_types_but_no_instances() -> None:
    assert globalSecurity.isTypeAllowed(b"dictionary")
    with pytest.raises(InsecureJelly):
        jelly.unjelly(POINT_SEXP, globalSecurity)


# -- dispatch order ---------------------------------------------------------------------------


class Invoker:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self.protocolUnjellyables = {b"remote": self.remote, b"app.Copy": self.remote}

    def remote(self, unjellier: Any, sexp: Any) -> Any:
        self.calls.append((unjellier, sexp))
        return ("remote", sexp[1])


def test_protocol_forms_come_first_whatever_the_taster() -> None:
    invoker = Invoker()
    options = SecurityOptions()  # allows neither lists nor b"remote"
    assert jelly.unjelly([b"remote", 7], options, invoker=invoker) == ("remote", 7)
    ((unjellier, sexp),) = invoker.calls
    assert unjellier.invoker is invoker
    assert sexp == [b"remote", 7]


def test_protocol_forms_come_before_registrations() -> None:
    setUnjellyableForClass("app.Copy", Copy)
    assert jelly.unjelly([b"app.Copy", 1], globalSecurity, invoker=Invoker()) == ("remote", 1)


def test_invoker_without_protocol_forms_is_fine() -> None:
    with pytest.raises(InsecureJelly):
        jelly.unjelly([b"remote", 7], globalSecurity, invoker=object())


def test_registered_class_comes_before_built_in_forms() -> None:
    class Text(Unjellyable):
        def unjellyFor(self, unjellier: Any, jellyList: Any) -> Any:
            self.raw = jellyList[1]
            return self

    setUnjellyableForClass("unicode", Text)
    back = jelly.unjelly([b"dictionary", [[b"unicode", b"k"], [b"unicode", b"v"]]],
                         globalSecurity)
    ((key, value),) = back.items()
    assert (type(key), key.raw, type(value), value.raw) == (Text, b"k", Text, b"v")


def test_registered_class_comes_before_factory() -> None:
    setUnjellyableFactoryForClass("app.Copy", lambda state: "factory")
    setUnjellyableForClass("app.Copy", Copy)
    assert type(jelly.unjelly([b"app.Copy", [b"dictionary"]], globalSecurity)) is Copy


def test_factory_comes_before_built_in_forms() -> None:
    setUnjellyableFactoryForClass("tuple", lambda state: ("factory", state))
    assert jelly.unjelly([b"tuple", 5], globalSecurity) == ("factory", 5)


def test_taster_refusing_strings_is_obeyed_inside_containers() -> None:
    options = basic()
    del options.allowedTypes[b"unicode"]
    with pytest.raises(InsecureJelly, match="unicode"):
        jelly.unjelly([b"list", [b"unicode", b"x"]], options)
    with pytest.raises(InsecureJelly, match="unicode"):
        jelly.unjelly([b"dictionary", [[b"unicode", b"x"], 1]], options)


# -- the jelly side ---------------------------------------------------------------------------


class Picky:
    """A taster of the user's own making, as Twisted asks it: by dotted type name."""

    def isTypeAllowed(self, name: bytes) -> bool:
        return name != POINT

    def isClassAllowed(self, cls: type) -> bool:
        return True

    def isModuleAllowed(self, name: str) -> bool:
        return True


def test_user_taster_can_refuse_a_type_when_jellying() -> None:
    with pytest.raises(tjelly.InsecureJelly):
        tjelly.jelly([Point()], Picky())
    with pytest.raises(InsecureJelly, match="Point"):
        jelly.jelly([Point()], Picky())


def test_user_taster_is_asked_for_instances_only() -> None:
    assert jelly.jelly([1, "s", {}], Picky()) == [b"list", 1, [b"unicode", b"s"], [b"dictionary"]]


# -- malformed input: InsecureJelly and nothing else ------------------------------------------


@pytest.mark.parametrize(
    "sexp",
    [
        [],
        [[]],
        [5],
        [b"nonsense"],
        [b"None", 1],
        [b"unicode"],
        [b"unicode", 5],
        [b"unicode", [b"list"]],
        [b"unicode", b"\xff"],
        [b"list", [b"unicode", b"\xff\xfe"]],
        [b"dictionary", [[b"unicode", b"\xff"], 1]],
        [b"dictionary", [[b"unicode", 5], 1]],
        [b"boolean", b"maybe"],
        [b"tuple", {}],
        [b"list", None],
        [b"list", object()],
        [b"list", True],
        [b"dictionary", [1]],
        [b"dictionary", [1, 2, 3]],
        [b"dictionary", b"ab"],
        [b"dictionary", [[b"list"], 1]],
        [b"set", [b"list"]],
        [b"frozenset", [b"dictionary"]],
        [b"date", b"x y z"],
        [b"date", b"2020 13 1"],
        [b"date", 5],
        [b"datetime", b"1 2"],
        [b"time", b"25 0 0 0"],
        [b"timedelta", b"1 2"],
        [b"timedelta", b"999999999999 0 0"],
        [b"decimal", 1, [1]],
        [b"decimal", b"1", 0],
        [b"decimal", 1],
        [b"persistent"],
        [b"unpersistable"],
        [b"reference", 1],
        [b"reference", b"1", [b"list"]],
        [b"dereference", 1.0],
        [b"dereference"],
        {},
        None,
    ],
)
def test_malformed_is_insecure_jelly(sexp: Any) -> None:
    with pytest.raises(InsecureJelly):
        jelly.unjelly(sexp)


def test_undefined_dereference() -> None:
    with pytest.raises(InsecureJelly, match="never defined"):
        jelly.unjelly([b"list", [b"dereference", 9]])


def test_duplicate_reference_id() -> None:
    with pytest.raises(InsecureJelly, match="twice"):
        jelly.unjelly([b"list", [b"reference", 1, [b"list"]], [b"reference", 1, [b"list"]]])


def test_reference_defined_inside_itself() -> None:
    with pytest.raises(InsecureJelly, match="twice"):
        jelly.unjelly([b"reference", 1, [b"list", [b"reference", 1, [b"list"]]]])


def test_tuple_that_contains_itself() -> None:
    with pytest.raises(InsecureJelly, match="contain themselves"):
        jelly.unjelly([b"reference", 1, [b"tuple", [b"dereference", 1]]])


def test_reference_to_itself() -> None:
    with pytest.raises(InsecureJelly):
        jelly.unjelly([b"reference", 1, [b"dereference", 1]])


def test_placeholder_never_returned_from_a_dangling_tuple() -> None:
    with pytest.raises(InsecureJelly):
        jelly.unjelly([b"tuple", [b"dereference", 3], 1])


# -- nesting ----------------------------------------------------------------------------------


def nested(depth: int, wrap: Any) -> Any:
    sexp: Any = [b"None"]
    for _ in range(depth):
        sexp = wrap(sexp)
    return sexp


WRAPPERS = {
    "list": lambda inner: [b"list", inner],
    "tuple": lambda inner: [b"tuple", inner],
    "set": lambda inner: [b"set", inner],
    "dict value": lambda inner: [b"dictionary", [1, inner]],
    "dict key": lambda inner: [b"dictionary", [inner, 1]],
    "reference": lambda inner: [b"reference", id(inner), inner],
    "instance": lambda inner: [POINT, inner],
    "method": lambda inner: [b"method", b"x", inner, [b"None"]],
}


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_deep_nesting_is_refused(kind: str) -> None:
    options = SecurityOptions()
    options.allowInstancesOf(Point)
    options.allowTypes("method")
    with pytest.raises(InsecureJelly, match="deeper"):
        jelly.unjelly(nested(100_000, WRAPPERS[kind]), options)


def test_deep_registered_classes_are_refused() -> None:
    setUnjellyableForClass("app.Copy", Copy)
    with pytest.raises(InsecureJelly, match="deeper"):
        jelly.unjelly(nested(100_000, lambda inner: [b"app.Copy", inner]), globalSecurity)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert jelly.unjelly(nested(MAX_DEPTH - 1, WRAPPERS["list"]))
    assert jelly.unjelly(nested(MAX_DEPTH - 1, WRAPPERS["dict value"]))
    with pytest.raises(InsecureJelly):
        jelly.unjelly(nested(MAX_DEPTH + 1, WRAPPERS["list"]))


def test_max_depth_is_configurable() -> None:
    with pytest.raises(InsecureJelly):
        jelly.unjelly(nested(11, WRAPPERS["list"]), maxDepth=10)
    assert jelly.unjelly(nested(500, WRAPPERS["list"]), maxDepth=1000)


def test_python_stack_limit_becomes_insecure_jelly() -> None:
    with pytest.raises(InsecureJelly, match="Python stack"):
        jelly.unjelly(nested(sys.getrecursionlimit() * 2, WRAPPERS["list"]), maxDepth=10**9)


# -- fuzzing: nothing but InsecureJelly escapes -----------------------------------------------


TAGS = [
    b"None", b"unicode", b"boolean", b"list", b"tuple", b"dictionary", b"set", b"frozenset",
    b"reference", b"dereference", b"persistent", b"unpersistable", b"decimal", b"datetime",
    b"date", b"time", b"timedelta", b"module", b"class", b"function", b"method", b"instance",
    POINT, b"os.system", b"true", b"false", b"",
]
tags = st.sampled_from(TAGS) | st.binary(max_size=4)
atoms = st.one_of(
    st.binary(max_size=8), st.integers(), st.floats(), tags,
    st.sampled_from([b"2020 1 2", b"1 2 3 4", b"0 0 0", b"\xff", b"-5 99 0"]),
)
garbage = st.sampled_from([{}, None, object(), set(), (1,), True, "s", b"x".decode])
sexps = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.builds(lambda tag, rest: [tag, *rest], tags, st.lists(inner, max_size=4)),
        st.builds(lambda key, value: [b"dictionary", [key, value]], inner, inner),
        st.builds(lambda n, body: [b"reference", n, body], st.integers(0, 3), inner),
        st.builds(lambda n: [b"dereference", n], st.integers(0, 3)),
    ),
    max_leaves=40,
)
hostile = st.recursive(
    sexps | garbage,
    lambda inner: st.builds(lambda tag, rest: [tag, *rest], tags, st.lists(inner, max_size=4)),
    max_leaves=10,
)


def point_options() -> SecurityOptions:
    options = SecurityOptions()
    options.allowInstancesOf(Point)
    return options


TASTERS = {
    "default": lambda: None,
    "fresh": SecurityOptions,
    "global": lambda: globalSecurity,
    "instances": point_options,
}


@given(taster=st.sampled_from(sorted(TASTERS)), sexp=sexps)
@settings(max_examples=1000)
def test_arbitrary_sexps_raise_only_insecure_jelly(taster: str, sexp: Any) -> None:
    with contextlib.suppress(InsecureJelly):
        jelly.unjelly(sexp, TASTERS[taster]())


@given(sexp=hostile)
@settings(max_examples=300)
def test_non_wire_objects_raise_only_insecure_jelly(sexp: Any) -> None:
    with contextlib.suppress(InsecureJelly):
        jelly.unjelly(sexp, point_options())


@given(sexp=sexps)
@settings(max_examples=200)
def test_no_placeholder_is_ever_returned(sexp: Any) -> None:
    try:
        value = jelly.unjelly(sexp)
    except InsecureJelly:
        return
    assert "Hole" not in repr(value)
