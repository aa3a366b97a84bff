"""The documentation shows what the code does: the machine diagrams in docs/concepts.md are what
``mfa_flow.diagram()`` draws, and the README's usage code and every block marked ``<!-- pytest -->`` run.

Code blocks run in a fresh interpreter (a subprocess, outside the repository, so nothing of this test run or
of tests/conftest.py leaks in). Only the README's usage section and marked blocks are run: other blocks may be
fragments or need a real gateway.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import mfa_flow
from mfa_flow.machine import TABLES
from tests.helpers_process import ROOT, run_python

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
MERMAID = re.compile(r"^```mermaid\n(.*?)^```$", re.S | re.M)
PYTHON = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
MARKER = "<!-- pytest -->"
TIMEOUT = 300  # a documented block run as a script or under pytest


def section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a ``## `` line) up to the next heading of the same level."""
    start = markdown.index(f"\n{heading}\n") + len(heading) + 2
    end = markdown.find("\n## ", start)
    return markdown[start:] if end < 0 else markdown[start:end]


def marked_blocks() -> list[tuple[str, int, str]]:
    """(file, line, code) of every python block right after a ``<!-- pytest -->`` line, in every doc."""
    found = []
    for path in DOCS:
        text = path.read_text("utf-8")
        for match in re.finditer(re.escape(MARKER), text):
            after = text[match.end():]
            block = PYTHON.match(after.lstrip("\n"))
            line = text.count("\n", 0, match.start()) + 1
            assert block is not None, f"{path.name}:{line}: {MARKER} is not followed by a ```python block"
            found.append((path.name, line, block.group(1)))
    return found


MARKED = marked_blocks()


# -- the diagrams ---------------------------------------------------------------------------------------


def test_concepts_shows_each_machine_once() -> None:
    blocks = MERMAID.findall((ROOT / "docs" / "concepts.md").read_text("utf-8"))
    titles = [re.search(r"^title: mfa_flow (\w+)$", block, re.M) for block in blocks]
    assert all(titles), "every diagram is titled `mfa_flow <machine>`, as diagram() titles it"
    assert sorted(t.group(1) for t in titles if t) == sorted(TABLES)


@pytest.mark.parametrize("machine", sorted(TABLES))
def test_concepts_diagram_is_what_diagram_draws(machine: str) -> None:
    blocks = MERMAID.findall((ROOT / "docs" / "concepts.md").read_text("utf-8"))
    shown = [block for block in blocks if re.search(rf"^title: mfa_flow {machine}$", block, re.M)]
    assert len(shown) == 1
    assert shown[0] == mfa_flow.diagram(machine=machine)


def test_the_combined_diagram_is_the_four_drawings() -> None:
    """What concepts.md shows one by one is, joined, ``diagram()`` (and ``mfa-flow diagram``)."""
    assert mfa_flow.diagram() == "\n".join(mfa_flow.diagram(machine=name) for name in TABLES)


# -- the code -------------------------------------------------------------------------------------------


def test_readme_usage_runs(tmp_path: Path) -> None:
    blocks = PYTHON.findall(section((ROOT / "README.md").read_text("utf-8"), "## Usage"))
    assert blocks, "README.md's usage section has no python block"
    for number, code in enumerate(blocks):
        script = tmp_path / f"readme_usage_{number}.py"
        script.write_text(code, "utf-8")
        proc = run_python(str(script), cwd=tmp_path, timeout=TIMEOUT)
        assert proc.returncode == 0, f"README usage block {number}:\n{proc.stdout}{proc.stderr}"


def test_some_blocks_are_marked() -> None:
    assert MARKED, f"no {MARKER} block in README.md or docs/"
    assert any(name == "testing.md" for name, _, _ in MARKED)


@pytest.mark.parametrize(("name", "line", "code"), MARKED, ids=[f"{n}:{ln}" for n, ln, _ in MARKED])
def test_marked_block_runs(tmp_path: Path, name: str, line: int, code: str) -> None:
    """A marked block that defines tests is a test module: every test in it is collected and passes under
    pytest. Any other marked block is a script and runs without error."""
    tests = [node.name for node in ast.parse(code).body
             if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]
    module = tmp_path / f"test_{Path(name).stem}_{line}.py"
    module.write_text(code, "utf-8")
    if not tests:
        proc = run_python(str(module), cwd=tmp_path, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    proc = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(module),
                      cwd=tmp_path, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(rf"^{len(tests)} passed(,| in )", proc.stdout, re.M), proc.stdout
