"""``FasterAPI.__version__`` comes from the installed metadata, without loading the web core."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import FasterAPI


def test_version_is_the_installed_distributions() -> None:
    assert FasterAPI.__version__ == importlib.metadata.version("fasterapi-hub")
    assert "__version__" in dir(FasterAPI)


def test_reading_the_version_loads_no_web_core() -> None:
    code = (
        "import sys, FasterAPI; FasterAPI.__version__; "
        "print(sorted(m for m in sys.modules if m.startswith(('FasterAPI.', 'uvicorn', 'msgspec'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"
