"""franka_controller_node over real DDS (loopback): actions, waypoint sequences, e-stop."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Pose, PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from tracevla_ros.config import ConfigError  # noqa: E402
from tracevla_ros.control.kinematics import load_kinematics  # noqa: E402
from tracevla_ros.msg import PolicyAction  # noqa: E402
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS  # noqa: E402
from tracevla_ros.nodes.franka_controller_node import FrankaControllerNode  # noqa: E402
from tracevla_ros.robots import get_robot  # noqa: E402

pytestmark = pytest.mark.ros
SPEC = get_robot("fr3")
MARGIN = 0.02


class Rig:
    def __init__(self, params: dict[str, Any]) -> None:
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        base = {"gripper_namespace": "", "watchdog_timeout_s": 0.6, "step_period_s": 0.1,
                "joint_margin": MARGIN}
        base.update(params)
        self.node = FrankaControllerNode(
            context=self.ctx, parameter_overrides=[Parameter(k, value=v) for k, v in base.items()])
        self.peer = rclpy.create_node("fake_fr3", context=self.ctx)
        self.q = SPEC.home_q.copy()
        self.traj: list[JointTrajectory] = []
        self.peer.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory",
                                      self.traj.append, RELIABLE_QOS)
        self.state_pub = self.peer.create_publisher(JointState, "/joint_states", SENSOR_QOS)
        self.action_pub = self.peer.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
        self.wp_pub = self.peer.create_publisher(PoseArray, "/ee_waypoints", RELIABLE_QOS)
        self.peer.create_timer(0.02, self._publish_state)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.peer)

    def _publish_state(self) -> None:
        names = list(SPEC.ros_joint_names) + ["fr3_finger_joint1", "fr3_finger_joint2"]
        self.state_pub.publish(JointState(name=names, position=list(self.q) + [0.04, 0.04]))

    def spin_until(self, cond: Callable[[], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)
            if cond():
                return True
        return False

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        self.peer.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def rig():
    r = Rig({})
    assert r.spin_until(lambda: r.node.core.q_state is not None
                        and r.action_pub.get_subscription_count() > 0
                        and r.wp_pub.get_subscription_count() > 0)
    yield r
    r.close()


def _in_limits(q: np.ndarray) -> bool:
    return bool(np.all(q >= SPEC.lower + MARGIN - 1e-9) and np.all(q <= SPEC.upper - MARGIN + 1e-9))


def test_single_step_action(rig: Rig) -> None:
    kin = load_kinematics("fr3")
    p0, _ = kin.fk(rig.q)
    msg = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                       values=[0.0, 0.02, 0.0, 0.0, 0.0, 0.0, 1.0])
    rig.action_pub.publish(msg)
    assert rig.spin_until(lambda: len(rig.traj) >= 1)
    q = np.asarray(rig.traj[0].points[0].positions)
    assert list(rig.traj[0].joint_names) == list(SPEC.ros_joint_names) and _in_limits(q)
    np.testing.assert_allclose(kin.fk(q)[0], p0 + [0, 0.02, 0], atol=1e-3)


def test_waypoint_sequence_becomes_one_timed_trajectory(rig: Rig) -> None:
    kin = load_kinematics("fr3")
    p0, _ = kin.fk(rig.q)
    targets = [p0 + [0.05, 0.0, -0.05], p0 + [0.05, 0.1, -0.1], p0 + [0.0, 0.1, -0.15]]
    msg = PoseArray()
    msg.header.frame_id = "fr3_link0"
    for t in targets:  # hand pointing down: R = diag(1, -1, -1) = 180 deg about x
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
        pose.orientation.x, pose.orientation.w = 1.0, 0.0
        msg.poses.append(pose)
    rig.wp_pub.publish(msg)
    assert rig.spin_until(lambda: len(rig.traj) >= 1)
    traj = rig.traj[0]
    assert len(traj.points) == 3
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in traj.points]
    assert all(b > a for a, b in zip([0.0] + times, times))
    assert times[0] >= 0.0707 / 0.1 * 0.99  # 7.07 cm at waypoint_speed 0.1 m/s
    for pt, target in zip(traj.points, targets):
        q = np.asarray(pt.positions)
        assert _in_limits(q)
        p, r = kin.fk(q)
        np.testing.assert_allclose(p, target, atol=1e-3)
        np.testing.assert_allclose(r, np.diag([1.0, -1.0, -1.0]), atol=0.01)


def test_estop_blocks_waypoints_until_reset(rig: Rig) -> None:
    cli = rig.peer.create_client(Trigger, "/franka_controller_node/estop")
    assert cli.wait_for_service(timeout_sec=5.0)
    fut = cli.call_async(Trigger.Request())
    assert rig.spin_until(fut.done)
    assert rig.spin_until(lambda: len(rig.traj) >= 1)  # the hold
    np.testing.assert_allclose(rig.traj[0].points[0].positions, rig.q, atol=1e-6)
    msg = PoseArray()
    pose = Pose()
    pose.position.x, pose.position.z, pose.orientation.x = 0.4, 0.3, 1.0
    msg.poses.append(pose)
    rig.wp_pub.publish(msg)
    rig.spin_until(lambda: False, timeout=0.5)
    assert len(rig.traj) == 1 and rig.node.core.counts["estop"] >= 1


def test_gripper_without_franka_msgs_is_a_config_error() -> None:
    try:
        import franka_msgs  # noqa: F401
        pytest.skip("franka_msgs is importable here")
    except ImportError:
        pass
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(ConfigError, match="franka_msgs"):
            FrankaControllerNode(context=ctx)
    finally:
        rclpy.shutdown(context=ctx)
