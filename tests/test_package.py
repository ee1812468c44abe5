"""What a user installs: the distribution's name, and whether the C accelerator is in use."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from support import mypy_strict

import spread
from spread import _native


def test_the_distribution_is_spread_pb_and_installs_the_spread_package() -> None:
    # "spread" on the package index is an unrelated project.
    distribution = importlib.metadata.distribution("spread-pb")
    assert distribution.version == spread.__version__
    assert "spread = spread.cli:main" in (distribution.read_text("entry_points.txt") or "")


def test_accelerated_says_whether_the_c_accelerator_is_in_use() -> None:
    assert spread.accelerated() is (_native.speedups is not None)
    check = "import spread; print(spread.accelerated())"
    env = {"SPREAD_NO_SPEEDUPS": "1", "PATH": ""}
    off = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert off.stdout.strip() == "False"


USER_PROGRAM = '''
from typing import Any

from twisted.internet import defer

from spread import jelly, pb


class Pond(pb.Copyable):
    def __init__(self, frogs: int) -> None:
        self.frogs = frogs


class PondCopy(pb.RemoteCopy):
    frogs: int


pb.setUnjellyableForClass(Pond, PondCopy)


class Echoer(pb.Root):
    def remote_echo(self, value: Any) -> Any:
        return value

    def remote_pond(self) -> Pond:
        return Pond(3)


async def call(factory: pb.PBClientFactory) -> int:
    root: pb.RemoteReference = await factory.getRootObject()
    answer: Any = await root.callRemote("echo", 1)
    d: defer.Deferred[Any] = root.callRemote("pond")
    pond = await d
    return int(answer) + int(pond.frogs)


server = pb.PBServerFactory(Echoer())
data: Any = jelly.unjelly(jelly.jelly([1, "two"]))
'''


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="needs mypy (the lint extra)")
def test_mypy_strict_finds_spread_from_a_users_program(tmp_path: Path) -> None:
    # A user's program, outside the checkout: mypy must find the installed package and its
    # types (setuptools' default editable install hides it; the README installs so it does not).
    checked = mypy_strict(USER_PROGRAM, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
