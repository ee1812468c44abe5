"""spread.styles: Versioned state upgraded on load (pickle) and on receipt (versionedState /
upgradeState), Twisted's key format both ways, and the samples of docs/upgrading.md."""

from __future__ import annotations

import copyreg
import gc
import io
import json
import os.path
import pickle
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MethodType, ModuleType
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
    styles.versionedsToUpgrade.clear()
    yield
    styles.versionedsToUpgrade.clear()


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
    assert styles.versionedsToUpgrade == {}


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
    assert len(styles.versionedsToUpgrade) == 1
    del loaded
    gc.collect()
    assert styles.versionedsToUpgrade == {}


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


# ---------------------------------------------------------------------------------------------
# Twisted's tables of objects waiting for doUpgrade(): versionedsToUpgrade and upgraded, read
# and changed the way Twisted code does, side by side with twisted.persisted.styles


class TwistedCounted(twisted_styles.Versioned):
    """Twisted's twin of Counted."""

    persistenceVersion = 1

    def __init__(self) -> None:
        self.calls: list[str] = []

    def upgradeToVersion2(self) -> None:
        self.calls.append("Counted2")


@pytest.fixture
def twisted_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twisted's tables start empty and are put back afterwards (its doUpgrade rebinds them)."""
    monkeypatch.setattr(twisted_styles, "versionedsToUpgrade", {})
    monkeypatch.setattr(twisted_styles, "upgraded", {})


@pytest.fixture
def twins(
    versions: Callable[[type, int], None], twisted_tables: None
) -> Callable[[], list[tuple[Any, Any]]]:
    """Load a Counted and a TwistedCounted saved at version 1 into code at version 2; return
    (styles module, loaded object) pairs."""

    def load() -> list[tuple[Any, Any]]:
        saved = [pickle.dumps(Counted()), pickle.dumps(TwistedCounted())]
        versions(Counted, 2)
        versions(TwistedCounted, 2)
        return [(styles, pickle.loads(saved[0])), (twisted_styles, pickle.loads(saved[1]))]

    return load


def test_loaded_object_is_listed_in_versionedsToUpgrade_as_in_twisted(
    twins: Callable[[], list[tuple[Any, Any]]],
) -> None:
    for module, loaded in twins():
        assert list(module.versionedsToUpgrade) == [id(loaded)]
        assert module.versionedsToUpgrade[id(loaded)] is loaded
        assert module.upgraded == {}


def test_requireUpgrade_marks_the_object_upgraded_as_in_twisted(
    twins: Callable[[], list[tuple[Any, Any]]],
) -> None:
    for module, loaded in twins():
        module.requireUpgrade(loaded)
        module.requireUpgrade(loaded)
        assert loaded.calls == ["Counted2"]
        assert module.upgraded == {id(loaded): 1}
        assert id(loaded) in module.versionedsToUpgrade  # until doUpgrade() ends


def test_doUpgrade_empties_both_tables_as_in_twisted(
    twins: Callable[[], list[tuple[Any, Any]]],
) -> None:
    for module, loaded in twins():
        module.requireUpgrade(loaded)
        module.doUpgrade()
        assert (module.versionedsToUpgrade, module.upgraded) == ({}, {})


def test_clearing_versionedsToUpgrade_cancels_the_upgrades_as_in_twisted(
    twins: Callable[[], list[tuple[Any, Any]]],
) -> None:
    for module, loaded in twins():
        module.versionedsToUpgrade.clear()
        module.doUpgrade()
        assert loaded.calls == []


def test_object_marked_in_upgraded_is_skipped_as_in_twisted(
    twins: Callable[[], list[tuple[Any, Any]]],
) -> None:
    for module, loaded in twins():
        module.upgraded[id(loaded)] = 1
        module.doUpgrade()
        assert loaded.calls == []


def test_object_unmarked_in_upgraded_is_upgraded_again_as_in_twisted(
    twins: Callable[[], list[tuple[Any, Any]]],
) -> None:
    for module, loaded in twins():
        module.requireUpgrade(loaded)
        del module.upgraded[id(loaded)]
        module.requireUpgrade(loaded)
        assert loaded.calls == ["Counted2", "Counted2"]


@pytest.mark.usefixtures("twisted_tables")
def test_object_queued_by_hand_with_its_versions_in_its_dict_is_upgraded_as_in_twisted(
    versions: Callable[[type, int], None],
) -> None:
    # What Twisted's own __setstate__ does, and so what a Twisted-style override may do.
    for module, cls in ((styles, Counted), (twisted_styles, TwistedCounted)):
        obj = cls.__new__(cls)
        obj.__dict__ = {"calls": [], versionKey(cls): 1}
        versions(cls, 2)
        module.versionedsToUpgrade[id(obj)] = obj
        module.doUpgrade()
        assert obj.__dict__ == {"calls": ["Counted2"]}


def test_the_tables_are_the_same_objects_after_doUpgrade() -> None:
    # Twisted's doUpgrade() binds new dicts, so a name imported from it goes stale; ours stay.
    tables = (styles.versionedsToUpgrade, styles.upgraded)
    doUpgrade()
    assert (styles.versionedsToUpgrade, styles.upgraded) == tables
    assert styles.versionedsToUpgrade is tables[0]
    assert styles.upgraded is tables[1]


def test_only_objects_waiting_for_an_upgrade_can_be_marked_upgraded() -> None:
    with pytest.raises(KeyError, match="not in versionedsToUpgrade"):
        styles.upgraded[id(object())] = 1


def test_versionedsToUpgrade_is_keyed_by_id() -> None:
    loaded = Counted()
    with pytest.raises(KeyError, match="keyed by id"):
        styles.versionedsToUpgrade[id(loaded) + 1] = loaded


# ---------------------------------------------------------------------------------------------
# VersionError is what Twisted raises too


@pytest.mark.usefixtures("twisted_tables")
def test_newer_state_is_refused_with_an_AssertionError_as_in_twisted(
    versions: Callable[[type, int], None],
) -> None:
    versions(Counted, 5)
    versions(TwistedCounted, 5)
    saved, twisted_saved = pickle.dumps(Counted()), pickle.dumps(TwistedCounted())
    versions(Counted, 3)
    versions(TwistedCounted, 3)
    with pytest.raises(AssertionError):
        pickle.loads(twisted_saved)
        twisted_styles.doUpgrade()  # Twisted refuses when upgrading, we when loading
    with pytest.raises(AssertionError):
        pickle.loads(saved)


def test_VersionError_is_both_a_ValueError_and_an_AssertionError() -> None:
    assert issubclass(VersionError, ValueError)
    assert issubclass(VersionError, AssertionError)
    with pytest.raises(AssertionError):
        upgradeState(ReceiverThing, {versionKey(ReceiverThing): 4})


# ---------------------------------------------------------------------------------------------
# Pickle helpers for bound methods, modules and string buffers, side by side with Twisted's

IMPLEMENTATIONS = [
    pytest.param(styles, id="spread"),
    pytest.param(twisted_styles, id="twisted"),
]


class Account:
    def __init__(self) -> None:
        self.owner = "alice"

    def describe(self) -> str:
        return f"account of {self.owner}"


class Unrelated:
    pass


def test_pickleMethod_reduces_as_twisted_does() -> None:
    account = Account()
    ours, theirs = (
        styles.pickleMethod(account.describe),
        twisted_styles.pickleMethod(account.describe),
    )
    assert (ours[0], theirs[0]) == (styles.unpickleMethod, twisted_styles.unpickleMethod)
    assert ours[1] == theirs[1] == ("describe", account, Account)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unpickleMethod_binds_a_new_method_to_the_instance(impl: Any) -> None:
    account = Account()
    method = impl.unpickleMethod("describe", account, Account)
    assert method == account.describe
    assert method is not account.describe
    account.owner = "bob"
    assert method() == "account of bob"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unpickleMethod_falls_back_to_the_instances_class(impl: Any) -> None:
    account = Account()
    assert impl.unpickleMethod("describe", account, Unrelated) == account.describe


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unpickleMethod_without_an_instance_returns_the_class_attribute(impl: Any) -> None:
    assert impl.unpickleMethod("describe", None, Account) is Account.describe


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unpickleMethod_of_a_method_nobody_has_raises_AttributeError(impl: Any) -> None:
    with pytest.raises(AttributeError):
        impl.unpickleMethod("missing", Account(), Unrelated)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_pickleModule_and_unpickleModule_go_by_name(impl: Any) -> None:
    reduce_module, args = impl.pickleModule(os.path)
    assert (reduce_module, args) == (impl.unpickleModule, (os.path.__name__,))
    assert impl.unpickleModule(*args) is os.path


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unpickleModule_follows_oldModules(impl: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(impl.oldModules, "app.serializer", "json")
    assert impl.unpickleModule("app.serializer") is json


def test_helpers_in_a_dispatch_table_round_trip_methods_and_modules() -> None:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {MethodType: styles.pickleMethod, ModuleType: styles.pickleModule}
    pickler.dump([Account().describe, json])
    method, module = pickle.loads(buffer.getvalue())
    assert (method(), module) == ("account of alice", json)


def test_importing_styles_registers_nothing_with_copyreg() -> None:
    # Twisted's import registers its reducers for every pickle in the process; ours does not.
    assert not {styles.pickleMethod, styles.pickleModule} & set(copyreg.dispatch_table.values())


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("kind", ["I", "O"])
def test_string_buffers_reduce_to_text_and_position(impl: Any, kind: str) -> None:
    buffer = io.StringIO("text")
    buffer.seek(2)
    rebuild_buffer, args = getattr(impl, f"pickleString{kind}")(buffer)
    assert (rebuild_buffer, args) == (getattr(impl, f"unpickleString{kind}"), ("text", 2))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unpickleStringI_reads_on_from_the_saved_position(impl: Any) -> None:
    buffer = impl.unpickleStringI("test", 2)
    assert type(buffer) is io.StringIO
    assert (buffer.read(), buffer.getvalue()) == ("st", "test")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_unpickleStringO_writes_on_from_the_saved_position(impl: Any) -> None:
    buffer = impl.unpickleStringO("test", 2)
    buffer.write("ST")
    assert type(buffer) is io.StringIO
    assert buffer.getvalue() == "teST"


NEW_NAMES = [
    "upgraded",
    "versionedsToUpgrade",
    "oldModules",
    "pickleMethod",
    "unpickleMethod",
    "pickleModule",
    "unpickleModule",
    "pickleStringI",
    "pickleStringO",
    "unpickleStringI",
    "unpickleStringO",
]


@pytest.mark.parametrize("name", NEW_NAMES)
def test_new_names_are_not_deprecated_as_in_twisted(name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        theirs = getattr(twisted_styles, name)
        getattr(styles, name)
    assert not hasattr(theirs, "deprecatedVersion")  # what twisted.python.deprecate sets
    assert [str(warning.message) for warning in caught] == []


def test_versionUpgrade_upgrades_state_set_by_hand_as_twisted_does() -> None:
    def make(base: type) -> Any:
        class Account(base):  # type: ignore[misc, valid-type]
            persistenceVersion = 2

            def upgradeToVersion1(self) -> None:
                self.owner = self.name.upper()

            def upgradeToVersion2(self) -> None:
                self.balance = 0

        Account.__module__ = "bank"
        Account.__qualname__ = Account.__name__ = "Account"
        account = Account.__new__(Account)
        account.__dict__.update({"name": "ann", "bank.Account.persistenceVersion": 0})
        account.versionUpgrade()
        # (Twisted leaves the stale version key behind; __getstate__ rewrites it anyway.)
        return {k: v for k, v in account.__dict__.items() if not k.endswith("Version")}

    expected = {"name": "ann", "owner": "ANN", "balance": 0}
    assert make(styles.Versioned) == make(twisted_styles.Versioned) == expected
