"""sim_node over real DDS (loopback): images, joint states, JointTrajectory moves the arm."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mujoco")
rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from support.node_procs import repo_env, spin_until, start_node, stop_node  # noqa: E402
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS  # noqa: E402

pytestmark = pytest.mark.ros
SIM = "tracevla_ros.nodes.sim_node"


def test_widowx_images_joint_states_and_trajectory(ros: Any, repo_root: Path) -> None:
    node, ex = ros
    got: dict[str, list[Any]] = {"img": [], "info": [], "js": [], "ixs": [], "ok": []}
    node.create_subscription(Image, "/camera/image_raw", got["img"].append, SENSOR_QOS)
    node.create_subscription(CameraInfo, "/camera/camera_info", got["info"].append, SENSOR_QOS)
    node.create_subscription(JointState, "/joint_states", got["js"].append, RELIABLE_QOS)
    node.create_subscription(JointState, "/wx250s/joint_states", got["ixs"].append, RELIABLE_QOS)
    node.create_subscription(Bool, "/success", got["ok"].append, RELIABLE_QOS)
    traj_pub = node.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", RELIABLE_QOS)
    grip_pub = node.create_publisher(Float64, "/sim_node/gripper_command", RELIABLE_QOS)
    grip_traj_pub = node.create_publisher(JointTrajectory, "/gripper_controller/joint_trajectory",
                                          RELIABLE_QOS)
    reset = node.create_client(Trigger, "/sim_node/reset")
    proc = start_node(repo_root, SIM, "robot:=widowx", "task:=lift_cube",
                      "interbotix_robot_name:=wx250s")
    try:
        assert spin_until(ex, lambda: all(got[k] for k in ("img", "info", "js", "ixs", "ok")), 60, proc)
        img = got["img"][-1]
        assert (img.width, img.height, img.encoding) == (256, 256, "rgb8")
        assert img.header.frame_id == "camera_color_optical_frame"
        rgb = np.frombuffer(bytes(img.data), np.uint8).reshape(256, 256, 3)
        assert rgb.std() > 10
        info = got["info"][-1]
        assert info.k[2] == pytest.approx(127.5) and info.k[0] > 100
        js = got["js"][-1]
        assert list(js.name[:6]) == ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]
        assert got["ok"][-1].data is False

        def waist() -> float:
            return float(got["js"][-1].position[0])

        assert abs(waist()) < 0.05
        msg = JointTrajectory(joint_names=["waist"])
        msg.points = [JointTrajectoryPoint(positions=[0.5], time_from_start=Duration(sec=1))]
        grip = JointTrajectory(joint_names=["left_finger"])
        grip.points = [JointTrajectoryPoint(positions=[0.015], time_from_start=Duration(nanosec=200_000_000))]
        spin_until(ex, lambda: traj_pub.get_subscription_count() > 0
                    and grip_traj_pub.get_subscription_count() > 0, 10, proc)
        traj_pub.publish(msg)
        grip_traj_pub.publish(grip)  # the gripper controller's topic, at the same time
        assert spin_until(ex, lambda: abs(waist() - 0.5) < 0.03, 30, proc), f"waist at {waist()}"
        assert got["js"][-1].position[6] < 0.02  # finger closed (metres)
        grip_pub.publish(Float64(data=1.0))
        assert spin_until(ex, lambda: got["js"][-1].position[6] > 0.035, 20, proc)

        assert reset.wait_for_service(timeout_sec=10)
        fut = reset.call_async(Trigger.Request())
        assert spin_until(ex, fut.done, 20, proc)
        assert fut.result().success
        got["js"].clear()
        assert spin_until(ex, lambda: bool(got["js"]) and abs(waist()) < 0.05, 20, proc)
    finally:
        stop_node(proc)


def test_fr3_depth_and_bad_trajectory(ros: Any, repo_root: Path) -> None:
    node, ex = ros
    got: dict[str, list[Any]] = {"depth": [], "dinfo": [], "js": []}
    node.create_subscription(Image, "/camera/depth/image_raw", got["depth"].append, SENSOR_QOS)
    node.create_subscription(CameraInfo, "/camera/depth/camera_info", got["dinfo"].append, SENSOR_QOS)
    node.create_subscription(JointState, "/joint_states", got["js"].append, RELIABLE_QOS)
    traj_pub = node.create_publisher(JointTrajectory, "/fr3_arm_controller/joint_trajectory", RELIABLE_QOS)
    proc = start_node(repo_root, SIM, "robot:=fr3", "arm_controller:=fr3_arm_controller",
                      "stamp_source:=sim")
    try:
        assert spin_until(ex, lambda: all(got[k] for k in ("depth", "dinfo", "js")), 60, proc)
        d = got["depth"][-1]
        assert d.encoding == "32FC1" and (d.width, d.height) == (256, 256)
        depth = np.frombuffer(bytes(d.data), np.float32).reshape(256, 256)
        assert 0.5 < float(np.median(depth[depth > 0])) < 3.0
        assert len(got["js"][-1].name) == 9
        # Unknown joint: rejected, the arm holds its pose.
        q0 = np.array(got["js"][-1].position[:7])
        bad = JointTrajectory(joint_names=["nope"])
        bad.points = [JointTrajectoryPoint(positions=[1.0], time_from_start=Duration(sec=1))]
        spin_until(ex, lambda: traj_pub.get_subscription_count() > 0, 10, proc)
        traj_pub.publish(bad)
        good = JointTrajectory(joint_names=["fr3_joint1"])
        good.points = [JointTrajectoryPoint(positions=[0.4], time_from_start=Duration(sec=1))]
        traj_pub.publish(good)
        assert spin_until(ex, lambda: abs(got["js"][-1].position[0] - 0.4) < 0.03, 30, proc)
        np.testing.assert_allclose(np.array(got["js"][-1].position[1:7]), q0[1:], atol=0.03)
    finally:
        stop_node(proc)


def test_widowx_controller_drives_the_sim(ros: Any, repo_root: Path) -> None:
    """sim_node + the real widowx_controller_node (config/widowx.yaml): PolicyActions move the arm."""
    from tracevla_ros.control.kinematics import load_kinematics
    from tracevla_ros.msg import PolicyAction

    node, ex = ros
    kin = load_kinematics("widowx250s")
    js: list[JointState] = []
    node.create_subscription(JointState, "/joint_states", js.append, RELIABLE_QOS)
    act_pub = node.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
    sim = start_node(repo_root, SIM, "task:=lift_cube", params_file="config/widowx.yaml")
    ctl = start_node(repo_root, "tracevla_ros.nodes.widowx_controller_node",
                     params_file="config/widowx.yaml")
    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0, 60, sim)
        time.sleep(1.0)  # let the controller receive joint states
        spin_until(ex, lambda: False, 0.5, ctl)
        p0, _ = kin.fk(np.array(js[-1].position[:6]))

        def send(row: list[float]) -> None:
            msg = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7, values=row,
                               policy_name="test")
            msg.header.frame_id = "wx250s/base_link"
            msg.header.stamp = node.get_clock().now().to_msg()
            act_pub.publish(msg)

        for _ in range(5):  # 5 steps of +2 cm in x, closing the gripper
            send([0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
            spin_until(ex, lambda: False, 0.3, ctl)
        spin_until(ex, lambda: False, 1.0, sim)
        p1, _ = kin.fk(np.array(js[-1].position[:6]))
        assert p1[0] - p0[0] > 0.05, f"ee moved {p1 - p0}"
        assert abs(p1[1] - p0[1]) < 0.02 and abs(p1[2] - p0[2]) < 0.03
        assert js[-1].position[6] < 0.02  # gripper closed via /gripper_controller/joint_trajectory
    finally:
        stop_node(ctl)
        stop_node(sim)


def test_franka_controller_and_gripper_actions_drive_the_sim(ros: Any, repo_root: Path,
                                                            standin_env: dict[str, str]) -> None:
    """sim_node (FR3) + franka_controller_node: arm via trajectories, hand via Move/Grasp actions."""
    from tracevla_ros.control.kinematics import load_kinematics
    from tracevla_ros.msg import PolicyAction

    env = repo_env(repo_root, standin_env)
    node, ex = ros
    kin = load_kinematics("fr3")
    js: list[JointState] = []
    node.create_subscription(JointState, "/joint_states", js.append, RELIABLE_QOS)
    act_pub = node.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
    sim = start_node(repo_root, SIM, params_file="config/fr3.yaml", env=env)
    ctl = start_node(repo_root, "tracevla_ros.nodes.franka_controller_node",
                     params_file="config/fr3.yaml", env=env)
    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0, 60, sim)
        spin_until(ex, lambda: False, 1.5, ctl)
        p0, _ = kin.fk(np.array(js[-1].position[:7]))
        assert js[-1].position[7] > 0.035  # open at start

        for _ in range(5):  # 5 steps of -2 cm in z, closing the hand (Grasp action)
            msg = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                               values=[0.0, 0.0, -0.02, 0.0, 0.0, 0.0, 0.0], policy_name="test")
            msg.header.frame_id = "fr3_link0"
            msg.header.stamp = node.get_clock().now().to_msg()
            act_pub.publish(msg)
            spin_until(ex, lambda: False, 0.3, ctl)
        spin_until(ex, lambda: False, 1.5, sim)
        p1, _ = kin.fk(np.array(js[-1].position[:7]))
        assert p0[2] - p1[2] > 0.05, f"ee moved {p1 - p0}"
        assert js[-1].position[7] < 0.005, "hand did not close on the Grasp goal"
    finally:
        stop_node(ctl)
        stop_node(sim)


def test_interbotix_group_and_single_commands(ros: Any, repo_root: Path,
                                              standin_env: dict[str, str]) -> None:
    env = repo_env(repo_root, standin_env)
    node, ex = ros
    js: list[JointState] = []
    node.create_subscription(JointState, "/wx250s/joint_states", js.append, RELIABLE_QOS)
    sim = start_node(repo_root, SIM, params_file="config/widowx.yaml", env=env)
    pub_code = (
        "import time, rclpy\n"
        "from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand\n"
        "rclpy.init(); n = rclpy.create_node('ixs_pub')\n"
        "g = n.create_publisher(JointGroupCommand, '/wx250s/commands/joint_group', 10)\n"
        "s = n.create_publisher(JointSingleCommand, '/wx250s/commands/joint_single', 10)\n"
        "end = time.monotonic() + 15\n"
        "while time.monotonic() < end:\n"
        "    g.publish(JointGroupCommand(name='arm', cmd=[-0.4, -0.6, 0.6, 0.0, 1.2, 0.3]))\n"
        "    s.publish(JointSingleCommand(name='gripper', cmd=-250.0))\n"
        "    time.sleep(0.1)\n"
    )
    pub = None
    try:
        assert spin_until(ex, lambda: bool(js), 60, sim)
        pub = subprocess.Popen([sys.executable, "-c", pub_code], env=env)
        assert spin_until(ex, lambda: abs(js[-1].position[0] + 0.4) < 0.03
                           and abs(js[-1].position[5] - 0.3) < 0.05 and js[-1].position[6] < 0.02, 30, sim), \
            f"joints at {list(js[-1].position)}"
    finally:
        if pub is not None:
            stop_node(pub)  # type: ignore[arg-type]
        stop_node(sim)


def test_widowx_controller_interbotix_interface_drives_the_sim(ros: Any, repo_root: Path,
                                                               standin_env: dict[str, str]) -> None:
    """widowx_controller_node with interface=interbotix_topic (JointGroupCommand/JointSingleCommand
    over the stand-in interbotix_xs_msgs) moves the simulated arm like the xs_sdk would, and
    sends nothing on the trajectory topic."""
    from tracevla_ros.control.kinematics import load_kinematics
    from tracevla_ros.msg import PolicyAction

    env = repo_env(repo_root, standin_env)
    node, ex = ros
    kin = load_kinematics("widowx250s")
    js: list[JointState] = []
    traj: list[JointTrajectory] = []
    node.create_subscription(JointState, "/wx250s/joint_states", js.append, RELIABLE_QOS)
    node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", traj.append,
                             RELIABLE_QOS)
    act_pub = node.create_publisher(PolicyAction, "/action", RELIABLE_QOS)
    sim = start_node(repo_root, SIM, params_file="config/widowx.yaml", env=env)
    # the override goes into the node's own section of a copy of the file (see node_procs)
    ctl = start_node(repo_root, "tracevla_ros.nodes.widowx_controller_node",
                     "interface:=interbotix_topic", params_file="config/widowx.yaml", env=env)
    try:
        assert spin_until(ex, lambda: bool(js) and act_pub.get_subscription_count() > 0, 60, sim)
        spin_until(ex, lambda: False, 1.5, ctl)
        p0, _ = kin.fk(np.array(js[-1].position[:6]))
        for _ in range(5):  # 5 steps of +1 cm in x
            msg = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                               values=[0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], policy_name="test")
            msg.header.frame_id = "wx250s/base_link"
            msg.header.stamp = node.get_clock().now().to_msg()
            act_pub.publish(msg)
            spin_until(ex, lambda: False, 0.3, ctl)
        spin_until(ex, lambda: False, 1.0, sim)
        p1, _ = kin.fk(np.array(js[-1].position[:6]))
        assert 0.035 < p1[0] - p0[0] < 0.065, f"ee moved {p1 - p0}"
        assert abs(p1[1] - p0[1]) < 0.01 and abs(p1[2] - p0[2]) < 0.01
        assert not traj, "the interbotix interface published on the trajectory topic"
    finally:
        stop_node(ctl)
        stop_node(sim)


def test_oracle_prompt_marks_the_target_of_the_distractor_task(ros: Any, repo_root: Path) -> None:
    """oracle_prompt: mask -> a VisualPrompt per camera frame, stamped like that frame, whose
    mask is the target cube (not its identical twin) as the simulator's segmentation sees it."""
    from tracevla_ros.msg import VisualPrompt
    from tracevla_ros.nodes.common import PROMPT_QOS
    from tracevla_ros.ros_prompt import prompt_from_msg
    from tracevla_ros.sim.env import SimEnv

    node, ex = ros
    imgs: list[Image] = []
    prompts: list[Any] = []
    node.create_subscription(Image, "/camera/image_raw", imgs.append, SENSOR_QOS)
    node.create_subscription(VisualPrompt, "/visual_prompt", prompts.append, PROMPT_QOS)
    proc = start_node(repo_root, SIM, "robot:=widowx", "task:=lift_target_cube", "seed:=7",
                      "oracle_prompt:=mask")
    try:
        assert spin_until(ex, lambda: len(prompts) >= 3 and len(imgs) >= 3, 60, proc)
    finally:
        stop_node(proc)

    def ns(m: Any) -> int:
        return m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec

    # stamped exactly like its frame (the last prompts' frames may not have arrived yet)
    assert {ns(p) for p in prompts[:-2]} <= {ns(m) for m in imgs}
    env = SimEnv(robot="widowx", task="lift_target_cube", seed=7)
    try:
        target, _ = env.masks()
        name = env.task.target
        env.task.target = "cube_b" if name == "cube" else "cube"  # the twin's pixels
        twin, _ = env.masks()
        env.task.target = name
    finally:
        env.close()
    got = prompt_from_msg(prompts[-1])
    assert got is not None and got.kinds() == ("mask",) and got.mask is not None
    assert got.mask.shape == target.shape == (256, 256)
    inter, union = (got.mask & target).sum(), (got.mask | target).sum()
    assert target.sum() > 20 and inter / union > 0.8, (inter, union)
    assert twin.sum() > 20 and not (got.mask & twin).any()
