"""tracevla-demo --robot fr3: the TraceGen loop (sim RGB-D -> tracegen_node -> franka_controller_node
IK + safety -> sim) end to end, with the oracle trace (no checkpoint needed). The loop is
tracegen_ros/demo.py, found through the ``tracevla_ros.demos`` entry point (``plugin_env``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader

pytestmark = [pytest.mark.ros, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory, plugin_env: dict[str, str]) -> Path:
    out = tmp_path_factory.mktemp("demo_fr3")
    r = subprocess.run([sys.executable, "-m", "tracevla_ros.tools.demo", "--robot", "fr3",
                        "--task", "put_ball_in_box", "--policy", "tracegen_oracle", "--seed", "100002",
                        "--rounds", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=280, env=plugin_env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Traceback" not in r.stderr, r.stderr[-4000:]
    return out


def test_summary(demo_out: Path) -> None:
    s = json.loads((demo_out / "summary.json").read_text())
    assert s["robot"] == "fr3" and s["policy"] == "tracegen_oracle" and "oracle" in s["policy_note"]
    assert s["traces"] >= 1 and s["arm_commands"] >= 2
    assert isinstance(s["success"], bool) and "gripper_command" in s["gripper_interface"]
    assert s["latency"]["camera_to_trace"]["n"] >= 1
    assert s["outputs"]["overlay_frames"] > 10
    for topic in ("/camera/image_raw", "/camera/depth/image_raw", "/trace3d", "/ee_waypoints",
                  "/fr3_arm_controller/joint_trajectory"):
        assert s["topics"][topic]["count"] > 0, topic


def test_bag_trace_and_waypoints(demo_out: Path) -> None:
    from geometry_msgs.msg import PoseArray
    from sensor_msgs.msg import Image

    from tracevla_ros.msg import Trace3D

    types = {"/camera/image_raw": Image, "/trace3d": Trace3D, "/ee_waypoints": PoseArray}
    got: dict[str, list[object]] = {t: [] for t in types}
    with Reader(demo_out / "bag") as reader:
        conns = [c for c in reader.connections if c.topic in types]
        for c, _t, raw in reader.messages(connections=conns):
            got[c.topic].append(deserialize_message(bytes(raw), types[c.topic]))
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got["/camera/image_raw"]}  # type: ignore[attr-defined]
    trace = got["/trace3d"][0]
    assert (trace.num_keypoints, trace.length, trace.coordinates) == (400, 32, Trace3D.COORDS_PIXEL_DEPTH)  # type: ignore[attr-defined]
    assert (trace.header.stamp.sec, trace.header.stamp.nanosec) in stamps  # type: ignore[attr-defined]
    wps = got["/ee_waypoints"]
    assert all(m.header.frame_id == "fr3_link0" for m in wps)  # type: ignore[attr-defined]
    # the first segment ends at the ball (radius 2.5 cm on the table): the grasp
    assert min(p.position.z for p in wps[0].poses) < 0.05  # type: ignore[attr-defined]
