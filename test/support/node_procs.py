"""Node processes for the DDS tests: start one with parameters, spin until, stop it.

Parameters given to ``start_node`` as ``name:=value`` go into a copy of the node's
parameter file, inside the node's own section: rcl lets a file's node section win over a
``-p`` on the command line, so a ``-p`` next to ``--params-file`` is silently ignored
(a test once "tested" another interface that way). Without a file they are plain ``-p``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml
from rclpy.executors import SingleThreadedExecutor

_PARAM_COPIES: dict[int, str] = {}  # pid -> parameter file written for it (removed at stop)


def repo_env(repo: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the checkout first on PYTHONPATH."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), out.get("PYTHONPATH", "")]))
    return out


def start_node(repo: Path, module: str, *params: str, params_file: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``module``'s ``main()`` in a subprocess (stdout+stderr piped), from ``repo``."""
    code = f"import sys; from {module} import main; sys.exit(main())"
    args = [sys.executable, "-c", code, "--ros-args"]
    copy = None
    if params_file is not None:
        node = module.rsplit(".", 1)[1]
        data = yaml.safe_load((repo / params_file).read_text())
        section = data[node]["ros__parameters"]
        for p in params:
            k, v = p.split(":=", 1)
            section[k] = yaml.safe_load(v)
        fd, copy = tempfile.mkstemp(prefix=f"{node}_", suffix=".yaml")
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(data, fh)
        args += ["--params-file", copy]
    else:
        for p in params:
            args += ["-p", p]
    proc = subprocess.Popen(args, cwd=repo, env=repo_env(repo, env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    if copy is not None:
        _PARAM_COPIES[proc.pid] = copy
    return proc


def stop_node(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM (then SIGKILL after 15 s); the node's output ('' if it was read already)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        if proc.stdout is None or proc.stdout.closed:
            proc.wait(timeout=15)
            return ""
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        return out.decode(errors="replace") if out else ""
    finally:
        copy = _PARAM_COPIES.pop(proc.pid, None)
        if copy is not None:
            Path(copy).unlink(missing_ok=True)


def spin_until(ex: SingleThreadedExecutor, cond: Callable[[], bool], timeout: float,
               *procs: subprocess.Popen[bytes]) -> bool:
    """Spin until ``cond()`` (True) or ``timeout`` s (False); fails the test, with its output,
    when one of ``procs`` exits meanwhile."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
        if cond():
            return True
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"a node exited with {p.returncode}:\n{stop_node(p)}")
    return False
