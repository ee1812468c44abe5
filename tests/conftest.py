"""Shared test configuration: a fixed, deadline-free hypothesis profile so tests never flake."""

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from support import Program

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
