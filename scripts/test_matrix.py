"""``make test-matrix``: the tests on Python 3.11, 3.12 and 3.13, each with the lowest and the
newest dependency versions that pyproject.toml admits. For releases; CI runs ``make test``.

Every cell is a fresh virtualenv, ``.matrix/<python>-<resolution>``, made with uv (from the
dev extra):

- ``lowest``: ``uv pip compile --resolution lowest-direct`` of the dependencies and the
  redis, nats, server, metrics and forms extras, for that Python (each direct dependency at the lowest
  release its range admits there, what those pull in at its newest); the package and its dev
  extra are then installed within those pins (``.matrix/<cell>/lowest.txt``). The same pins
  reach the packaging test's fresh virtualenv through ``PIP_CONSTRAINT``.
- ``newest``: the package and its dev extra, every dependency at the newest admitted release.

The 3.11 lowest cell runs the whole suite; the others run everything but tests/cluster,
tests/deploy and tests/faults (the packaging test and the startup self-check included).

    python scripts/test_matrix.py                       # every cell
    python scripts/test_matrix.py --cells 3.13-lowest   # some cells
    python scripts/test_matrix.py --full all            # the whole suite in every cell

A Python is found as ``pythonX.Y`` under ~/.pyenv/versions or on PATH; set
``MATRIX_PYTHON_3_12=/path/to/python3.12`` to choose one. Exits 1 if any cell failed.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / ".matrix"
PYTHONS = ("3.11", "3.12", "3.13")
RESOLUTIONS = ("lowest", "newest")
RUNTIME_EXTRAS = ("redis", "nats", "server", "metrics", "forms")
FAST = ["tests", "--ignore=tests/cluster", "--ignore=tests/deploy", "--ignore=tests/faults"]
#: The distributions whose versions each cell reports.
REPORTED = (
    "uvicorn",
    "websockets",
    "msgspec",
    "redis",
    "hiredis",
    "gunicorn",
    "uvicorn-worker",
    "httptools",
    "uvloop",
    "prometheus-client",
    "nats-py",
)


@dataclass
class Cell:
    python: str
    resolution: str
    full: bool
    versions: str = ""
    outcome: str = "not run"
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.python}-{self.resolution}"

    @property
    def venv(self) -> Path:
        return MATRIX / self.name

    @property
    def python_bin(self) -> Path:
        return self.venv / "bin" / "python"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", help="comma-separated cells such as 3.12-lowest (default: all six)")
    parser.add_argument(
        "--full",
        default="3.11-lowest",
        help="cells that run the whole suite: names, 'all' or 'none' (default 3.11-lowest)",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    names = [f"{p}-{r}" for p in PYTHONS for r in RESOLUTIONS]
    wanted = names if not args.cells else [name.strip() for name in args.cells.split(",")]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"unknown cells {unknown}; choose from {names}")
    full = set(names) if args.full == "all" else set() if args.full == "none" else set(args.full.split(","))
    cells = [Cell(*name.split("-"), full=name in full) for name in names if name in wanted]

    pythons = {cell.python: find_python(cell.python) for cell in cells}
    missing = [version for version, path in pythons.items() if path is None]
    if missing:
        print(f"error: no Python {', '.join(missing)} found (set MATRIX_PYTHON_3_XX=/path)", file=sys.stderr)
        return 1

    started = time.monotonic()
    for cell in cells:
        run_cell(cell, str(pythons[cell.python]), args.pytest_args)
    report(cells, time.monotonic() - started)
    return 0 if all(cell.outcome == "passed" for cell in cells) else 1


def find_python(version: str) -> str | None:
    """An interpreter that reports ``version``: $MATRIX_PYTHON_3_XX, pyenv's newest, or PATH's."""
    override = os.environ.get(f"MATRIX_PYTHON_{version.replace('.', '_')}")
    candidates = [override] if override else []
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = glob.glob(str(pyenv / f"{version}.*" / "bin" / f"python{version}"))
    candidates += sorted(found, key=lambda path: [int(n) for n in re.findall(r"\d+", Path(path).parents[1].name)])[::-1]
    candidates.append(shutil.which(f"python{version}"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            result = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if result.returncode == 0 and result.stdout.strip() == version:
            return candidate
    return None


def uv(*args: str) -> list[str]:
    return [sys.executable, "-m", "uv", *args]


def run_cell(cell: Cell, interpreter: str, pytest_args: list[str]) -> None:
    banner(f"{cell.name}: Python {interpreter}, {cell.resolution} dependencies")
    started = time.monotonic()
    try:
        env = install(cell, interpreter)
    except subprocess.CalledProcessError as error:
        cell.outcome = f"install failed ({error.returncode})"
        cell.seconds = time.monotonic() - started
        return
    tests = ["tests"] if cell.full else FAST
    command = [str(cell.python_bin), "-m", "pytest", "-q", *tests, *pytest_args]
    print("$", " ".join(command[2:]), flush=True)
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    cell.outcome = "passed" if code == 0 else f"failed ({code})"
    cell.seconds = time.monotonic() - started


def install(cell: Cell, interpreter: str) -> dict[str, str]:
    """A fresh virtualenv for ``cell``; returns the environment its tests run with."""
    if cell.venv.exists():
        shutil.rmtree(cell.venv)
    check(uv("venv", "-q", "--python", interpreter, str(cell.venv)))
    env = {
        key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_CONSTRAINT")
    }
    install = uv("pip", "install", "-q", "--python", str(cell.python_bin), "-e", ".[dev]")
    if cell.resolution == "lowest":
        pins = cell.venv / "lowest.txt"
        extras = [flag for extra in RUNTIME_EXTRAS for flag in ("--extra", extra)]
        compile_ = uv("pip", "compile", "-q", "pyproject.toml", *extras, "--resolution", "lowest-direct")
        check([*compile_, "--python", str(cell.python_bin), "--no-header", "-o", str(pins)])
        check([*install, "--constraint", str(pins)])
        env["PIP_CONSTRAINT"] = str(pins)  # the packaging test's fresh virtualenv: the same versions
    else:
        check([*install, "--refresh"])  # the index as it is now, not as uv cached it
    frozen = subprocess.run(
        uv("pip", "freeze", "--python", str(cell.python_bin)), cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    versions = dict(line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    cell.versions = " ".join(f"{name} {versions[name]}" for name in REPORTED if name in versions)
    print(cell.versions, flush=True)
    return env


def check(command: list[str]) -> None:
    subprocess.run(command, cwd=ROOT, check=True)


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n== {text}\n{'=' * 100}", flush=True)


def report(cells: list[Cell], seconds: float) -> None:
    passed = sum(cell.outcome == "passed" for cell in cells)
    banner(f"test matrix: {passed} of {len(cells)} cells passed in {seconds / 60:.1f} min")
    for cell in cells:
        scope = "whole suite" if cell.full else "fast subset"
        print(f"{cell.name:<12} {cell.outcome:<20} {cell.seconds:6.0f} s  {scope:<12} {cell.versions}")


if __name__ == "__main__":
    sys.exit(main())
