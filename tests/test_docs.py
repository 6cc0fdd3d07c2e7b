"""The documentation is tested: every example runs, and the site builds.

Fence convention, for README.md and docs/*.md:

* a fence whose info string is exactly ``python`` is executed;
* a ``py`` fence whose first line is a comment naming a file (``# test_clock.py``) is
  a file: it is written to a temporary directory with the page's other files and
  compiled; if the page has ``test_*.py`` files, pytest runs them there (with the anyrt
  plugin, as a user would) and must pass;
* every other fence is shown, not run: ``py`` for other Python that cannot run as-is,
  ``console`` for shell sessions (never executed), ``toml``, ``text``...

Each page's ``python`` blocks run in order, in one fresh module namespace per page, so
a block may use what an earlier block of the same page defined. A failure names the
page and the line of the failing block; tracebacks point at lines of the Markdown file.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import anyrt

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FILE_NAME = re.compile(r"# (?P<name>[A-Za-z_][A-Za-z0-9_]*\.py)\n")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    info: str
    line: int  # 1-based line of the first line of code (just after the opening fence)
    source: str


def fenced_blocks(text: str) -> list[Block]:
    """Return every fenced code block of a Markdown text, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        index += 1
        if opening is None:
            continue
        indent, fence = opening["indent"], opening["fence"]
        start = index
        body: list[str] = []
        while index < len(lines):
            line = lines[index]
            index += 1
            closing = _FENCE.match(line)
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(line.removeprefix(indent))
        else:
            raise ValueError(f"the code fence opened at line {start} is never closed")
        blocks.append(Block(opening["info"].strip(), start + 1, "\n".join(body) + "\n"))
    return blocks


def python_blocks(page: Path) -> list[Block]:
    """Return the executed blocks of ``page``; refuse look-alike info strings."""
    blocks = fenced_blocks(page.read_text(encoding="utf-8")) if page.exists() else []
    for block in blocks:
        if block.info != "python" and block.info.startswith("python"):
            raise ValueError(
                f"{page.name}:{block.line}: fence info {block.info!r} would not be executed; "
                "write exactly ```python (run) or ```py (shown only)"
            )
    return [block for block in blocks if block.info == "python"]


def file_blocks(page: Path) -> dict[str, Block]:
    """Return the ``py`` blocks of ``page`` that are files, by file name."""
    files: dict[str, Block] = {}
    if not page.exists():
        return files
    for block in fenced_blocks(page.read_text(encoding="utf-8")):
        named = _FILE_NAME.match(block.source)
        if block.info == "py" and named is not None:
            if named["name"] in files:
                raise ValueError(f"{page.name}:{block.line}: a second file {named['name']}")
            files[named["name"]] = block
    return files


def test_fenced_blocks_parser() -> None:
    text = "intro\n```python\nx = 1\n```\n\n  ~~~py\n  y = 2\n  ~~~\n```console\n$ ls\n```\n"
    assert fenced_blocks(text) == [
        Block("python", 3, "x = 1\n"),
        Block("py", 7, "y = 2\n"),
        Block("console", 10, "$ ls\n"),
    ]


#: Packages an example may need that some interpreters cannot install (no free-threaded
#: build): an example that fails for lack of one is skipped, saying so; anywhere they
#: are installed, a failure is a failure.
OPTIONAL_PACKAGES = ("uvloop", "trustme", "cryptography", "matplotlib")


def _missing_package(exc: BaseException) -> str | None:
    """The optional package whose absence caused ``exc``, if that is what happened."""
    for package in OPTIONAL_PACKAGES:
        if importlib.util.find_spec(package) is not None:
            continue
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == package:
            return package
        if isinstance(exc, anyrt.BackendNotFound) and f"{package!r} is registered" in str(exc):
            return package
    return None


def run_page(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the ``python`` blocks of ``page`` in order, in one fresh module."""
    name = f"anyrt_docs_{page.stem.replace('-', '_').lower()}"
    module = types.ModuleType(name)
    module.__file__ = str(page)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses and pickling look it up
    for block in python_blocks(page):
        # Pad with blank lines so that tracebacks give the line in the Markdown file.
        code = compile("\n" * (block.line - 1) + block.source, str(page), "exec")
        try:
            exec(code, module.__dict__)
        except Exception as exc:
            missing = _missing_package(exc)
            if missing is not None:  # uvloop or trustme on a free-threaded build
                pytest.skip(f"{page.name}: the block at line {block.line} needs {missing}")
            pytest.fail(
                f"{page.name}: the ```python block at line {block.line} failed:\n"
                f"{traceback.format_exc()}",
                pytrace=False,
            )


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not python_blocks(page):
        pytest.skip(f"{page.name} has no ```python blocks")
    # The examples state which backend they need; the environment must not override it.
    monkeypatch.delenv("ANYRT_BACKEND", raising=False)
    run_page(page, monkeypatch)


def test_a_failing_block_is_reported_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n```python\nx = 1\n```\n\n```python\ny = x + 1\nassert y == 3\n```\n",
        encoding="utf-8",
    )
    with pytest.raises(pytest.fail.Exception) as failure:
        run_page(page, monkeypatch)
    message = str(failure.value)
    assert "page.md: the ```python block at line 8 failed" in message
    assert f'File "{page}", line 9' in message  # the traceback points into the page


PAGES_WITH_FILES = [page for page in PAGES if file_blocks(page)]


@pytest.mark.parametrize("page", PAGES_WITH_FILES, ids=[page.name for page in PAGES_WITH_FILES])
def test_example_files(page: Path, tmp_path: Path) -> None:
    files = file_blocks(page)
    for name, block in files.items():
        compile("\n" * (block.line - 1) + block.source, f"{page}", "exec")  # syntax check
        (tmp_path / name).write_text(block.source, encoding="utf-8")
    if not any(name.startswith("test_") for name in files):
        return
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # ignore ours
    env = {key: value for key, value in os.environ.items() if key != "ANYRT_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-W", "error", "--strict-markers"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    lines = ", ".join(f"{name} at line {block.line}" for name, block in files.items())
    assert result.returncode == 0, (
        f"pytest failed on the test files of {page.relative_to(REPO)} ({lines}):\n"
        f"{result.stdout}{result.stderr}"
    )


def test_api_reference_covers_the_public_names() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^#{2,4} `anyrt\.([A-Za-z_][A-Za-z0-9_]*)`", text, re.MULTILINE)
    assert len(documented) == len(set(documented)), "a name has two entries in docs/api.md"
    assert set(documented) == set(anyrt.__all__)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(REPO / "mkdocs.yml"),
            "-d",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "api" / "index.html").is_file()
