"""A real ``colcon build`` of the whole package, as on a ROS 2 machine.

Copies the checkout into a workspace ``build/colcon_full/ws/src/tracevla_ros``
(as users clone it; the venv must not sit inside the package's source dir, or
CMake rejects the exported numpy include path), builds it (interfaces + Python
packages + node executables + launch/config) with an isolated install, checks the
install tree the way ``ros2 run``/``ros2 launch`` use it, and that the installed
Python (not this checkout) imports and publishes a custom message type.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.ros2_env import colcon_install

pytestmark = pytest.mark.timeout(900)


def _node_entries(repo: Path) -> dict[str, str]:
    out = {}
    for ln in (repo / "scripts" / "nodes.txt").read_text().splitlines():
        ln = ln.strip()
        if ln and not ln.startswith("#"):
            exe, target = ln.split("=", 1)
            out[exe] = target
    return out


@pytest.fixture(scope="module")
def install(repo_root: Path) -> Path:
    return colcon_install(repo_root)  # also used by test_ros2_launch.py


def test_executables_installed_for_ros2_run(install: Path, repo_root: Path) -> None:
    for exe, target in _node_entries(repo_root).items():
        path = install / "lib" / "tracevla_ros" / exe
        assert path.is_file() and os.access(path, os.X_OK), exe
        module, func = target.split(":")
        assert f"from {module} import {func}" in path.read_text()


def test_launch_and_config_in_share(install: Path, repo_root: Path) -> None:
    share = install / "share" / "tracevla_ros"
    assert (share / "package.xml").is_file()
    for sub in ("launch", "config"):
        src = sorted(p.name for p in (repo_root / sub).glob("*") if p.is_file())
        dst = sorted(p.name for p in (share / sub).glob("*") if p.is_file())
        assert src == dst, sub
    index = install / "share" / "ament_index" / "resource_index" / "packages" / "tracevla_ros"
    assert index.is_file()


def test_installed_python_imports_messages_and_sources(install: Path, tmp_path: Path) -> None:
    site = next((install / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site),
           "LD_LIBRARY_PATH": f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
           "AMENT_PREFIX_PATH": f"{install}:{sys.prefix}"}
    code = (
        "import tracevla_ros, tracevla_ros.config as c\n"
        "from tracevla_ros.msg import VisualTrace, Trace3D, PolicyAction, VisualPrompt, AffordancePoints\n"
        "from rclpy.serialization import serialize_message, deserialize_message\n"
        "m = PolicyAction(action_space='ee_delta_7d', chunk_length=1, action_dim=7, values=[0.0]*7)\n"
        "assert deserialize_message(serialize_message(m), PolicyAction) == m\n"
        "print(tracevla_ros.__path__[0]); print(c.__file__); print(c.config_dir())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first, cfg_file, cfg_dir = r.stdout.split()
    assert first == str(site / "tracevla_ros")
    assert cfg_file.startswith(str(site))  # the installed copy, not this checkout
    assert cfg_dir == str(install / "share" / "tracevla_ros" / "config")


def test_installed_tracegen_plugins_are_found(install: Path, tmp_path: Path) -> None:
    """tracegen_ros's egg-info in the install tree carries the tracevla-demo / tracevla-bench
    entry points (CMakeLists.txt: ament_python_install_package(... SETUP_CFG
    scripts/entry_points.cfg)), and they load the installed modules."""
    site = next((install / "lib").glob("python3*/site-packages"))
    egg = next(site.glob("tracegen_ros-*.egg-info"))
    assert "[tracevla_ros.demos]" in (egg / "entry_points.txt").read_text()
    env = {**os.environ, "PYTHONPATH": str(site),
           "LD_LIBRARY_PATH": f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
           "AMENT_PREFIX_PATH": f"{install}:{sys.prefix}"}
    code = (
        "import sys, tracegen_ros\n"
        "from tracevla_ros.plugins import BENCH_GROUP, entry_points, load_demo\n"
        "demo = load_demo('fr3')\n"
        "print(sys.modules[demo.run.__module__].__file__)\n"
        "print(sorted(entry_points(BENCH_GROUP)))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    demo_file, benches = r.stdout.strip().splitlines()
    assert demo_file == str(site / "tracegen_ros" / "demo.py")
    assert "'tracegen'" in benches and "'tracegen-sim'" in benches
