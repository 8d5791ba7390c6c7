"""The documentation site stays true: every Python block on it runs, and it builds without a warning.

A ```python block in docs/**/*.md (or README.md) is either a snippet include (``--8<-- "examples/...:section"``:
its code lives in a tested file under examples/) or it is executed here, in a fresh namespace,
with its asserts. A block may be skipped only with an HTML comment right before it that says why:
``<!-- not-run: needs a running Redis server -->``. The second test runs ``mkdocs build --strict``
into a temporary directory, so a broken link, a missing page, a missing snippet section or a bad
API reference fails ``make test``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

FENCE_OPEN = re.compile(r"^```python\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")
SNIPPET = re.compile(r'^--8<--\s+"[^"]+"\s*$')
#: Blocks may be skipped, but only a few: anything more is a page that drifts from the code.
MAX_NOT_RUN = 3


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the first line of code
    code: str
    not_run: str | None  # the stated reason, when marked not-run

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def is_snippet(self) -> bool:
        lines = [line for line in self.code.splitlines() if line.strip()]
        return bool(lines) and all(SNIPPET.match(line) for line in lines)


def python_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not FENCE_OPEN.match(lines[i]):
            i += 1
            continue
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(before.strip())
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{i + 1}: a ```python block that is never closed")
        code = "\n".join(lines[i + 1 : end])
        blocks.append(Block(path, i + 2, code, marker.group(1).strip() if marker else None))
        i = end + 1
    return blocks


#: The site's pages, and the README, whose example is the first one a newcomer runs.
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
ALL_BLOCKS = [block for page in PAGES for block in python_blocks(page)]
RUN_BLOCKS = [block for block in ALL_BLOCKS if not block.is_snippet and block.not_run is None]


def test_blocks_are_found_and_classified() -> None:
    assert RUN_BLOCKS, "no runnable ```python block found under docs/"
    assert any(block.is_snippet for block in ALL_BLOCKS), "no snippet include found under docs/"
    for block in ALL_BLOCKS:
        has_include = "--8<--" in block.code
        assert not has_include or block.is_snippet, f"{block.name}: mixes snippet includes with code"
        assert block.not_run is None or block.not_run, f"{block.name}: not-run without a stated reason"
        assert not (block.is_snippet and block.not_run), f"{block.name}: an include needs no not-run marker"
    skipped = [block.name for block in ALL_BLOCKS if block.not_run]
    assert len(skipped) <= MAX_NOT_RUN, f"too many not-run blocks: {skipped}"


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda block: block.name)
def test_python_block_runs(block: Block) -> None:
    # Blank lines in front keep the line numbers of a traceback those of the page.
    source = "\n" * (block.line - 1) + block.code
    # dont_inherit: the block runs as a user's script would, not under this module's
    # ``from __future__ import annotations`` (msgspec could not resolve a Struct's annotations).
    exec(compile(source, str(block.path), "exec", dont_inherit=True), {"__name__": "docs_block"})


def test_readme_links_into_the_site_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links, "the README links to no page of the site"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.md links to missing pages: {missing}"


@pytest.mark.timeout(300)
def test_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    # subprocess.run kills mkdocs on a timeout or any other exception before re-raising.
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's end-of-life banner
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    for page in ("websockets", "rooms", "history", "reference"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
