"""trace_viz_node over real DDS: a 2D trace becomes one LINE_STRIP per point (on the table
without depth, at the depth with it), a Trace3D is drawn directly."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from tracevla_ros.camera.base import CameraIntrinsics  # noqa: E402
from tracevla_ros.msg import Trace3D, VisualTrace  # noqa: E402
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS  # noqa: E402
from tracevla_ros.nodes.trace_viz_node import TraceVizNode  # noqa: E402
from tracevla_ros.ros_image import camera_info_msg, numpy_to_image  # noqa: E402
from tracevla_ros.viz.lift import CameraExtrinsic  # noqa: E402

pytestmark = pytest.mark.ros

INTR = CameraIntrinsics(width=256, height=256, fx=309.0, fy=309.0, cx=127.5, cy=127.5)
EXT = CameraExtrinsic.from_xyz_quat((0.0, -0.35, 0.45), (-0.84426, 0.336414, -0.154431, 0.387558))
FRAME = "camera_color_optical_frame"


def _table_trace(stamp: Any) -> VisualTrace:
    table = np.array([[[0.30, 0.00, 0.0], [0.31, 0.01, 0.0], [0.32, 0.02, 0.0]],
                      [[0.25, -0.05, 0.0], [0.25, -0.06, 0.0], [0.25, -0.07, 0.0]]])
    p = (table.reshape(-1, 3) - EXT.translation) @ EXT.rotation
    uv = np.stack([INTR.fx * p[:, 0] / p[:, 2] + INTR.cx, INTR.fy * p[:, 1] / p[:, 2] + INTR.cy], 1)
    msg = VisualTrace(valid=True, num_points=2, length=3, image_width=256, image_height=256,
                      points=uv.astype(np.float32).ravel().tolist(), visible=[True] * 5 + [False])
    msg.header.stamp, msg.header.frame_id = stamp, FRAME
    return msg


def _spin(publish: Any, topic: str, seconds: float = 4.0) -> list[MarkerArray]:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = TraceVizNode(context=ctx)
    io = Node("viz_io", context=ctx)
    got: list[MarkerArray] = []
    io.create_subscription(MarkerArray, topic, got.append, RELIABLE_QOS)
    pubs = {"trace": io.create_publisher(VisualTrace, "trace", RELIABLE_QOS),
            "trace3d": io.create_publisher(Trace3D, "trace3d", RELIABLE_QOS),
            "depth": io.create_publisher(Image, "depth", SENSOR_QOS),
            "camera_info": io.create_publisher(type(camera_info_msg(INTR)), "camera_info", SENSOR_QOS)}
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not got:
            publish(pubs, io.get_clock().now().to_msg())
            ex.spin_once(timeout_sec=0.05)
            ex.spin_once(timeout_sec=0.05)
    finally:
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return got


def test_2d_trace_without_depth_lies_on_the_table() -> None:
    def publish(p: dict, stamp: Any) -> None:
        p["camera_info"].publish(camera_info_msg(INTR))
        p["trace"].publish(_table_trace(stamp))

    got = _spin(publish, "trace_markers")
    assert got, "no MarkerArray on trace_markers"
    markers = got[0].markers
    assert markers[0].action == Marker.DELETEALL
    lines = [m for m in markers if m.type == Marker.LINE_STRIP]
    heads = [m for m in markers if m.type == Marker.SPHERE]
    assert len(lines) == 2 and len(heads) == 2  # point 1 lost its last step: 2-step line
    assert [len(m.points) for m in lines] == [3, 2]
    assert all(m.header.frame_id == FRAME for m in markers)
    pts = np.array([[q.x, q.y, q.z] for q in lines[0].points])
    base = pts @ EXT.rotation.T + EXT.translation
    assert np.allclose(base[:, 2], 0.0, atol=1e-5)
    assert np.allclose(base[0], [0.30, 0.00, 0.0], atol=1e-4)
    assert lines[0].color.r == 1.0 and lines[0].color.a == 1.0  # point 0: hue 0 = red


def test_2d_trace_with_depth_uses_it() -> None:
    depth = np.full((256, 256), 0.8, np.float32)

    def publish(p: dict, stamp: Any) -> None:
        p["camera_info"].publish(camera_info_msg(INTR))
        img = numpy_to_image(depth, "32FC1")
        img.header.stamp, img.header.frame_id = stamp, FRAME
        p["depth"].publish(img)
        p["trace"].publish(_table_trace(stamp))

    got = _spin(publish, "trace_markers")
    lines = [m for m in got[0].markers if m.type == Marker.LINE_STRIP]
    assert lines and all(abs(q.z - 0.8) < 1e-6 for m in lines for q in m.points)


def test_metric_trace3d_is_drawn_directly() -> None:
    def publish(p: dict, stamp: Any) -> None:
        msg = Trace3D(coordinates=Trace3D.COORDS_METRIC_XYZ, num_keypoints=8, length=2,
                      points=np.arange(8 * 2 * 3, dtype=np.float32).tolist(), valid=[True] * 16)
        msg.header.stamp, msg.header.frame_id = stamp, "fr3_link0"
        p["trace3d"].publish(msg)

    got = _spin(publish, "trace3d_markers")
    lines = [m for m in got[0].markers if m.type == Marker.LINE_STRIP]
    assert len(lines) == 2  # trace3d_stride 4 of 8 keypoints
    assert lines[1].header.frame_id == "fr3_link0"
    assert [lines[1].points[0].x, lines[1].points[0].y, lines[1].points[0].z] == [24.0, 25.0, 26.0]


def test_publish_static_tf_publishes_the_camera_extrinsic_or_warns() -> None:
    """publish_static_tf (set by the launch files without tf2_ros): base -> camera on
    /tf_static, latched; where tf2_msgs is not installed the node still runs (one warning)."""
    from rclpy.parameter import Parameter

    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        TFMessage = None
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = TraceVizNode(context=ctx, parameter_overrides=[Parameter("publish_static_tf", value=True)])
    try:
        if TFMessage is None:
            assert not node.static_tf_published  # warned, nothing else changes
            return
        assert node.static_tf_published
        io = Node("tf_io", context=ctx)
        from tracevla_ros.nodes.common import LATCHED_QOS

        got: list[Any] = []
        io.create_subscription(TFMessage, "/tf_static", got.append, LATCHED_QOS)  # after: latched
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(io)
        end = time.monotonic() + 10.0
        while time.monotonic() < end and not got:
            ex.spin_once(timeout_sec=0.1)
        ex.shutdown()
        io.destroy_node()
        assert got, "nothing on /tf_static"
        t = got[0].transforms[0]
        assert (t.header.frame_id, t.child_frame_id) == (node.cfg.base_frame, FRAME)
        assert t.transform.translation.y == pytest.approx(-0.35)
        assert t.transform.rotation.w == pytest.approx(0.387558)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


_STATIC_TF_SCRIPT = """
import sys, time
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from tf2_msgs.msg import TFMessage
from tracevla_ros.nodes.common import LATCHED_QOS
from tracevla_ros.nodes.trace_viz_node import TraceVizNode

rclpy.init()
node = TraceVizNode(parameter_overrides=[Parameter("publish_static_tf", value=True)])
io = Node("tf_io")
got = []
io.create_subscription(TFMessage, "/tf_static", got.append, LATCHED_QOS)  # after: latched
ex = SingleThreadedExecutor()
ex.add_node(node)
ex.add_node(io)
end = time.monotonic() + 30.0
while time.monotonic() < end and not got:
    ex.spin_once(timeout_sec=0.1)
if not got:
    sys.exit("nothing on /tf_static")
t = got[0].transforms[0]
print(node.static_tf_published, t.header.frame_id, t.child_frame_id, t.transform.translation.y,
      t.transform.rotation.w, node.cfg.base_frame)
"""


def test_static_tf_fallback_publishes_with_tf2_msgs(standin_env: dict[str, str]) -> None:
    """Where tf2_msgs is installed (here: the test-only stand-in, field for field), the
    fallback really publishes the camera extrinsic on /tf_static, latched."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _STATIC_TF_SCRIPT], env=standin_env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    published, parent, child, y, w, base = r.stdout.split()[-6:]
    assert published == "True" and parent == base and child == FRAME
    assert float(y) == pytest.approx(-0.35) and float(w) == pytest.approx(0.387558)
