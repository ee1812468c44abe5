"""The documentation builds without a warning, and every code sample in it runs: samples are
either excerpts of examples/ (run by the example tests; each is shown inline, so the page reads
on a code host, and kept identical to its file here), doctests (run here), or, on the upgrading
page, samples that tests/test_styles.py and tests/test_rebuild.py execute."""

from __future__ import annotations

import ast
import doctest
import importlib.util
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.S | re.M)
# An excerpt of an example: the comment names the file and the part shown, the block shows it.
EXCERPT = re.compile(
    r"^<!-- excerpt: (?P<file>\S+) (?P<part>\{.*?\}) -->\n```python\n(?P<body>.*?)^```$",
    re.S | re.M,
)


def excerpt(source: str, part: dict[str, str]) -> str:
    """The part of an example's ``source`` a page shows: a class or function by dotted name
    (``pyobject``), or the lines after a line containing ``start-after`` and before one
    containing ``end-before``."""
    lines = source.splitlines(keepends=True)
    if "pyobject" in part:
        scope: list[ast.stmt] = ast.parse(source).body
        node: ast.stmt | None = None
        for name in part["pyobject"].split("."):
            node = next(
                n for n in scope
                if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and n.name == name
            )
            scope = node.body
        assert node is not None and node.end_lineno is not None
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        return textwrap.dedent("".join(lines[first - 1 : node.end_lineno]))
    start = 0
    if "start-after" in part:
        start = next(i for i, line in enumerate(lines) if part["start-after"] in line) + 1
    end = len(lines)
    if "end-before" in part:
        end = next(i for i, line in enumerate(lines) if i >= start and part["end-before"] in line)
    return "".join(lines[start:end]).strip("\n") + "\n"
RUN_ELSEWHERE = {"upgrading.md": ["test_styles.py", "test_rebuild.py"]}
DIRECTIVES = {"{toctree}", "{eval-rst}"}


def fences(page: Path) -> list[tuple[str, str]]:
    return [(m["info"].split(" ")[0], m["body"]) for m in FENCE.finditer(page.read_text())]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_excerpt_is_its_example_as_it_is_now(page: Path) -> None:
    for match in EXCERPT.finditer(page.read_text()):
        source = (page.parent / match["file"]).read_text()
        expected = excerpt(source, json.loads(match["part"]))
        assert match["body"] == expected, (
            f"{page.name}: the excerpt of {match['file']} {match['part']} differs from the file; "
            f"show it as it is now:\n{expected}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_sample_is_executed_somewhere(page: Path) -> None:
    excerpts = [m["body"] for m in EXCERPT.finditer(page.read_text())]
    for kind, body in fences(page):
        if kind in DIRECTIVES or kind in ("pycon", "text") or body in excerpts:
            continue
        assert kind == "python", f"{page.name}: a ```{kind} block; use pycon or an excerpt"
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
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/spread demo",
        # (compat: setuptools' default editable install is invisible to mypy)
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'"
        " --config-settings editable_mode=compat && .venv/bin/python -m pytest -q",
    ]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_the_readmes_blocking_example_answers_from_a_repl() -> None:
    from support import ServerProgram

    [session] = [body for kind, body in fences(ROOT / "README.md") if kind == "pycon"]
    server = ServerProgram("echo_server.py", "tcp:0:interface=127.0.0.1")
    try:
        port = server.endpoint.rsplit("=", 1)[1]
        lines = [line[4:] for line in session.splitlines() if line.startswith(">>> ")]
        typed = "\n".join(lines).replace("8789", port) + "\n"
        repl = subprocess.run(
            [sys.executable, "-i", "-q"], input=typed, capture_output=True, text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert "'hi'" in repl.stdout, repl.stderr
    assert "Traceback" not in repl.stderr
