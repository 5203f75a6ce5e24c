"""Table-driven bad-input checks (issue: every bad input gets one clear line).

A case is a command line as a user types it (the console script's name first),
the exit status it must end with, and a phrase its stderr must contain. Cases
run in-process by default (the console script's entry point is loaded and
called with the arguments, stdout/stderr captured): fast enough for hundreds of
cases. ``run_subprocess`` runs the installed executable instead, for the
cases whose point is the process boundary (signals, exit status of the real
script).

    CASES = [Case("tracevla-demo --robot widowx --steps 0 --out {tmp}/o", 2, "--steps")]

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_bad_input(case, tmp_path):
        check_in_process(case, tmp_path)

``{tmp}`` in a command is replaced by the test's temporary directory; build
input files in a ``setup`` callable (gets the tmp path) when a case needs them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

__all__ = ["Case", "check_in_process", "run_subprocess", "check_output", "entry_point"]


@dataclass(frozen=True)
class Case:
    cmd: str  # the command line, console-script name first; {tmp} -> the test's tmp dir
    rc: int  # expected exit status
    phrase: str  # must appear in stderr (case-insensitive)
    setup: Callable[[Path], None] | None = field(default=None, compare=False)
    note: str = ""  # the class of input (unknown key, NaN, output path, ...)

    def __str__(self) -> str:
        return self.cmd if len(self.cmd) < 90 else self.cmd[:87] + "..."

    def argv(self, tmp: Path) -> list[str]:
        return [a.replace("{tmp}", str(tmp)) for a in shlex.split(self.cmd)]


def entry_point(name: str) -> Callable[..., int | None]:
    """The function behind console script ``name``."""
    eps = {ep.name: ep for ep in entry_points(group="console_scripts")}
    if name not in eps:
        raise LookupError(f"no console script '{name}' is installed (pip install -e .)")
    return eps[name].load()


def check_output(case: Case, rc: int, stderr: str) -> None:
    """The three things every bad input must give: the exit status, the phrase, no traceback."""
    assert "Traceback (most recent call last)" not in stderr, f"{case.cmd}: traceback:\n{stderr}"
    assert rc == case.rc, f"{case.cmd}: exit {rc}, wanted {case.rc}; stderr:\n{stderr}"
    assert case.phrase.lower() in stderr.lower(), (
        f"{case.cmd}: stderr lacks {case.phrase!r}:\n{stderr}")


def check_in_process(case: Case, tmp: Path) -> str:
    """Run ``case`` by calling its console script's entry point; returns stderr."""
    if case.setup is not None:
        case.setup(tmp)
    argv = case.argv(tmp)
    fn = entry_point(argv[0])
    err, out = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = argv
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = fn(argv[1:])
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(cwd)
    check_output(case, int(rc or 0), err.getvalue())
    return err.getvalue()


def run_subprocess(case: Case, tmp: Path, env: dict[str, str] | None = None,
                   timeout: float = 120.0) -> str:
    """Run ``case`` as the installed executable (next to this interpreter); returns stderr."""
    if case.setup is not None:
        case.setup(tmp)
    argv = case.argv(tmp)
    exe = Path(sys.executable).parent / argv[0]
    r = subprocess.run([str(exe), *argv[1:]], capture_output=True, text=True, cwd=tmp,
                       env=env, timeout=timeout)
    check_output(case, r.returncode, r.stderr)
    return r.stderr
