"""spread.rebuild with real modules on disk: live instances, subclasses elsewhere, saved
callbacks and imported names take the new code; refusals and failures leave the old code
running; the __rebuild__ hook carries state; the samples of docs/upgrading.md."""

from __future__ import annotations

import importlib
import io
import re
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python import rebuild as twisted_rebuild

from spread import rebuild as spread_rebuild
from spread.rebuild import NotReloadableError, RebuildError, rebuild

DOC = Path(__file__).parent.parent / "docs" / "upgrading.md"


def doc_sample(first_line: str) -> str:
    """The ```python block of docs/upgrading.md whose first line is ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    matching = [block for block in blocks if block.splitlines()[0] == first_line]
    assert len(matching) == 1, f"docs/upgrading.md has no single sample {first_line!r}"
    return str(matching[0])


class SourceTree:
    """Modules written to a temporary directory on sys.path, imported for real."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root = root
        self.prefix = prefix
        self.imported: list[str] = []

    def name(self, short: str) -> str:
        return f"{self.prefix}_{short}"

    def write(self, short: str, source: str) -> None:
        (self.root / f"{self.name(short)}.py").write_text(textwrap.dedent(source), "utf-8")

    def load(self, short: str, source: str) -> Any:
        """Write ``source`` as module ``short`` and import it."""
        self.write(short, source)
        importlib.invalidate_caches()
        self.imported.append(self.name(short))
        return importlib.import_module(self.name(short))


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SourceTree]:
    # No bytecode files: a rewrite within the same second could otherwise load a stale .pyc.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    sources = SourceTree(tmp_path, f"live_{tmp_path.name}".replace("-", "_"))
    yield sources
    for name in sources.imported:
        sys.modules.pop(name, None)


GREETER = """
class Greeter:
    def greet(self):
        return "hello"

def shout():
    return "HEY"
"""

GREETER_V2 = GREETER.replace('"hello"', '"hello again"').replace('"HEY"', '"HEY AGAIN"')


def test_live_instance_takes_the_new_method(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    greeter = app.Greeter()
    tree.write("app", GREETER_V2)
    assert rebuild(app) is app
    assert greeter.greet() == "hello again"
    assert type(greeter) is app.Greeter


def test_instance_held_only_in_a_table_takes_the_new_method(tree: SourceTree) -> None:
    # What a PB broker does with exported objects: keeps them in a dict by id.
    app = tree.load("app", GREETER)
    exported = {1: app.Greeter()}
    tree.write("app", GREETER_V2)
    rebuild(app)
    assert exported[1].greet() == "hello again"


def test_saved_bound_method_and_function_run_the_new_code(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    callbacks = [app.Greeter().greet, app.shout]
    tree.write("app", GREETER_V2)
    rebuild(app)
    assert [callback() for callback in callbacks] == ["hello again", "HEY AGAIN"]


def test_names_imported_by_other_modules_are_rebound(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    user = tree.load(
        "user",
        f"""
        from {app.__name__} import Greeter, shout

        def make():
            return Greeter()
        """,
    )
    tree.write("app", GREETER_V2)
    rebuild(app)
    assert user.Greeter is app.Greeter
    assert user.shout is app.shout
    assert type(user.make()) is app.Greeter


def test_subclass_in_another_module_inherits_the_new_code(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    polite = tree.load(
        "polite",
        f"""
        import {app.__name__} as app

        class PoliteGreeter(app.Greeter):
            def greet(self):
                return super().greet() + ", please"
        """,
    )
    greeter = polite.PoliteGreeter()
    tree.write("app", GREETER_V2)
    rebuild(app)
    assert greeter.greet() == "hello again, please"
    assert isinstance(greeter, app.Greeter)


def test_subclass_in_the_same_module_takes_the_new_class(tree: SourceTree) -> None:
    source = GREETER + "\nclass Loud(Greeter):\n    def greet(self):\n        return 'LOUD'\n"
    app = tree.load("app", source)
    loud = app.Loud()
    tree.write("app", source.replace("'LOUD'", "super().greet().upper()"))
    rebuild(app)
    assert loud.greet() == "HELLO"
    assert type(loud) is app.Loud


def test_not_reloadable_module_is_refused_and_keeps_running(tree: SourceTree) -> None:
    app = tree.load("app", GREETER + "\n__reloadable__ = False\n")
    greeter = app.Greeter()
    tree.write("app", GREETER_V2)
    with pytest.raises(NotReloadableError, match=r"not reloadable.*restart"):
        rebuild(app)
    assert greeter.greet() == "hello"
    assert app.shout() == "HEY"


def test_twisted_marker_is_honoured(tree: SourceTree) -> None:
    app = tree.load("app", GREETER + "\nALLOW_TWISTED_REBUILD = False\n")
    tree.write("app", GREETER_V2)
    with pytest.raises(NotReloadableError):
        rebuild(app)
    assert app.Greeter().greet() == "hello"


def test_not_reloadable_error_is_a_runtime_error_as_in_twisted() -> None:
    assert issubclass(NotReloadableError, RuntimeError)


def test_reloadable_sample_from_docs_is_the_marker(tree: SourceTree) -> None:
    app = tree.load("app", GREETER + "\n" + doc_sample("__reloadable__ = False"))
    with pytest.raises(NotReloadableError):
        rebuild(app)


def test_syntax_error_leaves_the_old_code_running(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    greeter = app.Greeter()
    old_class = app.Greeter
    tree.write("app", GREETER_V2 + "\ndef broken(:\n")
    with pytest.raises(RebuildError, match="old code keeps running") as failed:
        rebuild(app)
    assert isinstance(failed.value.__cause__, SyntaxError)
    assert app.Greeter is old_class
    assert greeter.greet() == "hello"
    assert app.shout() == "HEY"


def test_error_while_running_new_source_restores_the_namespace(tree: SourceTree) -> None:
    app = tree.load("app", GREETER + "\nsetting = 'old'\n")
    greeter = app.Greeter()
    # The new source redefines everything, then fails before it ends.
    tree.write("app", GREETER_V2 + "\nsetting = 'new'\nraise ValueError('bad config')\n")
    with pytest.raises(RebuildError, match="bad config") as failed:
        rebuild(app)
    assert isinstance(failed.value.__cause__, ValueError)
    assert app.setting == "old"
    assert greeter.greet() == "hello"
    assert app.shout() == "HEY"
    assert sys.modules[app.__name__] is app


def test_rebuild_works_again_after_fixing_the_source(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    greeter = app.Greeter()
    tree.write("app", GREETER_V2 + "\nraise ValueError('oops')\n")
    with pytest.raises(RebuildError):
        rebuild(app)
    tree.write("app", GREETER_V2)
    rebuild(app)
    assert greeter.greet() == "hello again"


def test_hook_sample_from_docs_carries_state(tree: SourceTree) -> None:
    counter = tree.load("counter", doc_sample("# counter.py"))
    counter.add(5)
    counter.add(2)
    tree.write(
        "counter", doc_sample("# counter.py").replace("total += amount", "total += 10 * amount")
    )
    rebuild(counter)
    assert counter.total == 7
    assert counter.add(1) == 17


def test_hook_receives_the_old_and_the_new_module(tree: SourceTree) -> None:
    app = tree.load("app", "version = 1\n")
    tree.write(
        "app",
        """
        version = 2
        seen = []

        def __rebuild__(old_module, new_module):
            seen.append((old_module.version, new_module.version, new_module.__name__))
        """,
    )
    rebuild(app)
    assert app.seen == [(1, 2, app.__name__)]


def test_failing_hook_leaves_the_old_code_running(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    greeter = app.Greeter()
    tree.write("app", GREETER_V2 + "\ndef __rebuild__(old, new):\n    raise KeyError('state')\n")
    with pytest.raises(RebuildError) as failed:
        rebuild(app)
    assert isinstance(failed.value.__cause__, KeyError)
    assert greeter.greet() == "hello"
    assert not hasattr(app, "__rebuild__")


def test_hook_the_new_source_dropped_is_not_called(tree: SourceTree) -> None:
    app = tree.load(
        "app",
        """
        calls = 0

        def __rebuild__(old_module, new_module):
            new_module.calls = old_module.calls + 1
        """,
    )
    tree.write("app", "calls = 0\n")
    rebuild(app)
    assert app.calls == 0


def test_class_whose_layout_changed_keeps_old_instances_and_logs(tree: SourceTree) -> None:
    app = tree.load("app", GREETER.replace("class Greeter:", "class Greeter:\n    __slots__ = ()"))
    greeter = app.Greeter()
    tree.write(
        "app", GREETER_V2.replace("class Greeter:", "class Greeter:\n    __slots__ = ('a',)")
    )
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        rebuild(app, doLog=False)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert type(greeter) is not app.Greeter
    assert greeter.greet() == "hello"
    assert app.Greeter().greet() == "hello again"
    assert any("could not move" in formatEvent(event) for event in events)


def test_administrator_sample_from_docs_rebuilds_by_name(tree: SourceTree) -> None:
    pytest.importorskip("spread.pb")
    namespace: dict[str, Any] = {}
    exec(doc_sample("# a privileged reload command"), namespace)
    app = tree.load("app", GREETER)
    greeter = app.Greeter()
    tree.write("app", GREETER_V2)
    answer = namespace["Administrator"]().perspective_rebuild(app.__name__)
    assert answer == f"{app.__name__} rebuilt"
    assert greeter.greet() == "hello again"


def test_module_not_in_sys_modules_is_refused_unchanged(tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    detached = ModuleType(app.__name__)
    detached.__dict__.update(vars(app))
    sys.modules.pop(app.__name__)
    with pytest.raises(RebuildError):
        rebuild(detached)
    assert detached.Greeter is app.Greeter


def test_subclass_that_cannot_change_base_keeps_the_old_code(tree: SourceTree) -> None:
    app = tree.load("app", GREETER.replace("class Greeter:", "class Greeter:\n    __slots__ = ()"))
    polite = tree.load(
        "polite",
        f"""
        import {app.__name__} as app

        class PoliteGreeter(app.Greeter):
            __slots__ = ()
        """,
    )
    greeter = polite.PoliteGreeter()
    tree.write(
        "app", GREETER_V2.replace("class Greeter:", "class Greeter:\n    __slots__ = ('a',)")
    )
    rebuild(app, doLog=False)
    assert greeter.greet() == "hello"
    assert app.Greeter().greet() == "hello again"


def test_module_can_rebuild_itself_from_a_running_method(tree: SourceTree) -> None:
    # The usual trigger: a privileged remote method living in the module being rebuilt.
    source = """
    import sys
    from spread.rebuild import rebuild

    class Admin:
        def reload(self):
            rebuild(sys.modules[__name__])
            return "reloaded"

        def version(self):
            return 1
    """
    app = tree.load("app", source)
    admin = app.Admin()
    tree.write("app", source.replace("return 1", "return 2"))
    assert admin.reload() == "reloaded"
    assert admin.version() == 2


# ---------------------------------------------------------------------------------------------
# Helpers for code that keeps callables: latestClass, latestFunction, updateInstance, Sensitive,
# lastRebuild. Tests taking ``impl`` run the same steps against twisted.python.rebuild, to show
# we behave as it does; the others pin down where we deliberately differ.

IMPLEMENTATIONS = [
    pytest.param(spread_rebuild, id="spread"),
    pytest.param(twisted_rebuild, id="twisted"),
]


@pytest.fixture
def scratch() -> Iterator[Callable[..., ModuleType]]:
    """Modules that exist only in sys.modules; running more source in one redefines its
    classes, as a reload that does not move live objects (Twisted's own tests do the same)."""
    made: dict[str, ModuleType] = {}

    def run(short: str, source: str = "") -> ModuleType:
        name = f"scratch_{short}"
        module = made.setdefault(name, ModuleType(name))
        sys.modules[name] = module
        exec(textwrap.dedent(source), module.__dict__)
        return module

    yield run
    for name in made:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_updateInstance_moves_an_instance_to_the_class_its_module_binds_now(
    impl: Any, scratch: Callable[..., ModuleType]
) -> None:
    app = scratch("app", "class Base:\n    pass\nclass Thing(Base):\n    pass\n")
    thing = app.Thing()
    scratch(
        "app",
        """
        class Base:
            def greet(self):
                return "new base"
        class Thing(Base):
            size = 10
        """,
    )
    impl.updateInstance(thing)
    assert type(thing) is app.Thing
    assert (thing.greet(), thing.size) == ("new base", 10)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_latestClass_rebases_a_subclass_whose_base_was_replaced(
    impl: Any, scratch: Callable[..., ModuleType]
) -> None:
    base = scratch("base", "class Base:\n    pass\n")
    user = scratch("user", "import scratch_base\nclass Sub(scratch_base.Base):\n    pass\n")
    scratch("base", "class Base:\n    def greet(self):\n        return 'new'\n")
    assert impl.latestClass(user.Sub) is user.Sub
    assert user.Sub.__bases__ == (base.Base,)
    assert user.Sub().greet() == "new"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_latestClass_of_a_builtin_is_itself(impl: Any) -> None:
    for builtin in (Exception, object, int, dict):
        assert impl.latestClass(builtin) is builtin


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_updateInstance_keeps_the_state_of_slotted_and_builtin_subclasses(
    impl: Any, scratch: Callable[..., ModuleType]
) -> None:
    source = "class Slotted:\n    __slots__ = ['a']\nclass Items(list):\n    pass\n"
    app = scratch("app", source)
    slotted, items = app.Slotted(), app.Items([2])
    slotted.a = 7
    scratch("app", source)
    impl.updateInstance(slotted)
    impl.updateInstance(items)
    assert (type(slotted), slotted.a) == (app.Slotted, 7)
    assert (type(items), items) == (app.Items, [2])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_latestClass_that_cannot_take_the_new_base_is_copied_onto_it(
    impl: Any, scratch: Callable[..., ModuleType]
) -> None:
    # The new base has another layout, so the subclass cannot switch to it in place.
    base = scratch("base", "class Base:\n    __slots__ = ('a',)\n")
    user = scratch("user", "import scratch_base\nclass Sub(scratch_base.Base):\n    kind = 'sub'\n")
    old_sub = user.Sub
    scratch("base", "class Base:\n    __slots__ = ('a', 'b')\n")
    fresh = impl.latestClass(old_sub)
    assert fresh is not old_sub
    assert old_sub.__bases__ != (base.Base,)
    assert (fresh.__name__, fresh.__bases__, fresh.kind) == ("Sub", (base.Base,), "sub")


def test_latestClass_leaves_classes_written_in_c_alone() -> None:
    # Twisted's returns a copy of io.StringIO here (it cannot set the bases of a C class).
    assert spread_rebuild.latestClass(io.StringIO) is io.StringIO


def test_latestClass_finds_a_nested_class_by_its_qualified_name(
    scratch: Callable[..., ModuleType],
) -> None:
    # Twisted's looks the name "Inner" up at module level and raises AttributeError.
    source = "class Outer:\n    class Inner:\n        pass\n"
    app = scratch("app", source)
    old_inner = app.Outer.Inner
    scratch("app", source)
    assert spread_rebuild.latestClass(old_inner) is app.Outer.Inner is not old_inner


def test_latestClass_of_a_class_its_module_cannot_name_is_itself() -> None:
    class Local:
        pass

    assert spread_rebuild.latestClass(Local) is Local


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_latestFunction_after_a_rebuild_is_the_new_function(impl: Any, tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    old_shout = app.shout
    tree.write("app", GREETER_V2)
    impl.rebuild(app, doLog=False)
    assert impl.latestFunction(old_shout) is app.shout is not old_shout
    assert app.shout() == "HEY AGAIN"


def helper() -> str:
    return "helper"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_latestFunction_of_a_module_not_rebuilt_is_itself(impl: Any) -> None:
    def nested() -> None:
        pass

    assert impl.latestFunction(helper) is helper
    assert impl.latestFunction(nested) is nested


def test_latestFunction_finds_a_method_through_its_class(
    scratch: Callable[..., ModuleType],
) -> None:
    # Twisted's looks the name "greet" up at module level and raises AttributeError.
    source = "class Greeter:\n    def greet(self):\n        return 'hi'\n"
    app = scratch("app", source)
    old_greet = app.Greeter.greet
    scratch("app", source)
    assert spread_rebuild.latestFunction(old_greet) is app.Greeter.greet is not old_greet


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_Sensitive_latestVersionOf_handles_functions_methods_and_the_rest(impl: Any) -> None:
    class Handlers(impl.Sensitive):  # type: ignore[misc]
        def handle(self) -> str:
            return "handled"

    handlers = Handlers()
    handlers.rebuildUpToDate()
    assert not handlers.needRebuildUpdate()
    assert handlers.latestVersionOf(Handlers.handle) is Handlers.handle
    assert handlers.latestVersionOf(handlers.handle) == handlers.handle
    assert handlers.latestVersionOf(helper) is helper
    for unchanged in (Handlers, Exception, 42):
        assert handlers.latestVersionOf(unchanged) is unchanged


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_Sensitive_needs_an_update_after_a_rebuild(impl: Any, tree: SourceTree) -> None:
    app = tree.load("app", GREETER)
    handlers = impl.Sensitive()
    handlers.rebuildUpToDate()
    tree.write("app", GREETER_V2)
    impl.rebuild(app, doLog=False)
    assert handlers.needRebuildUpdate()
    handlers.rebuildUpToDate()
    assert not handlers.needRebuildUpdate()


def test_lastRebuild_moves_only_when_new_code_is_in_place(tree: SourceTree) -> None:
    app = tree.load("app", GREETER + "\n__reloadable__ = False\n")
    before = spread_rebuild.lastRebuild
    with pytest.raises(NotReloadableError):  # Twisted's moves it even for a refused rebuild
        rebuild(app)
    assert spread_rebuild.lastRebuild == before
    rebuild(tree.load("other", GREETER))
    assert spread_rebuild.lastRebuild > before


NEW_NAMES = ["latestClass", "latestFunction", "updateInstance", "Sensitive", "lastRebuild"]


@pytest.mark.parametrize("name", NEW_NAMES)
def test_new_names_are_not_deprecated_as_in_twisted(name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = getattr(twisted_rebuild, name)
        getattr(spread_rebuild, name)
    assert not hasattr(theirs, "deprecatedVersion")  # what twisted.python.deprecate sets
    assert [str(warning.message) for warning in caught] == []
