"""spread.rebuild with real modules on disk: live instances, subclasses elsewhere, saved
callbacks and imported names take the new code; refusals and failures leave the old code
running; the __rebuild__ hook carries state; the samples of docs/upgrading.md."""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

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
