"""tracegen_node over real DDS: RGB-D + CameraInfo + instruction -> Trace3D, waypoints and
gripper commands in order; mismatched RGB/depth -> nothing published."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from tracegen_ros.execution import FixedTracePredictor  # noqa: E402
from tracegen_ros.nodes.tracegen_node import TraceGenNode  # noqa: E402
from tracegen_ros.ros_convert import trace_from_msg  # noqa: E402
from tracevla_ros.control.kinematics import load_kinematics  # noqa: E402
from tracevla_ros.msg import PolicyAction, Trace3D  # noqa: E402
from tracevla_ros.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS  # noqa: E402
from tracevla_ros.robots import get_robot  # noqa: E402
from tracevla_ros.ros_image import numpy_to_image  # noqa: E402

pytestmark = pytest.mark.ros

T_BASE_CAM = [0.6, 0.48, -0.64, 1.2, 0.8, -0.36, 0.48, -0.6, 0.0, -0.8, -0.6, 0.9, 0.0, 0.0, 0.0, 1.0]


def _pick_trace(ee0: np.ndarray) -> np.ndarray:
    import test_tracegen_execution as tex  # the synthetic scene of the execution tests

    tex.EE0 = ee0
    pts = [ee0, [0.50, 0.10, 0.025], [0.50, 0.10, 0.16], [0.50, -0.10, 0.16], [0.50, -0.10, 0.11],
           [0.50, -0.10, 0.16]]
    path = np.vstack([np.linspace(a, b, 7)[:-1] for a, b in zip(pts[:-1], pts[1:])]
                     + [np.array(pts[-1])[None]] * 2)
    return tex._scene_trace(path)


def _run(depth_shape: tuple[int, int], seconds: float = 6.0) -> dict[str, list[Any]]:
    spec = get_robot("fr3")
    q = np.asarray(spec.home_q, float)
    ee0 = load_kinematics(spec).fk(q)[0]
    traj = _pick_trace(ee0)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = TraceGenNode(predictor=FixedTracePredictor(traj), context=ctx, parameter_overrides=[
        Parameter("predictor", value="no_motion"), Parameter("T_base_cam", value=T_BASE_CAM),
        Parameter("waypoint_speed", value=50.0), Parameter("timeout_margin_s", value=0.2),
        Parameter("gripper_wait_s", value=0.2)])
    io = Node("tracegen_io", context=ctx)
    got: dict[str, list[Any]] = {"trace": [], "wp": [], "action": [], "order": []}
    io.create_subscription(Trace3D, "trace3d", lambda m: got["trace"].append(m), RELIABLE_QOS)
    io.create_subscription(PoseArray, "ee_waypoints",
                           lambda m: (got["wp"].append(m), got["order"].append("wp")), RELIABLE_QOS)
    io.create_subscription(PolicyAction, "action",
                           lambda m: (got["action"].append(m), got["order"].append(
                               "open" if m.values[6] > 0.5 else "close")), RELIABLE_QOS)
    pubs = {n: io.create_publisher(t, n, SENSOR_QOS) for n, t in
            (("image", Image), ("depth", Image), ("camera_info", CameraInfo),
             ("joint_states", JointState))}
    io.create_publisher(String, "instruction", LATCHED_QOS).publish(String(data="put the ball in the box"))
    client = io.create_client(Trigger, "tracegen_node/predict")
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    # depth consistent with the trace's step 0 (the execution anchors traces to the sensor)
    depth = np.full((256, 256), 2.5, np.float32)
    ui, vi = np.round(traj[:, 0, 0]).astype(int), np.round(traj[:, 0, 1]).astype(int)
    depth[vi, ui] = traj[:, 0, 2]
    if depth_shape != depth.shape:
        depth = np.full(depth_shape, 1.2, np.float32)
    f = 128 / np.tan(np.radians(25))
    info = CameraInfo(width=256, height=256, k=[f, 0.0, 127.5, 0.0, f, 127.5, 0.0, 0.0, 1.0])
    js = JointState(name=list(spec.ros_joint_names) + [spec.gripper_joints[0]],
                    position=list(q) + [spec.gripper_open])
    end = time.monotonic() + seconds
    last, asked = 0.0, False
    try:
        while time.monotonic() < end:
            if time.monotonic() - last > 0.1:
                last = time.monotonic()
                stamp = io.get_clock().now().to_msg()
                img = numpy_to_image(np.full((256, 256, 3), 90, np.uint8), "rgb8")
                dep = numpy_to_image(depth, "32FC1")
                for m in (img, dep, info):
                    m.header.stamp = stamp
                    m.header.frame_id = "camera_color_optical_frame"
                pubs["image"].publish(img)
                pubs["depth"].publish(dep)
                pubs["camera_info"].publish(info)
                pubs["joint_states"].publish(js)
                if not asked and time.monotonic() > end - seconds + 0.5 and client.service_is_ready():
                    client.call_async(Trigger.Request())
                    asked = True
            ex.spin_once(timeout_sec=0.02)
    finally:
        node.close()
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()
        rclpy.try_shutdown(context=ctx)
    got["traj"] = [traj]
    return got


def test_trace_waypoints_and_gripper_in_order() -> None:
    got = _run((256, 256))
    assert len(got["trace"]) == 1
    msg = got["trace"][0]
    assert msg.coordinates == Trace3D.COORDS_PIXEL_DEPTH and (msg.num_keypoints, msg.length) == (400, 32)
    assert msg.header.frame_id == "camera_color_optical_frame" and msg.instruction == "put the ball in the box"
    np.testing.assert_allclose(trace_from_msg(msg), got["traj"][0], atol=1e-5)
    assert got["order"] == ["wp", "close", "wp", "open", "wp"]
    assert all(m.header.frame_id == "fr3_link0" for m in got["wp"])
    lowest = min(p.position.z for m in got["wp"] for p in m.poses)
    assert lowest == pytest.approx(0.025, abs=1e-3)
    q = got["wp"][0].poses[0].orientation  # top-down home orientation kept
    assert abs(q.w) < 0.05 and abs(abs(q.x) - 1.0) < 0.05
    assert got["action"][0].action_space == "ee_delta_7d" and list(got["action"][0].values[:6]) == [0.0] * 6


def test_depth_size_mismatch_publishes_nothing() -> None:
    got = _run((128, 128), seconds=2.5)
    assert got["trace"] == [] and got["wp"] == [] and got["action"] == []


def test_missing_checkpoint_is_a_config_error(tmp_path) -> None:
    from tracevla_ros.config import ConfigError

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(ConfigError, match="checkpoint|tracegen_ros.predict"):
            TraceGenNode(context=ctx, parameter_overrides=[
                Parameter("checkpoint", value=str(tmp_path / "nope")),
                Parameter("T_base_cam", value=T_BASE_CAM)])
        with pytest.raises(ConfigError, match="T_base_cam"):
            TraceGenNode(predictor=FixedTracePredictor(np.zeros((400, 32, 3))), context=ctx,
                         parameter_overrides=[Parameter("predictor", value="no_motion")])
    finally:
        rclpy.try_shutdown(context=ctx)
