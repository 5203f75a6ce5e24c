"""interface trajectory_action (control_msgs/FollowJointTrajectory) over real DDS (loopback).

control_msgs is not installable here: the nodes that need it (sim_node's server, the
controllers' client, the bench's client) run in subprocesses with the TEST-ONLY stand-in
(test/standin_interfaces, fixture ``standin_env``); this process only speaks PolicyAction,
JointState and DiagnosticArray to them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

pytest.importorskip("mujoco")
rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from support.node_procs import repo_env, spin_until, start_node, stop_node  # noqa: E402
from tracevla_ros.config import ConfigError  # noqa: E402
from tracevla_ros.nodes.common import RELIABLE_QOS  # noqa: E402

pytestmark = pytest.mark.ros
SIM = "tracevla_ros.nodes.sim_node"
WIDOWX_CTL = "tracevla_ros.nodes.widowx_controller_node"
FRANKA_CTL = "tracevla_ros.nodes.franka_controller_node"


def _diag(diags: list[DiagnosticArray], name: str) -> dict[str, str]:
    for d in reversed(diags):
        for st in d.status:
            if st.name.startswith(name):
                return {kv.key: kv.value for kv in st.values} | {"_message": st.message}
    return {}


def test_sim_server_results_preemption_and_abort_hold(repo_root: Path,
                                                      standin_env: dict[str, str]) -> None:
    """sim_node's server seen from a real client (the bench, 1 trial): SUCCESSFUL, INVALID_JOINTS,
    INVALID_GOAL, GOAL_TOLERANCE_VIOLATED, PATH_TOLERANCE_VIOLATED; a new goal preempts the
    running one (old: aborted, code SUCCESSFUL); after an abort the arm stops and stays."""
    env = repo_env(repo_root, standin_env)
    code = ("import json, sys; from tracevla_ros.bench.action import main; "
            "print('RESULT ' + json.dumps(main(['--trials', '1'])))")
    r = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=env, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert out["checks"] == {"unknown_joint": -2, "unsorted_times": -1, "unreachable": -5,
                             "reachable": 0, "path_tolerance": -4}
    assert out["accept_to_motion"]["n"] == 1
    assert out["preemption_old_result"]["n"] == 1  # old goal aborted with a SUCCESSFUL code
    assert out["preemption_new_accepted"]["n"] == 1
    assert out["abort_hold"]["n"] == 1  # the arm stopped after the path tolerance abort
    assert out["abort_drift_rad_max"] < 0.02


def _run_widowx(ros: Any, repo_root: Path, standin_env: dict[str, str], *ctl_params: str
                ) -> tuple[Any, ...]:
    from tracevla_ros.msg import PolicyAction

    env = repo_env(repo_root, standin_env)
    node, ex = ros
    js: list[JointState] = []
    diags: list[DiagnosticArray] = []
    node.create_subscription(JointState, "/joint_states", js.append, RELIABLE_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, RELIABLE_QOS)
    act_pub = node.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
    sim = start_node(repo_root, SIM, "task:=lift_cube", params_file="config/widowx.yaml", env=env)
    ctl = start_node(repo_root, WIDOWX_CTL, "interface:=trajectory_action",
                     "action_server_timeout_s:=60.0", *ctl_params,
                     params_file="config/widowx.yaml", env=env)

    def send(*rows: list[float]) -> None:
        msg = PolicyAction(action_space="ee_delta_7d", chunk_length=len(rows), action_dim=7,
                           values=[float(v) for r in rows for v in r], policy_name="test")
        msg.header.frame_id = "wx250s/base_link"
        msg.header.stamp = node.get_clock().now().to_msg()
        act_pub.publish(msg)

    return node, ex, js, diags, act_pub, sim, ctl, send


def test_widowx_chunk_executes_through_the_action(ros: Any, repo_root: Path,
                                                  standin_env: dict[str, str]) -> None:
    """A 5-step chunk (+1.5 cm x each) becomes 5 goals (each preempting the previous) that move
    the simulated arm; /diagnostics counts them and reports no failure."""
    from tracevla_ros.control.kinematics import load_kinematics

    kin = load_kinematics("widowx250s")
    node, ex, js, diags, act_pub, sim, ctl, send = _run_widowx(ros, repo_root, standin_env)
    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0, 90, sim, ctl)
        spin_until(ex, lambda: False, 1.5, sim, ctl)  # the controller receives joint states
        p0, _ = kin.fk(np.array(js[-1].position[:6]))
        send(*[[0.015, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]] * 5)
        assert spin_until(ex, lambda: int(_diag(diags, "widowx_controller_node").get(
            "action.goals_sent", "0")) >= 5, 20, sim, ctl), \
            f"{_diag(diags, 'widowx_controller_node')}\n{stop_node(ctl)}"
        spin_until(ex, lambda: False, 1.5, sim, ctl)
        p1, _ = kin.fk(np.array(js[-1].position[:6]))
        assert p1[0] - p0[0] > 0.05, f"ee moved {p1 - p0}"
        assert abs(p1[1] - p0[1]) < 0.02 and abs(p1[2] - p0[2]) < 0.03
        assert spin_until(ex, lambda: _diag(diags, "widowx_controller_node").get(
            "action.succeeded", "0") != "0", 5, sim, ctl)
        d = _diag(diags, "widowx_controller_node")
        assert d["interface"] == "trajectory_action"
        assert d["action.server"] == "/arm_controller/follow_joint_trajectory"
        assert d["action.rejected"] == "0" and d["action.aborted"] == "0", d
        assert int(d["action.preempted"]) + int(d["action.succeeded"]) >= 5, d
        assert d["hold_reason"] == "none" and d["_message"] == "running"
        out = stop_node(ctl)  # shutdown: the hold goes out as a goal, and the server accepts it
        assert "hold goal accepted by the server" in out, out
    finally:
        stop_node(ctl)
        stop_node(sim)


def test_widowx_aborted_goal_holds_the_arm(ros: Any, repo_root: Path,
                                           standin_env: dict[str, str]) -> None:
    """A path tolerance the arm cannot keep (0.1 mrad): the sim aborts the goal with
    PATH_TOLERANCE_VIOLATED, the controller holds the measured position and says why."""
    node, ex, js, diags, act_pub, sim, ctl, send = _run_widowx(
        ros, repo_root, standin_env, "path_tolerance:=0.0001")
    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0, 90, sim, ctl)
        spin_until(ex, lambda: False, 1.5, sim, ctl)
        send([0.03, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.03, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])

        def held() -> bool:
            d = _diag(diags, "widowx_controller_node")
            return "PATH_TOLERANCE_VIOLATED" in d.get("hold_reason", "")

        assert spin_until(ex, held, 20, sim, ctl), _diag(diags, "widowx_controller_node")
        d = _diag(diags, "widowx_controller_node")
        assert int(d["interventions.trajectory_aborted"]) >= 1
        assert int(d["action.aborted"]) >= 1
        assert d["_message"].startswith("holding: goal aborted: PATH_TOLERANCE_VIOLATED")
        # the hold: the arm comes to rest and stays there (the chunk's 2nd step was dropped)
        spin_until(ex, lambda: False, 1.0, sim, ctl)
        q1 = np.array(js[-1].position[:6])
        spin_until(ex, lambda: False, 1.0, sim, ctl)
        assert np.max(np.abs(np.array(js[-1].position[:6]) - q1)) < 0.01
        assert np.max(np.abs(np.array(js[-1].velocity[:6]))) < 0.05
    finally:
        stop_node(ctl)
        stop_node(sim)


def test_widowx_server_gone_holds_and_says_so(ros: Any, repo_root: Path,
                                             standin_env: dict[str, str]) -> None:
    """The action server disappears while the controller runs (sim_node stopped): the next
    command is not sent into the void; the controller holds and /diagnostics says why."""
    node, ex, js, diags, act_pub, sim, ctl, send = _run_widowx(ros, repo_root, standin_env)
    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0, 90, sim, ctl)
        spin_until(ex, lambda: False, 1.0, sim, ctl)
        stop_node(sim)
        # the joint states go on (a driver without its controller): the controller stays live
        last = js[-1]
        js_pub = node.create_publisher(JointState, "/joint_states", RELIABLE_QOS)

        def republish() -> None:
            last.header.stamp = node.get_clock().now().to_msg()
            js_pub.publish(last)

        node.create_timer(0.02, republish)
        spin_until(ex, lambda: False, 1.0, ctl)  # the graph notices the server is gone
        send([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
        assert spin_until(ex, lambda: "not available" in _diag(
            diags, "widowx_controller_node").get("hold_reason", ""), 10, ctl), \
            _diag(diags, "widowx_controller_node")
        d = _diag(diags, "widowx_controller_node")
        assert d["_message"].startswith("holding: /arm_controller/follow_joint_trajectory not available")
        assert int(d["interventions.trajectory_aborted"]) >= 1
    finally:
        stop_node(ctl)
        stop_node(sim)


def test_no_action_server_is_one_configuration_error(repo_root: Path,
                                                     standin_env: dict[str, str]) -> None:
    env = repo_env(repo_root, standin_env)
    ctl = start_node(repo_root, WIDOWX_CTL, "interface:=trajectory_action",
                     "action_server_timeout_s:=1.0", "arm_controller:=no_such_controller",
                     params_file="config/widowx.yaml", env=env)
    try:
        ctl.wait(timeout=60)
    finally:
        out = stop_node(ctl)
    assert ctl.returncode == 2, out
    errors = [ln for ln in out.splitlines() if "widowx_controller_node: error:" in ln]
    assert len(errors) == 1, out
    assert "/no_such_controller/follow_joint_trajectory" in errors[0]
    assert "Traceback" not in out


def test_trajectory_action_without_control_msgs_is_a_config_error() -> None:
    try:
        import control_msgs  # noqa: F401
        pytest.skip("control_msgs is importable here")
    except ImportError:
        pass
    from tracevla_ros.nodes.franka_controller_node import FrankaControllerNode
    from tracevla_ros.nodes.widowx_controller_node import WidowXControllerNode

    for cls, extra in ((WidowXControllerNode, []),
                       (FrankaControllerNode, [Parameter("gripper_namespace", value="")])):
        ctx = rclpy.context.Context()
        rclpy.init(context=ctx)
        try:
            with pytest.raises(ConfigError, match="control_msgs"):
                cls(context=ctx, parameter_overrides=[
                    Parameter("interface", value="trajectory_action"), *extra])
        finally:
            rclpy.shutdown(context=ctx)


def test_fr3_actions_and_waypoints_execute_through_the_action(ros: Any, repo_root: Path,
                                                               standin_env: dict[str, str]) -> None:
    """franka_controller_node with interface trajectory_action on the FR3 sim: PolicyAction
    steps and an ee waypoint sequence (one multi-point goal) move the arm; hand via Grasp."""
    from geometry_msgs.msg import Pose, PoseArray

    from tracevla_ros.control.kinematics import load_kinematics
    from tracevla_ros.msg import PolicyAction

    env = repo_env(repo_root, standin_env)
    node, ex = ros
    kin = load_kinematics("fr3")
    js: list[JointState] = []
    diags: list[DiagnosticArray] = []
    node.create_subscription(JointState, "/joint_states", js.append, RELIABLE_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, RELIABLE_QOS)
    act_pub = node.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
    wp_pub = node.create_publisher(PoseArray, "/ee_waypoints", RELIABLE_QOS)
    sim = start_node(repo_root, SIM, params_file="config/fr3.yaml", env=env)
    ctl = start_node(repo_root, FRANKA_CTL, "interface:=trajectory_action",
                     "action_server_timeout_s:=60.0", params_file="config/fr3.yaml", env=env)
    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0
                           and wp_pub.get_subscription_count() > 0, 90, sim, ctl)
        spin_until(ex, lambda: False, 1.5, sim, ctl)
        p0, r0 = kin.fk(np.array(js[-1].position[:7]))
        msg = PolicyAction(action_space="ee_delta_7d", chunk_length=4, action_dim=7,
                           values=[0.0, 0.0, -0.02, 0.0, 0.0, 0.0, 0.0] * 4, policy_name="test")
        msg.header.frame_id = "fr3_link0"
        msg.header.stamp = node.get_clock().now().to_msg()
        act_pub.publish(msg)
        spin_until(ex, lambda: False, 2.0, sim, ctl)
        p1, _ = kin.fk(np.array(js[-1].position[:7]))
        assert p0[2] - p1[2] > 0.05, f"ee moved {p1 - p0}"
        assert js[-1].position[7] < 0.005, "hand did not close on the Grasp goal"
        # a waypoint sequence: one goal with several points
        wp = PoseArray()
        wp.header.frame_id = "fr3_link0"
        q = [float(v) for v in Rotation.from_matrix(r0).as_quat()]  # the start orientation (xyzw)
        for dy in (0.03, 0.06):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = float(p1[0]), float(p1[1] + dy), float(p1[2])
            pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = q
            wp.poses.append(pose)
        wp_pub.publish(wp)
        assert spin_until(ex, lambda: kin.fk(np.array(js[-1].position[:7]))[0][1] - p1[1] > 0.05,
                           10, sim, ctl)
        assert spin_until(ex, lambda: _diag(diags, "franka_controller_node").get(
            "action.succeeded", "0") != "0", 5, sim, ctl)
        d = _diag(diags, "franka_controller_node")
        assert d["action.server"] == "/fr3_arm_controller/follow_joint_trajectory"
        assert d["action.aborted"] == "0" and d["action.rejected"] == "0", d
        assert d["gripper"] == "grasp: succeeded", d  # the Grasp result was checked
        # franka_gripper Homing through ~/home_gripper: result checked, the hand opens
        from std_srvs.srv import Trigger

        home = node.create_client(Trigger, "/franka_controller_node/home_gripper")
        assert home.wait_for_service(timeout_sec=10)
        fut = home.call_async(Trigger.Request())
        assert spin_until(ex, fut.done, 10, sim, ctl) and fut.result().success
        assert spin_until(ex, lambda: _diag(diags, "franka_controller_node").get("gripper")
                           == "homing: succeeded", 10, sim, ctl)
        assert spin_until(ex, lambda: js[-1].position[7] > 0.035, 10, sim, ctl)
    finally:
        stop_node(ctl)
        stop_node(sim)


def test_fr3_reflex_holds_until_recover(ros: Any, repo_root: Path, standin_env: dict[str, str]) -> None:
    """The sim's contact reflex (hand pushed into the table) -> FrankaRobotState REFLEX ->
    franka_controller_node holds and blocks actions; ~/recover calls ErrorRecovery, after
    which actions move the arm again (the controller never resumes on its own)."""
    from builtin_interfaces.msg import Duration
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from tracevla_ros.control.kinematics import load_kinematics
    from tracevla_ros.msg import PolicyAction

    env = repo_env(repo_root, standin_env)
    node, ex = ros
    kin = load_kinematics("fr3")
    js: list[JointState] = []
    diags: list[DiagnosticArray] = []
    node.create_subscription(JointState, "/joint_states", js.append, RELIABLE_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, RELIABLE_QOS)
    act_pub = node.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
    traj_pub = node.create_publisher(JointTrajectory, "/fr3_arm_controller/joint_trajectory", RELIABLE_QOS)
    recover = node.create_client(Trigger, "/franka_controller_node/recover")
    sim = start_node(repo_root, SIM, "reflex_contact_force_n:=50.0", params_file="config/fr3.yaml",
                     env=env)
    ctl = start_node(repo_root, FRANKA_CTL, params_file="config/fr3.yaml", env=env)

    def act(dz: float) -> None:
        msg = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                           values=[0.0, 0.0, dz, 0.0, 0.0, 0.0, 1.0], policy_name="test")
        msg.header.frame_id = "fr3_link0"
        msg.header.stamp = node.get_clock().now().to_msg()
        act_pub.publish(msg)

    def z() -> float:
        return float(kin.fk(np.array(js[-1].position[:7]))[0][2])

    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0
                           and traj_pub.get_subscription_count() > 0, 90, sim, ctl)
        assert recover.wait_for_service(timeout_sec=20)
        # no fault yet: ~/recover refuses
        fut = recover.call_async(Trigger.Request())
        assert spin_until(ex, fut.done, 10, sim, ctl) and not fut.result().success
        # push the hand into the table: joint 2 forward (the sim's reflex fires on contact)
        q = list(js[-1].position[:7])
        q[1] = 0.9
        push = JointTrajectory(joint_names=[f"fr3_joint{i}" for i in range(1, 8)])
        push.points = [JointTrajectoryPoint(positions=q, time_from_start=Duration(sec=2))]
        traj_pub.publish(push)

        def fault() -> str:
            return _diag(diags, "franka_controller_node").get("robot_fault", "none")

        assert spin_until(ex, lambda: "reflex" in fault(), 20, sim, ctl), \
            _diag(diags, "franka_controller_node")
        d = _diag(diags, "franka_controller_node")
        assert "cartesian_reflex" in d["robot_fault"] and d["_message"].startswith("robot fault")
        # blocked: actions do nothing
        z0 = z()
        for _ in range(3):
            act(0.02)
            spin_until(ex, lambda: False, 0.3, sim, ctl)
        spin_until(ex, lambda: False, 1.0, sim, ctl)
        assert abs(z() - z0) < 0.01
        assert spin_until(ex, lambda: int(_diag(diags, "franka_controller_node").get(
            "interventions.robot_fault", "0")) >= 3, 5, sim, ctl)
        # recover on request, then actions move the arm up again
        fut = recover.call_async(Trigger.Request())
        assert spin_until(ex, fut.done, 10, sim, ctl) and fut.result().success, fut.result()
        assert spin_until(ex, lambda: fault() == "none", 10, sim, ctl)
        assert _diag(diags, "franka_controller_node")["recovery"] == "succeeded"
        for _ in range(4):
            act(0.02)
            spin_until(ex, lambda: False, 0.3, sim, ctl)
        assert spin_until(ex, lambda: z() - z0 > 0.04, 5, sim, ctl), f"z {z0} -> {z()}"
    finally:
        stop_node(ctl)
        stop_node(sim)
