"""How nodes stop: Ctrl-C twice (terminal + ros2 launch), SIGTERM, and an orphan whose
parent (the launch) is gone. Real node processes over real DDS (loopback only).

No wall-clock assertions: the tests wait (with generous limits) for what must happen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from tracevla_ros.nodes.common import RELIABLE_QOS  # noqa: E402
from tracevla_ros.robots import get_robot  # noqa: E402

pytestmark = pytest.mark.ros

_CONTROLLER = "tracevla_ros.nodes.widowx_controller_node"


def _node_cmd(repo: Path, module: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())",
            "--ros-args", "--params-file", str(repo / "config" / "widowx.yaml")]


def _env(repo: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                PYTHONUNBUFFERED="1")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


class _ArmPeer:
    """Publishes WidowX joint states, records the arm commands the controller sends."""

    def __init__(self) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("lifecycle_peer", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        spec = get_robot("widowx250s")
        self.names = list(spec.ros_joint_names)
        self.q = [float(v) for v in spec.home]
        self.commands: list[JointTrajectory] = []
        self._pub = self.node.create_publisher(JointState, "/joint_states", RELIABLE_QOS)
        self.node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                                      self.commands.append, RELIABLE_QOS)
        self.node.create_timer(0.02, self._publish_state)

    def _publish_state(self) -> None:
        msg = JointState(name=self.names, position=self.q)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.05)
            if cond():
                return True
        return False

    def subscribed(self) -> bool:
        return self._pub.get_subscription_count() > 0

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@pytest.fixture
def peer() -> Any:
    p = _ArmPeer()
    yield p
    p.close()


def _wait_exit(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the node did not stop:\n{out}")
    return out


@pytest.mark.parametrize("signals", [("SIGINT", "SIGINT"), ("SIGTERM",), ("SIGINT", "SIGTERM")])
def test_controller_stops_cleanly_and_holds_on_signals(peer: _ArmPeer, repo_root: Path,
                                                       signals: tuple[str, ...]) -> None:
    """Ctrl-C in a terminal under ros2 launch = SIGINT from the terminal + SIGINT from launch:
    exit 0, no traceback, and a hold command at the measured position on the way out."""
    proc = subprocess.Popen(_node_cmd(repo_root, _CONTROLLER), env=_env(repo_root), cwd=repo_root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        assert peer.spin_until(peer.subscribed, 60.0), "the controller never subscribed"
        peer.spin_until(lambda: False, 1.0)  # it has joint states now
        for name in signals:
            os.killpg(proc.pid, getattr(signal, name))
            peer.ex.spin_once(timeout_sec=0.01)
        assert peer.spin_until(lambda: bool(peer.commands), 20.0), "no hold command on shutdown"
        out = _wait_exit(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "holding position" in out
    hold = peer.commands[-1].points[-1].positions
    assert list(hold) == pytest.approx(peer.q, abs=1e-6)


def test_orphaned_controller_holds_and_exits(peer: _ArmPeer, repo_root: Path,
                                             tmp_path: Path) -> None:
    """A node whose parent (ros2 launch) dies without stopping it: it notices, holds the
    arm and exits on its own, instead of driving the arm as an orphan."""
    pidfile = tmp_path / "child.pid"
    # The parent: starts the controller, reports its pid, waits for 'go', then dies hard.
    parent_code = (
        "import os, subprocess, sys\n"
        f"p = subprocess.Popen({_node_cmd(repo_root, _CONTROLLER)!r})\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "sys.stdin.readline()\n"
        "os._exit(0)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=_env(repo_root),
                              cwd=repo_root, stdin=subprocess.PIPE, text=True,
                              start_new_session=True)
    child = 0
    try:
        assert peer.spin_until(lambda: pidfile.exists() and pidfile.read_text() != "", 30.0)
        child = int(pidfile.read_text())
        assert peer.spin_until(peer.subscribed, 60.0), "the controller never subscribed"
        peer.spin_until(lambda: False, 1.0)
        assert parent.stdin is not None
        parent.stdin.write("go\n")
        parent.stdin.flush()
        parent.wait(timeout=10)
        assert peer.spin_until(lambda: bool(peer.commands), 20.0), "the orphan sent no hold"
        assert peer.spin_until(lambda: not _alive(child), 20.0), "the orphan kept running"
    finally:
        for pid in (parent.pid, child):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.wait()
    hold = peer.commands[-1].points[-1].positions
    assert list(hold) == pytest.approx(peer.q, abs=1e-6)
