"""Test-only builds for running the package the way a ROS 2 machine does.

* ``colcon_install(repo)`` -- a real ``colcon build`` of a copy of the checkout in
  ``build/colcon_full/ws`` (isolated install; the build dir stays, so it is incremental);
  used by test_colcon_build.py and test_ros2_launch.py.
* ``upstream_env(repo, install)`` -- the upstream ``launch``/``launch_ros``/``ros2cli``
  wheels of ``../shared/ros2-upstream`` installed into ``build/ros2_upstream/site``
  (``pip install --no-deps --target``, plus those of their PyPI dependencies the venv
  lacks), ``composition_interfaces`` built with colcon into
  ``build/ros2_upstream/composition``, and an environment in which ``ros2 launch``
  finds them and the colcon install of tracevla_ros. Both are cached: rebuilt only
  when the wheels/sources change. Never a runtime dependency of the product.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

# PyPI dependencies of the upstream wheels (launch, ros2cli), pinned; installed into the
# target dir only when the venv does not have them (lark comes with the venv).
UPSTREAM_PYPI = {"osrf_pycommon": "osrf-pycommon==2.0.2", "psutil": "psutil==7.2.2",
                 "argcomplete": "argcomplete==3.7.2", "lark": "lark==1.3.1"}


def upstream_dir(repo: Path) -> Path:
    """``../shared/ros2-upstream`` beside the checkout (absent in a user's fresh clone)."""
    return repo.parent / "shared" / "ros2-upstream"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} ... failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def colcon_install(repo: Path) -> Path:
    """colcon build of a copy of ``repo`` in build/colcon_full/ws; the package's install prefix."""
    venv = Path(sys.prefix)
    base = repo / "build" / "colcon_full"
    src = base / "ws" / "src" / "tracevla_ros"
    for stale in (src, base / "ws" / "install"):  # the build dir stays: incremental
        if stale.exists():
            shutil.rmtree(stale)
    shutil.copytree(repo, src, ignore=shutil.ignore_patterns(
        ".venv", "build", "install", "log", ".git", "__pycache__", ".*_cache", "out"))
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "CMAKE_PREFIX_PATH": str(venv),
           "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    cmd = [str(venv / "bin" / "colcon"), "--log-base", str(base / "ws" / "log"), "build",
           "--base-paths", str(base / "ws" / "src"), "--build-base", str(base / "ws" / "build"),
           "--install-base", str(base / "ws" / "install"),
           "--event-handlers", "console_direct-", "console_cohesion-", "summary+",
           "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    r = subprocess.run(cmd, cwd=base / "ws", env=env, capture_output=True, text=True, timeout=900)
    print(r.stdout[-3000:])  # shows in CI's log with -rA / on failure
    assert r.returncode == 0, f"colcon build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    assert "1 package finished" in r.stdout
    return base / "ws" / "install" / "tracevla_ros"


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def upstream_site(repo: Path) -> Path:
    """build/ros2_upstream/site: the upstream wheels (+ missing PyPI deps), cached."""
    wheels = sorted((upstream_dir(repo) / "wheels").glob("*.whl"))
    assert wheels, f"no wheels in {upstream_dir(repo) / 'wheels'}"
    site = repo / "build" / "ros2_upstream" / "site"
    missing = sorted(pin for mod, pin in UPSTREAM_PYPI.items() if importlib.util.find_spec(mod) is None)
    stamp = site / ".installed"
    want = _digest(wheels) + " " + " ".join(missing)
    if stamp.is_file() and stamp.read_text() == want:
        return site
    if site.exists():
        shutil.rmtree(site)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
    _run(pip + [str(w) for w in wheels])
    if missing:
        _run(pip + missing)
    stamp.write_text(want)
    return site


def composition_install(repo: Path) -> Path:
    """composition_interfaces (launch_ros imports it) built with colcon, cached."""
    src = upstream_dir(repo) / "src" / "composition_interfaces"
    out = repo / "build" / "ros2_upstream" / "composition"
    want = _digest([p for p in src.rglob("*") if p.is_file()])
    stamp = out / ".built"
    if stamp.is_file() and stamp.read_text() == want:
        return out / "install"
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "CMAKE_PREFIX_PATH": str(venv),
           "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    _run([str(venv / "bin" / "colcon"), "--log-base", str(out / "log"), "build",
          "--base-paths", str(src), "--merge-install", "--install-base", str(out / "install"),
          "--build-base", str(out / "build"),
          "--event-handlers", "console_direct-", "console_cohesion-", "summary+",
          "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
         cwd=str(repo), env=env)
    stamp.write_text(want)
    return out / "install"


def upstream_env(repo: Path, install: Path) -> dict[str, str]:
    """Environment for ``ros2 ...`` (``[sys.executable, '-m', 'ros2cli.cli', ...]`` or the
    site's ``bin/ros2``) with the upstream packages and the colcon install of tracevla_ros
    (``install`` = its prefix) first on every path."""
    site = upstream_site(repo)
    comp = composition_install(repo)
    paths = [next((p / "lib").glob("python3*/site-packages")) for p in (install, comp)] + [site]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the installed copy, not this checkout
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(install), str(comp), sys.prefix])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [
        str(install / "lib"), str(comp / "lib"), str(Path(sys.prefix) / "lib"),
        os.environ.get("LD_LIBRARY_PATH", "")]))
    env["PATH"] = os.pathsep.join([str(site / "bin"), str(Path(sys.prefix) / "bin"), env["PATH"]])
    env["PYTHONUNBUFFERED"] = "1"
    return env
