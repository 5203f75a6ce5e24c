"""The setup script refuses unsupported Pythons with a message naming the supported ones."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path


def _fake_python(tmp_path: Path, version: str) -> Path:
    exe = tmp_path / f"python{version}"
    exe.write_text(f"#!/bin/sh\necho {version}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_unsupported_python_names_supported_versions(repo_root: Path, tmp_path: Path) -> None:
    for version in ("3.9", "3.14"):
        exe = _fake_python(tmp_path, version)
        r = subprocess.run(["bash", str(repo_root / "scripts" / "setup.sh")],
                           env={**os.environ, "PYTHON": str(exe)}, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1
        assert f"Python {version} is not supported" in r.stderr
        assert "3.10, 3.11, 3.12 and 3.13" in r.stderr
        assert "PYTHON=" in r.stderr


def test_missing_interpreter_is_named(repo_root: Path) -> None:
    r = subprocess.run(["bash", str(repo_root / "scripts" / "setup.sh")],
                       env={**os.environ, "PYTHON": "python-does-not-exist"},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "no 'python-does-not-exist' on PATH" in r.stderr
