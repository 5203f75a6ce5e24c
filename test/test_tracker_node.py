"""tracker_node: parameters from the YAML, real DDS round trip, bad input handling."""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from tracevla_ros.config import load_node_config  # noqa: E402
from tracevla_ros.msg import VisualTrace  # noqa: E402
from tracevla_ros.nodes.common import SENSOR_QOS, RELIABLE_QOS, sec_to_stamp, stamp_to_sec  # noqa: E402
from tracevla_ros.nodes.tracker_node import TrackerNode  # noqa: E402
from tracevla_ros.tracking import TrackerConfig, encode_image  # noqa: E402
from tracevla_ros.tracking.synthetic import SyntheticScene  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def context() -> Iterator[object]:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def _image(arr: np.ndarray, t: float, encoding: str | None = None) -> Image:
    data, enc, step = encode_image(arr)
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding or enc, step=step)
    msg.header.stamp = sec_to_stamp(t)
    msg.header.frame_id = "camera_optical"
    msg.data = data
    return msg


@pytest.mark.parametrize("robot", ["widowx", "fr3"])
def test_parameters_load_from_the_robot_yaml(repo_root: object, robot: str) -> None:
    path = f"{repo_root}/config/{robot}.yaml"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", path])
    try:
        node = TrackerNode(context=ctx)
        try:
            expected = load_node_config(TrackerConfig, path, "tracker_node")
            assert node.config == expected
            assert node.config.grid_size > 0  # preset resolved
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_dds_round_trip_publishes_valid_traces_with_camera_stamps(context: object) -> None:
    scene = SyntheticScene.default(128, 128)
    overrides = [Parameter("preset", value="paper"), Parameter("grid_size", value=20),
                 Parameter("control_rate_hz", value=10.0), Parameter("observe_rate_hz", value=0.0)]
    tracker = TrackerNode(context=context, parameter_overrides=overrides)
    peer = rclpy.create_node("camera_and_policy", context=context)
    cam = peer.create_publisher(Image, "image", SENSOR_QOS)
    traces: list[VisualTrace] = []
    overlays: list[Image] = []
    peer.create_subscription(VisualTrace, "trace", traces.append, RELIABLE_QOS)
    peer.create_subscription(Image, "image_trace", overlays.append, SENSOR_QOS)
    sent: list[float] = []
    frame_dt = 0.2  # scene time between camera frames (the scene moves ~5 px per frame)

    def publish_frame() -> None:
        t = 1000.0 + len(sent) * frame_dt
        sent.append(t)
        cam.publish(_image(scene.render(t - 1000.0)[0], t))

    peer.create_timer(0.1, publish_frame)  # camera at the policy rate
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(tracker)
    executor.add_node(peer)
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and sum(t.valid for t in traces) < 3:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        tracker.close()
        tracker.destroy_node()
        peer.destroy_node()
    valid = [t for t in traces if t.valid]
    assert len(valid) >= 3, f"{len(traces)} traces, {len(valid)} valid"
    sent_set = {round(s, 6) for s in sent}
    cfg = tracker.config
    for tr in valid:
        stamp = stamp_to_sec(tr.header.stamp)
        assert round(stamp, 6) in sent_set
        assert tr.header.frame_id == "camera_optical"
        assert (tr.num_points, tr.length) == (cfg.num_points, cfg.history)
        assert len(tr.points) == cfg.num_points * cfg.history * 2
        assert len(tr.visible) == cfg.num_points * cfg.history
        steps = [stamp_to_sec(s) for s in tr.step_stamps]
        assert len(steps) == cfg.history and steps[-1] == stamp
        assert all(b > a for a, b in zip(steps, steps[1:]))
        assert (tr.image_width, tr.image_height) == (128, 128) and tr.tracker == "lk"
    assert not traces[0].valid  # the buffer had to fill first
    overlay_stamps = {round(stamp_to_sec(o.header.stamp), 6) for o in overlays}
    assert overlays and overlays[0].encoding == "rgb8"
    assert overlay_stamps & {round(stamp_to_sec(t.header.stamp), 6) for t in valid}


def test_bad_frames_are_logged_and_skipped(context: object) -> None:
    node = TrackerNode(context=context, parameter_overrides=[Parameter("preset", value="paper")])
    try:
        scene = SyntheticScene.default(96, 96)
        good = scene.render(0.0)[0]
        # the worker's per-frame function, called directly (deterministic, no thread)
        node._on_frame(_image(good, 10.0, encoding="yuv422"))  # unsupported
        empty = Image(encoding="rgb8")
        empty.header.stamp = sec_to_stamp(10.4)
        node._on_frame(empty)
        assert node.published == 0
        node._on_frame(_image(good, 11.0))
        assert node.published == 1
        node._on_frame(_image(scene.render(0.2)[0], 10.5))  # older than 11.0
        assert node.published == 1 and node.tracker.dropped_frames == 1
        node._on_frame(_image(SyntheticScene.default(64, 80).render(0.4)[0], 12.0))  # new size
        assert node.published == 2 and node.tracker.reset_count == 1
    finally:
        node.close()
        node.destroy_node()


def test_missing_backend_weights_are_a_config_error(context: object) -> None:
    from tracevla_ros.config import ConfigError

    overrides = [Parameter("backend", value="cotracker3"),
                 Parameter("cotracker_checkpoint", value="/nonexistent/scaled_online.pth")]
    with pytest.raises(ConfigError, match="/nonexistent/scaled_online.pth"):
        TrackerNode(context=context, parameter_overrides=overrides)
