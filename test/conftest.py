"""Test-wide environment: DDS stays on this machine, one ROS domain per run.

Set before anything imports rclpy: discovery only on loopback
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, checked: no packet leaves lo) and a
ROS_DOMAIN_ID derived from the pid so parallel runs do not see each other.
Subprocesses started by tests inherit both.
"""

from __future__ import annotations

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.pop("ROS_STATIC_PEERS", None)

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def standin_env(repo_root: pathlib.Path) -> dict[str, str]:
    """Environment for a subprocess that may import the TEST-ONLY stand-in
    interfaces (interbotix_xs_msgs, control_msgs, franka_msgs; see
    test/standin_interfaces/README.md). Builds them once (incremental)."""
    import subprocess
    import sys

    install = repo_root / "build" / "standin_interfaces" / "install"
    src = repo_root / "test" / "standin_interfaces"
    newest_src = max(p.stat().st_mtime for p in src.rglob("*") if p.is_file())
    marker = install / "share" / "franka_msgs" / "package.xml"
    if not marker.exists() or marker.stat().st_mtime < newest_src:
        r = subprocess.run(["bash", str(src / "build.sh")], capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            pytest.fail(f"building the stand-in interfaces failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        marker.touch()
    site = next((install / "lib").glob("python3*/site-packages"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [str(install / "lib"), str(pathlib.Path(sys.prefix) / "lib"),
                      env.get("LD_LIBRARY_PATH", "")]))
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(install), sys.prefix])
    return env


@pytest.fixture(scope="session")
def plugin_metadata(repo_root: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A directory holding this checkout's package metadata (``setup.py egg_info``: the entry
    points ``pip install -e .`` would register, tracegen_ros's tracevla-demo / tracevla-bench
    plugins among them). First on sys.path / PYTHONPATH it shadows the venv's installed
    metadata, which may predate this checkout's setup.py."""
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("plugin_metadata")
    r = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(base)],
                       cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (base / "tracevla_stack.egg-info" / "entry_points.txt").is_file()
    return base


@pytest.fixture(scope="session")
def plugin_env(plugin_metadata: pathlib.Path) -> dict[str, str]:
    """Environment for a subprocess that finds this checkout's entry points (``plugin_metadata``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_metadata), str(REPO),
                                                      env.get("PYTHONPATH", "")]))
    return env


@pytest.fixture
def with_plugins(plugin_metadata: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process finds this checkout's entry points (``plugin_metadata`` first on sys.path)."""
    import importlib

    monkeypatch.syspath_prepend(str(plugin_metadata))
    importlib.invalidate_caches()


@pytest.fixture
def ros():  # noqa: ANN201 - (node, executor)
    """An rclpy node and its single-threaded executor in this process: the tests' DDS peer
    of the node processes they start (test/support/node_procs.py)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    node = rclpy.create_node("dds_test_peer")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    yield node, ex
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()
