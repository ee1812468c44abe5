"""Shared test configuration: a fixed, deadline-free hypothesis profile so tests never flake,
and the fixtures several test modules use.

Fixtures import what they need when they run, so that a module of spread that does not import
fails the tests that use it rather than the loading of this file (and with it every test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from support import Program, Realm

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    """Child programs a test starts (append them); all are stopped when it ends."""
    started: list[Program] = []
    yield started
    for program in reversed(started):
        program.stop()


@pytest.fixture
def clean_registries() -> Iterator[None]:
    """Jelly's registrations are process-wide: undo the ones a test makes.

    A module applies it to all its tests with
    ``pytestmark = pytest.mark.usefixtures("clean_registries")``.
    """
    from spread.jelly import globalSecurity, unjellyableFactoryRegistry, unjellyableRegistry

    classes, factories = dict(unjellyableRegistry), dict(unjellyableFactoryRegistry)
    allowed = dict(globalSecurity.allowedTypes)
    yield
    unjellyableRegistry.clear()
    unjellyableRegistry.update(classes)
    unjellyableFactoryRegistry.clear()
    unjellyableFactoryRegistry.update(factories)
    globalSecurity.allowedTypes.clear()
    globalSecurity.allowedTypes.update(allowed)


@pytest.fixture
def realm() -> Realm:
    """A fresh recording realm (support.Realm) serving spread's pb.IPerspective."""
    from support import Realm

    return Realm()


@pytest.fixture(scope="module")
def twisted_server() -> Iterator[str]:
    """The client endpoint of a real twisted.spread server (tests/peers/twisted_server.py), in a
    child process on an ephemeral port, shared by the tests of one module that leave it running."""
    from support import PEERS, ServerProgram

    server = ServerProgram(PEERS / "twisted_server.py")
    yield server.endpoint
    server.stop()
