"""spread.styles: Versioned state upgraded on load (pickle) and on receipt (versionedState /
upgradeState), Twisted's key format both ways, and the samples of docs/upgrading.md."""

from __future__ import annotations

import gc
import pickle
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.persisted import styles as twisted_styles

from spread import styles
from spread.styles import (
    Ephemeral,
    Versioned,
    VersionError,
    doUpgrade,
    requireUpgrade,
    upgradeState,
    versionedState,
    versionKey,
)

DOC = Path(__file__).parent.parent / "docs" / "upgrading.md"


def doc_sample(first_line: str) -> str:
    """The ```python block of docs/upgrading.md whose first line is ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    matching = [block for block in blocks if block.splitlines()[0] == first_line]
    assert len(matching) == 1, f"docs/upgrading.md has no single sample {first_line!r}"
    return str(matching[0])


@pytest.fixture(autouse=True)
def no_pending_upgrades() -> Iterator[None]:
    """Each test starts and ends with nothing waiting for doUpgrade()."""
    styles._pending.clear()
    yield
    styles._pending.clear()


@pytest.fixture
def release() -> Iterator[Callable[[str], ModuleType]]:
    """Install source as the importable module ``app_release``, replacing the previous release,
    as a program restarted on new code would see it."""
    name = "app_release"

    def install(source: str) -> ModuleType:
        module = ModuleType(name)
        sys.modules[name] = module
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
        return module

    yield install
    sys.modules.pop(name, None)


def thing_release(version: int) -> str:
    return doc_sample(f"# thing.py, version {version}")


# ---------------------------------------------------------------------------------------------
# The Thing example of docs/upgrading.md: state saved by every release loads into the newest

SAVED_BY_RELEASE: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {
    0: ((5,), {"size": [(5, "inches")], "name": "line"}),
    1: ((7, "cm"), {"size": [(7, "cm")], "name": "line"}),
    2: ((9, "m"), {"size": [(9, "m")], "name": "line"}),
    3: (((2, "m"), (3, "m")), {"size": [(2, "m"), (3, "m")], "name": "square"}),
}


@pytest.mark.parametrize("old_version", sorted(SAVED_BY_RELEASE))
def test_thing_saved_by_any_release_loads_into_the_newest(
    release: Callable[[str], ModuleType], old_version: int
) -> None:
    args, expected = SAVED_BY_RELEASE[old_version]
    old = release(thing_release(old_version))
    saved = pickle.dumps(old.Thing(*args))
    newest = release(thing_release(3))
    thing = pickle.loads(saved)
    doUpgrade()
    assert type(thing) is newest.Thing
    assert thing.__dict__ == expected


def test_upgrades_wait_for_doUpgrade(release: Callable[[str], ModuleType]) -> None:
    saved = pickle.dumps(release(thing_release(0)).Thing(5))
    release(thing_release(3))
    thing = pickle.loads(saved)
    assert thing.__dict__ == {"length": 5}
    doUpgrade()
    assert thing.size == [(5, "inches")]


def test_upgraded_object_saves_at_the_current_version(
    release: Callable[[str], ModuleType],
) -> None:
    saved = pickle.dumps(release(thing_release(1)).Thing(5, "cm"))
    newest = release(thing_release(3))
    thing = pickle.loads(saved)
    doUpgrade()
    state = thing.__getstate__()
    assert state[versionKey(newest.Thing)] == 3
    again = pickle.loads(pickle.dumps(thing))
    doUpgrade()
    assert again.__dict__ == thing.__dict__


def test_loading_sample_from_docs(release: Callable[[str], ModuleType], tmp_path: Path) -> None:
    path = tmp_path / "things.pickle"
    path.write_bytes(pickle.dumps([release(thing_release(0)).Thing(4)]))
    release(thing_release(3))
    namespace: dict[str, Any] = {}
    exec(doc_sample("# loading saved things"), namespace)
    [thing] = namespace["load_things"](path)
    assert thing.size == [(4, "inches")]


DRAWING_V0 = """
class Drawing:
    def __init__(self, shape):
        self.shape = shape
"""


def test_requireUpgrade_sample_upgrades_the_other_object_first(
    release: Callable[[str], ModuleType],
) -> None:
    old = release(thing_release(0) + DRAWING_V0)
    saved = pickle.dumps(old.Drawing(old.Thing(5)))
    release(thing_release(3) + doc_sample("# an upgrade that needs another object upgraded first"))
    drawing = pickle.loads(saved)
    requireUpgrade(drawing)  # before doUpgrade: the Thing inside is still at version 0
    assert drawing.area == 1
    assert drawing.shape.size == [(5, "inches")]


# ---------------------------------------------------------------------------------------------
# Versioned on its own


class Counted(Versioned):
    """Counts its upgrade calls; the test sets persistenceVersion before saving and loading."""

    persistenceVersion = 1
    persistenceForgets = ("cache",)

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.cache = object()

    def upgradeToVersion2(self) -> None:
        self.calls.append("Counted2")

    def upgradeToVersion3(self) -> None:
        self.calls.append("Counted3")


class Base(Versioned):
    persistenceVersion = 1

    def __init__(self) -> None:
        self.calls: list[str] = []

    def upgradeToVersion1(self) -> None:
        self.calls.append("Base1")

    def upgradeToVersion2(self) -> None:
        self.calls.append("Base2")


class Child(Base):
    persistenceVersion = 1

    def upgradeToVersion1(self) -> None:
        self.calls.append("Child1")

    def upgradeToVersion2(self) -> None:
        self.calls.append("Child2")

    def upgradeToVersion3(self) -> None:
        self.calls.append("Child3")


@pytest.fixture
def versions() -> Iterator[Callable[[type, int], None]]:
    """Set a class's persistenceVersion for one test."""
    originals: dict[type, int] = {}

    def set_version(cls: type, version: int) -> None:
        originals.setdefault(cls, vars(cls)["persistenceVersion"])
        cls.persistenceVersion = version  # type: ignore[attr-defined]

    yield set_version
    for cls, version in originals.items():
        cls.persistenceVersion = version  # type: ignore[attr-defined]


def test_each_missing_version_is_upgraded_once_in_order(
    versions: Callable[[type, int], None],
) -> None:
    saved = pickle.dumps(Counted())
    versions(Counted, 3)
    loaded = pickle.loads(saved)
    doUpgrade()
    assert loaded.calls == ["Counted2", "Counted3"]
    doUpgrade()
    requireUpgrade(loaded)
    assert loaded.calls == ["Counted2", "Counted3"]


def test_persistenceForgets_leaves_attributes_out_of_the_pickle() -> None:
    loaded = pickle.loads(pickle.dumps(Counted()))
    assert not hasattr(loaded, "cache")


def test_each_class_of_a_hierarchy_upgrades_its_own_versions(
    versions: Callable[[type, int], None],
) -> None:
    saved = pickle.dumps(Child())
    versions(Base, 2)
    versions(Child, 3)
    loaded = pickle.loads(saved)
    doUpgrade()
    assert loaded.calls == ["Base2", "Child2", "Child3"]


def test_state_without_versions_is_version_zero() -> None:
    child = Child.__new__(Child)
    child.__setstate__({"calls": []})
    doUpgrade()
    assert child.calls == ["Base1", "Child1"]


def test_state_at_the_current_version_is_not_queued() -> None:
    pickle.loads(pickle.dumps(Child()))
    assert styles._pending == {}


def test_newer_pickle_is_refused_on_load(versions: Callable[[type, int], None]) -> None:
    versions(Counted, 5)
    saved = pickle.dumps(Counted())
    versions(Counted, 3)
    with pytest.raises(VersionError, match=rf"{__name__}\.Counted.*version 5.*version 3"):
        pickle.loads(saved)


def test_upgrade_that_loads_more_objects_upgrades_them_too(
    versions: Callable[[type, int], None],
) -> None:
    inner = pickle.dumps(Counted())
    outer = pickle.dumps(Base())
    versions(Counted, 2)
    versions(Base, 2)
    loaded_inner: list[Counted] = []

    def upgradeToVersion2(self: Base) -> None:
        loaded_inner.append(pickle.loads(inner))
        doUpgrade()

    Base.upgradeToVersion2 = upgradeToVersion2  # type: ignore[method-assign]
    try:
        loaded_outer = pickle.loads(outer)
        doUpgrade()
    finally:
        del Base.upgradeToVersion2
    assert loaded_outer.calls == []
    assert loaded_inner[0].calls == ["Counted2"]


def test_missing_upgrade_method_is_skipped_and_logged(
    versions: Callable[[type, int], None],
) -> None:
    saved = pickle.dumps(Counted())
    versions(Counted, 4)  # there is no upgradeToVersion4
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        loaded = pickle.loads(saved)
        doUpgrade()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert loaded.calls == ["Counted2", "Counted3"]
    assert any("upgradeToVersion4" in formatEvent(event) for event in events)


def test_failed_upgrade_leaves_the_rest_pending(versions: Callable[[type, int], None]) -> None:
    saved = pickle.dumps([Base(), Counted()])
    versions(Base, 2)
    versions(Counted, 2)

    def upgradeToVersion2(self: Base) -> None:
        raise RuntimeError("broken upgrade")

    Base.upgradeToVersion2 = upgradeToVersion2  # type: ignore[method-assign]
    try:
        _, counted = pickle.loads(saved)
        with pytest.raises(RuntimeError, match="broken upgrade"):
            doUpgrade()
    finally:
        del Base.upgradeToVersion2
    doUpgrade()
    assert counted.calls == ["Counted2"]


def test_object_dropped_before_doUpgrade_is_forgotten(
    versions: Callable[[type, int], None],
) -> None:
    saved = pickle.dumps(Counted())
    versions(Counted, 2)
    loaded = pickle.loads(saved)
    assert len(styles._pending) == 1
    del loaded
    gc.collect()
    assert styles._pending == {}


def test_versioned_without_weak_references_is_still_upgraded() -> None:
    restored = Unweakable.__new__(Unweakable, (1, 2))
    restored.__setstate__({})
    doUpgrade()
    assert restored.upgraded


class Unweakable(Versioned, tuple):  # type: ignore[type-arg]
    persistenceVersion = 1

    def upgradeToVersion1(self) -> None:
        self.upgraded = True


def test_requireUpgrade_returns_its_argument() -> None:
    plain = object()
    assert requireUpgrade(plain) is plain


# ---------------------------------------------------------------------------------------------
# Twisted's key format, both ways


class Outer:
    class Nested(Versioned):
        persistenceVersion = 1


def test_version_key_is_twisteds() -> None:
    # Twisted builds the key from __name__, not __qualname__.
    assert versionKey(Outer.Nested) == f"{__name__}.Nested.persistenceVersion"


TWISTED_TOOL = """
from twisted.persisted.styles import Versioned

class Part(Versioned):
    persistenceVersion = 1
    def __init__(self):
        self.log = []

class Tool(Part):
    persistenceVersion = 2
"""

SPREAD_TOOL = """
from {module} import Versioned

class Part(Versioned):
    persistenceVersion = 2
    def __init__(self):
        self.log = []
    def upgradeToVersion2(self):
        self.log.append("Part2")

class Tool(Part):
    persistenceVersion = 3
    def upgradeToVersion3(self):
        self.log.append("Tool3")
"""


def test_state_pickled_by_twisted_versioned_loads_and_upgrades(
    release: Callable[[str], ModuleType],
) -> None:
    saved = pickle.dumps(release(TWISTED_TOOL).Tool())
    release(SPREAD_TOOL.format(module="spread.styles"))
    tool = pickle.loads(saved)
    doUpgrade()
    assert tool.log == ["Part2", "Tool3"]
    assert tool.__dict__ == {"log": ["Part2", "Tool3"]}


def test_state_pickled_by_spread_loads_into_twisted_versioned(
    release: Callable[[str], ModuleType],
) -> None:
    saved = pickle.dumps(release(TWISTED_TOOL.replace("twisted.persisted", "spread")).Tool())
    release(SPREAD_TOOL.format(module="twisted.persisted.styles"))
    tool = pickle.loads(saved)
    twisted_styles.doUpgrade()
    assert tool.log == ["Part2", "Tool3"]


def test_getstate_matches_twisted(release: Callable[[str], ModuleType]) -> None:
    twisted_state = release(TWISTED_TOOL).Tool().__getstate__()
    spread_state = (
        release(TWISTED_TOOL.replace("twisted.persisted", "spread")).Tool().__getstate__()
    )
    assert spread_state == twisted_state


# ---------------------------------------------------------------------------------------------
# Ephemeral


class Connection(Ephemeral):
    def __init__(self) -> None:
        self.socket = "an open socket"


class Holder:
    def __init__(self) -> None:
        self.connection = Connection()


def test_ephemeral_pickles_to_a_bare_placeholder() -> None:
    loaded = pickle.loads(pickle.dumps(Holder()))
    assert type(loaded.connection) is Ephemeral
    assert vars(loaded.connection) == {}


def test_ephemeral_state_restores_as_a_bare_placeholder() -> None:
    connection = Connection.__new__(Connection)
    connection.__setstate__(Connection().__getstate__())
    assert type(connection) is Ephemeral


# ---------------------------------------------------------------------------------------------
# Upgrade on receipt: versionedState on the sender, upgradeState on the receiver


class SenderThing(Versioned):
    persistenceVersion = 1


class ReceiverThing(Versioned):
    persistenceVersion = 3

    def __init__(self) -> None:
        raise AssertionError("upgrades must not call __init__")

    def upgradeToVersion1(self) -> None:
        self.steps = [*getattr(self, "steps", []), 1]

    def upgradeToVersion2(self) -> None:
        self.steps.append(2)

    def upgradeToVersion3(self) -> None:
        self.steps.append(3)


def test_peer_sample_from_docs() -> None:
    exec(doc_sample("# upgrading state from an older peer"), {"__name__": "peer_sample"})


def test_versionedState_stamps_every_level_and_the_type_name() -> None:
    state = {"calls": []}
    stamped = versionedState(Child(), state, typeName="wire.Child")
    assert stamped == {
        "calls": [],
        versionKey(Base): 1,
        versionKey(Child): 1,
        "wire.Child.persistenceVersion": 1,
    }
    assert state == {"calls": []}


def test_versionedState_matches_twisted_getstate_without_typeName(
    release: Callable[[str], ModuleType],
) -> None:
    tool = release(TWISTED_TOOL.replace("twisted.persisted", "spread")).Tool()
    assert versionedState(tool, tool.__dict__) == tool.__getstate__()


def test_upgradeState_runs_missing_versions_after_the_senders() -> None:
    sent = versionedState(SenderThing(), {"steps": [1]}, typeName="tests.test_styles.SenderThing")
    upgraded = upgradeState(ReceiverThing, sent, typeName="tests.test_styles.SenderThing")
    assert upgraded == {"steps": [1, 2, 3]}


def test_upgradeState_treats_an_unversioned_sender_as_version_zero() -> None:
    # A Twisted peer sends a Copyable's bare __dict__.
    assert upgradeState(ReceiverThing, {"x": 1}, typeName="anything") == {
        "x": 1,
        "steps": [1, 2, 3],
    }


def test_upgradeState_prefers_the_receivers_own_key() -> None:
    state = {versionKey(ReceiverThing): 2, "other.Name.persistenceVersion": 0, "steps": [1, 2]}
    assert upgradeState(ReceiverThing, state, typeName="other.Name") == {"steps": [1, 2, 3]}


def test_upgradeState_at_the_current_version_returns_the_state_unchanged() -> None:
    state = {versionKey(ReceiverThing): 3, "steps": [1, 2, 3]}
    assert upgradeState(ReceiverThing, state) == {"steps": [1, 2, 3]}


def test_upgradeState_refuses_a_newer_peer_naming_both_versions() -> None:
    state = {"wire.Thing.persistenceVersion": 4, "steps": []}
    with pytest.raises(VersionError) as refused:
        upgradeState(ReceiverThing, state, typeName="wire.Thing")
    message = str(refused.value)
    assert "wire.Thing" in message
    assert f"{__name__}.ReceiverThing" in message
    assert "version 4" in message
    assert "version 3" in message


UPGRADES_RUN: list[str] = []


class Careful(Versioned):
    persistenceVersion = 1

    def upgradeToVersion1(self) -> None:
        UPGRADES_RUN.append("Careful1")


class CarefulChild(Careful):
    persistenceVersion = 1


def test_upgradeState_refuses_before_running_any_upgrade() -> None:
    # The base class is behind (it would upgrade first), the subclass is ahead.
    UPGRADES_RUN.clear()
    with pytest.raises(VersionError):
        upgradeState(CarefulChild, {versionKey(Careful): 0, versionKey(CarefulChild): 2})
    assert UPGRADES_RUN == []


def test_upgradeState_decodes_byte_keys() -> None:
    state = {b"steps": [1, 2], versionKey(ReceiverThing).encode(): 2}
    assert upgradeState(ReceiverThing, state) == {"steps": [1, 2, 3]}


@given(
    st.one_of(
        st.integers(),
        st.booleans(),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.binary(max_size=5),
        st.none(),
        st.lists(st.integers(), max_size=3),
    )
)
def test_upgradeState_any_received_version_upgrades_or_raises_VersionError(
    version: object,
) -> None:
    state = {versionKey(ReceiverThing): version, "steps": []}
    try:
        upgraded = upgradeState(ReceiverThing, state)
    except VersionError:
        assert not (type(version) is int and 0 <= version <= 3)
    else:
        assert version is None or (type(version) is int and 0 <= version <= 3)
        assert versionKey(ReceiverThing) not in upgraded
