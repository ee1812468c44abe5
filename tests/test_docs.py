"""The documentation builds without a warning, and every code sample in it runs: samples are
either included from examples/ (run by the example tests), doctests (run here), or, on the
upgrading page, samples that tests/test_styles.py and tests/test_rebuild.py execute."""

from __future__ import annotations

import doctest
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.S | re.M)
RUN_ELSEWHERE = {"upgrading.md": ["test_styles.py", "test_rebuild.py"]}
DIRECTIVES = {"{literalinclude}", "{toctree}", "{eval-rst}"}


def fences(page: Path) -> list[tuple[str, str]]:
    return [(m["info"].split(" ")[0], m["body"]) for m in FENCE.finditer(page.read_text())]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_sample_is_executed_somewhere(page: Path) -> None:
    for kind, body in fences(page):
        if kind in DIRECTIVES or kind in ("pycon", "text"):
            continue
        assert kind == "python", f"{page.name}: a ```{kind} block; use pycon or literalinclude"
        runners = RUN_ELSEWHERE.get(page.name)
        assert runners, f"{page.name}: a ```python block nothing runs; make it a pycon doctest"
        # A test may fill in a trailing number ("# thing.py, version {n}").
        first_line = re.sub(r"\d+$", "", body.splitlines()[0])
        sources = "".join((ROOT / "tests" / name).read_text() for name in runners)
        assert first_line in sources, f"{page.name}: no test runs the sample {first_line!r}"


DOCTEST_PAGES = [page for page in PAGES if any(kind == "pycon" for kind, _ in fences(page))]


@pytest.mark.parametrize("page", DOCTEST_PAGES, ids=lambda page: page.name)
def test_doctests_pass(page: Path) -> None:
    text = "\n".join(body for kind, body in fences(page) if kind == "pycon")
    test = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("myst_parser") is None,
    reason="building the docs needs the docs extra: pip install -e '.[docs]'",
)
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr


def test_readme_example_is_examples_hello() -> None:
    readme = (ROOT / "README.md").read_text()
    [shown] = [body for kind, body in fences(ROOT / "README.md") if kind == "python"]
    source = (ROOT / "examples" / "hello.py").read_text()
    assert shown.strip() == source.split('"""', 2)[2].strip()
    assert "It prints `hello, world`." in readme


def test_readme_example_prints_what_the_readme_says() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hello.py")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello, world\n"


def test_readme_opens_with_the_two_commands() -> None:
    commands = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()[:10]
                if line.startswith("    ")]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/spread demo",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'"
        " && .venv/bin/python -m pytest -q",
    ]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
