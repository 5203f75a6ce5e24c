"""widowx_controller_node over real DDS (loopback), trajectory interface.

A fake robot in the test publishes JointState (and follows the commanded positions),
the test publishes PolicyAction and checks the JointTrajectory commands.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from tracevla_ros.config import ConfigError  # noqa: E402
from tracevla_ros.control.kinematics import load_kinematics  # noqa: E402
from tracevla_ros.msg import PolicyAction  # noqa: E402
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS  # noqa: E402
from tracevla_ros.nodes.widowx_controller_node import WidowXControllerNode  # noqa: E402
from tracevla_ros.robots import get_robot  # noqa: E402

pytestmark = pytest.mark.ros
SPEC = get_robot("widowx250s")
MARGIN = 0.02


class Rig:
    """Controller node + a fake robot/policy node on one executor in a private context."""

    def __init__(self, params: dict[str, Any], follow: bool = True) -> None:
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        base = {"watchdog_timeout_s": 0.6, "step_period_s": 0.1, "joint_margin": MARGIN}
        base.update(params)
        self.node = WidowXControllerNode(
            context=self.ctx, parameter_overrides=[Parameter(k, value=v) for k, v in base.items()])
        self.peer = rclpy.create_node("fake_robot", context=self.ctx)
        self.q = SPEC.home_q.copy()
        self.follow = follow
        self.traj: list[tuple[float, JointTrajectory]] = []
        self.grip: list[JointTrajectory] = []
        self.dry: list[JointTrajectory] = []
        self.diag: list[DiagnosticArray] = []
        self.peer.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory",
                                      self._on_traj, RELIABLE_QOS)
        self.peer.create_subscription(JointTrajectory, "/gripper_controller/joint_trajectory",
                                      self.grip.append, RELIABLE_QOS)
        self.peer.create_subscription(JointTrajectory, "/widowx_controller_node/would_send",
                                      self.dry.append, RELIABLE_QOS)
        self.peer.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append, RELIABLE_QOS)
        self.state_pub = self.peer.create_publisher(JointState, "/joint_states", SENSOR_QOS)
        self.action_pub = self.peer.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
        self.peer.create_timer(0.02, self._publish_state)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.peer)

    def _on_traj(self, msg: JointTrajectory) -> None:
        self.traj.append((time.monotonic(), msg))
        if self.follow:
            self.q = np.asarray(msg.points[-1].positions)

    def _publish_state(self) -> None:
        names = list(SPEC.ros_joint_names) + ["left_finger", "right_finger"]
        msg = JointState(name=names, position=list(self.q) + [0.03, -0.03])
        msg.header.stamp = self.peer.get_clock().now().to_msg()
        self.state_pub.publish(msg)

    def spin_until(self, cond: Callable[[], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)
            if cond():
                return True
        return False

    def act(self, *rows: list[float]) -> None:
        msg = PolicyAction(action_space="ee_delta_7d", chunk_length=len(rows), action_dim=7,
                           values=[float(v) for r in rows for v in r], policy_name="test")
        msg.header.frame_id = "wx250s/base_link"
        msg.header.stamp = self.peer.get_clock().now().to_msg()
        self.action_pub.publish(msg)

    def call(self, service: str) -> Trigger.Response:
        cli = self.peer.create_client(Trigger, f"/widowx_controller_node/{service}")
        assert cli.wait_for_service(timeout_sec=5.0)
        fut = cli.call_async(Trigger.Request())
        assert self.spin_until(fut.done)
        return fut.result()

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def rig(request: pytest.FixtureRequest):
    r = Rig(getattr(request, "param", {}))
    # wait until the controller has a joint state and the action subscription is matched
    assert r.spin_until(lambda: r.node.core.q_state is not None and r.action_pub.get_subscription_count() > 0)
    yield r
    r.close()


def _within_limits(msg: JointTrajectory) -> None:
    assert list(msg.joint_names) == list(SPEC.ros_joint_names)
    q = np.asarray(msg.points[-1].positions)
    assert np.all(np.isfinite(q))
    assert np.all(q >= SPEC.lower + MARGIN - 1e-9) and np.all(q <= SPEC.upper - MARGIN + 1e-9)


def test_action_becomes_trajectory_to_the_integrated_pose(rig: Rig) -> None:
    kin = load_kinematics("widowx250s")
    p0, r0 = kin.fk(rig.q)
    rig.act([0.01, 0.0, -0.01, 0.0, 0.0, 0.05, 1.0])
    assert rig.spin_until(lambda: len(rig.traj) >= 1), "no JointTrajectory received"
    msg = rig.traj[0][1]
    _within_limits(msg)
    p, r = kin.fk(np.asarray(msg.points[0].positions))
    np.testing.assert_allclose(p, p0 + [0.01, 0.0, -0.01], atol=1e-3)
    c, s = math.cos(0.05), math.sin(0.05)
    np.testing.assert_allclose(r, np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ r0, atol=0.01)
    assert rig.spin_until(lambda: len(rig.grip) >= 1), "gripper command missing"
    assert rig.grip[0].points[0].positions[0] == pytest.approx(SPEC.gripper_open)


def test_chunk_steps_are_spaced_and_hostile_values_stay_in_limits(rig: Rig) -> None:
    rig.act([1e6, -1e6, 1e6, 50.0, -50.0, 50.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [float("nan")] * 7)
    assert rig.spin_until(lambda: len(rig.traj) >= 2, timeout=3.0)
    rig.spin_until(lambda: False, timeout=0.4)
    for _, msg in rig.traj:
        _within_limits(msg)
    times = [t for t, _ in rig.traj]
    assert times[1] - times[0] > 0.05  # step_period_s = 0.1 between chunk steps
    assert rig.node.core.counts["cartesian_step"] >= 1
    assert rig.node.core.counts["nonfinite"] >= 1


def test_estop_holds_until_reset(rig: Rig) -> None:
    q_before = rig.q.copy()
    assert rig.call("estop").success
    assert rig.spin_until(lambda: len(rig.traj) >= 1)
    np.testing.assert_allclose(rig.traj[-1][1].points[0].positions, q_before, atol=1e-6)
    n = len(rig.traj)
    for _ in range(3):
        rig.act([0.02, 0, 0, 0, 0, 0, 1.0])
        rig.spin_until(lambda: False, timeout=0.15)
    for _, msg in rig.traj[n:]:  # nothing that moves the arm while latched
        np.testing.assert_allclose(msg.points[0].positions, q_before, atol=1e-6)
    assert rig.node.core.estop.latched
    assert rig.call("reset").success
    rig.act([0.02, 0, 0, 0, 0, 0, 1.0])
    assert rig.spin_until(lambda: any(not np.allclose(m.points[0].positions, q_before, atol=1e-4)
                                      for _, m in rig.traj[n:]))


def test_no_actions_hold_within_watchdog_time(rig: Rig) -> None:
    rig.follow = False  # the robot stays where it is: the hold must be the measured position
    rig.act([0.02, 0, 0, 0, 0, 0, 1.0])
    assert rig.spin_until(lambda: len(rig.traj) >= 1)
    t_action = rig.traj[0][0]
    assert rig.spin_until(lambda: len(rig.traj) >= 2, timeout=2.0), "no hold after the watchdog"
    t_hold, hold = rig.traj[1]
    assert 0.5 <= t_hold - t_action <= 0.6 + 0.3
    np.testing.assert_allclose(hold.points[0].positions, rig.q, atol=1e-6)
    assert rig.node.core.counts["watchdog"] == 1
    assert rig.spin_until(lambda: any(
        kv.key == "interventions.watchdog" and kv.value == "1"
        for d in rig.diag for kv in d.status[0].values), timeout=2.0)


@pytest.mark.parametrize("rig", [{"dry_run": True}], indirect=True)
def test_dry_run_publishes_would_send_only(rig: Rig) -> None:
    rig.act([0.01, 0, 0, 0, 0, 0, 0.0])
    assert rig.spin_until(lambda: len(rig.dry) >= 1)
    rig.spin_until(lambda: False, timeout=0.3)
    assert rig.traj == [] and rig.grip == []
    msg = rig.dry[0]
    assert list(msg.joint_names) == list(SPEC.ros_joint_names) + ["left_finger"]
    assert msg.points[0].positions[-1] == pytest.approx(SPEC.gripper_closed)


def test_interbotix_interface_without_package_is_a_config_error() -> None:
    pytest.importorskip("rclpy")
    try:
        import interbotix_xs_msgs  # noqa: F401
        pytest.skip("interbotix_xs_msgs is importable here")
    except ImportError:
        pass
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(ConfigError, match="interbotix_xs_msgs"):
            WidowXControllerNode(context=ctx, parameter_overrides=[
                Parameter("interface", value="interbotix_topic")])
    finally:
        rclpy.shutdown(context=ctx)
