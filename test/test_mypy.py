"""Static types: mypy over the product packages (style: types at every API)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)


def test_mypy_clean(repo_root: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-error-summary",
         "--cache-dir", str(repo_root / "build" / "mypy_cache"), "tracevla_ros", "tracegen_ros", "tracetrain"],
        cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
