"""Every custom message type crosses a real DDS graph between two processes."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from tracevla_ros.msg import (  # noqa: E402
    AffordancePoints,
    PolicyAction,
    Trace3D,
    VisualPrompt,
    VisualTrace,
)

pytestmark = pytest.mark.ros

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _samples() -> dict[str, object]:
    m, n = 5, 6
    rng = np.random.default_rng(0)
    vt = VisualTrace(valid=True, num_points=m, length=n, image_width=256, image_height=256,
                     points=rng.uniform(0, 255, m * n * 2).astype(np.float32).tolist(),
                     visible=[bool(b) for b in rng.integers(0, 2, m * n)],
                     control_rate_hz=5.0, tracker="lk")
    vt.header.frame_id = "camera_color_optical_frame"
    vt.header.stamp.sec, vt.header.stamp.nanosec = 12, 345
    vt.step_stamps = [type(vt.header.stamp)(sec=12, nanosec=i) for i in range(n)]
    k, ln = 400, 32
    t3 = Trace3D(coordinates=Trace3D.COORDS_PIXEL_DEPTH, num_keypoints=k, length=ln,
                 points=rng.normal(size=k * ln * 3).astype(np.float32).tolist(),
                 valid=[True] * (k * ln), image_width=640, image_height=480,
                 instruction="push the block into the purple region")
    pa = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                      values=[0.01, -0.02, 0.0, 0.0, 0.0, 0.1, 1.0], trace_used=True,
                      inference_latency_s=float(np.float32(0.034)), policy_name="tracevla-7b")
    pa.header.frame_id = "wx250s/base_link"
    mask = Image(height=4, width=6, encoding="mono8", step=6, data=bytes(range(24)))
    vp = VisualPrompt(image_width=256, image_height=256, points=[0.5, 0.25],
                      lines=[0.1, 0.2, 0.3, 0.4], boxes=[0.1, 0.1, 0.9, 0.8], mask=mask,
                      labels=["cup", "path", "plate"])
    ap = AffordancePoints(instruction="open the drawer", reasoning="The handle is ...",
                          points=[0.4, 0.6, 0.45, 0.61], scores=[0.9, 0.7])
    return {"VisualTrace": vt, "Trace3D": t3, "PolicyAction": pa, "VisualPrompt": vp,
            "AffordancePoints": ap}


def test_every_interface_round_trips_through_another_process(repo_root) -> None:
    proc = subprocess.Popen([sys.executable, str(repo_root / "test" / "support" / "echo_node.py"), "--seconds", "60"],
                            cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = Node("itest_sender", context=ctx)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "echo ready"
        samples = _samples()
        received: dict[str, object] = {}
        types = {"VisualTrace": VisualTrace, "Trace3D": Trace3D, "PolicyAction": PolicyAction,
                 "VisualPrompt": VisualPrompt, "AffordancePoints": AffordancePoints}
        pubs = {}
        for name, t in types.items():
            pubs[name] = node.create_publisher(t, f"/itest/{name}", QOS)
            node.create_subscription(t, f"/itest/{name}/echo",
                                     lambda msg, name=name: received.__setitem__(name, msg), QOS)
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        deadline = time.monotonic() + 30.0
        last_pub = 0.0
        while len(received) < len(types) and time.monotonic() < deadline:
            if time.monotonic() - last_pub > 0.5:
                for name in types:
                    if name not in received:
                        pubs[name].publish(samples[name])
                last_pub = time.monotonic()
            executor.spin_once(timeout_sec=0.05)
        assert sorted(received) == sorted(types), f"no echo for {set(types) - set(received)}"
        for name in types:
            assert received[name] == samples[name], name
        # Spot-check layouts survived serialisation exactly.
        vt = received["VisualTrace"]
        assert np.allclose(np.asarray(vt.points, np.float32).reshape(5, 6, 2),
                           np.asarray(samples["VisualTrace"].points, np.float32).reshape(5, 6, 2))
        assert bytes(received["VisualPrompt"].mask.data) == bytes(range(24))
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.kill()
        proc.wait(timeout=10)
