"""policy_node over real DDS: pairing by stamp, instruction gating, bad output, stale input."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from tracevla_ros.msg import PolicyAction, VisualTrace  # noqa: E402
from tracevla_ros.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, sec_to_stamp  # noqa: E402
from tracevla_ros.nodes.policy_node import PolicyNode  # noqa: E402
from tracevla_ros.policy.base import ActionChunk, Observation  # noqa: E402
from tracevla_ros.ros_image import numpy_to_image  # noqa: E402

pytestmark = pytest.mark.ros


class RecordingPolicy:
    """A real (trivial) policy: moves +x by 1 cm; records what it was given."""

    name = "recording"

    def __init__(self, value: float = 0.01) -> None:
        self.value = value
        self.seen: list[Observation] = []

    def infer(self, obs: Observation) -> ActionChunk:
        self.seen.append(obs)
        return ActionChunk(values=np.array([[self.value, 0, 0, 0, 0, 0, 1.0]], np.float32),
                           trace_used=obs.overlay is not None)

    def reset(self) -> None:
        self.seen.clear()


def _run(policy: Any, instruction: str | None, stamp_offset_s: float = 0.0,
         valid: bool = True, seconds: float = 2.5) -> tuple[list[PolicyAction], RecordingPolicy]:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = PolicyNode(policy=policy, context=ctx, parameter_overrides=[
        Parameter("control_rate_hz", value=20.0), Parameter("max_input_age_s", value=0.5)])
    io = Node("policy_io", context=ctx)
    got: list[PolicyAction] = []
    io.create_subscription(PolicyAction, "action", got.append, RELIABLE_QOS)
    pub_img = io.create_publisher(Image, "image", SENSOR_QOS)
    pub_ovl = io.create_publisher(Image, "image_trace", SENSOR_QOS)
    pub_tr = io.create_publisher(VisualTrace, "trace", RELIABLE_QOS)
    pub_in = io.create_publisher(String, "instruction", LATCHED_QOS)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    if instruction is not None:
        pub_in.publish(String(data=instruction))
    img = np.full((16, 16, 3), 7, np.uint8)
    ovl = np.full((16, 16, 3), 9, np.uint8)
    end = time.monotonic() + seconds
    last = 0.0
    try:
        while time.monotonic() < end:
            if time.monotonic() - last > 0.1:
                last = time.monotonic()
                stamp = sec_to_stamp(io.get_clock().now().nanoseconds * 1e-9 - stamp_offset_s)
                m = numpy_to_image(img, "rgb8")
                m.header.stamp = stamp
                pub_img.publish(m)
                o = numpy_to_image(ovl, "rgb8")
                o.header.stamp = stamp
                pub_ovl.publish(o)
                tr = VisualTrace(valid=valid)
                tr.header.stamp = stamp
                pub_tr.publish(tr)
            ex.spin_once(timeout_sec=0.02)
    finally:
        node.close()
        node.destroy_node()
        io.destroy_node()
        rclpy.shutdown(context=ctx)
    return got, policy


def test_actions_carry_the_frame_stamp_and_overlay() -> None:
    got, policy = _run(RecordingPolicy(), "move right")
    assert len(got) >= 5
    a = got[-1]
    assert a.action_space == "ee_delta_7d" and a.chunk_length == 1 and a.action_dim == 7
    assert a.trace_used and a.policy_name == "recording" and a.values[0] == pytest.approx(0.01)
    assert a.header.frame_id == "wx250s/base_link"
    assert policy.seen[-1].overlay is not None and int(policy.seen[-1].overlay[0, 0, 0]) == 9
    assert policy.seen[-1].instruction == "move right"
    # every action's stamp is the stamp of an observation the policy saw
    seen = {round(o.stamp, 6) for o in policy.seen}
    assert all(round(a.header.stamp.sec + a.header.stamp.nanosec * 1e-9, 6) in seen for a in got)


def test_invalid_trace_means_no_overlay() -> None:
    got, policy = _run(RecordingPolicy(), "move right", valid=False)
    assert got and not got[-1].trace_used and policy.seen[-1].overlay is None


def test_no_instruction_no_action() -> None:
    got, policy = _run(RecordingPolicy(), None, seconds=1.5)
    assert got == [] and policy.seen == []


def test_empty_instruction_no_action() -> None:
    got, _ = _run(RecordingPolicy(), "   ", seconds=1.5)
    assert got == []


def test_nan_output_publishes_nothing() -> None:
    got, policy = _run(RecordingPolicy(value=float("nan")), "move right", seconds=1.5)
    assert policy.seen and got == []


def test_stale_input_publishes_nothing() -> None:
    got, policy = _run(RecordingPolicy(), "move right", stamp_offset_s=5.0, seconds=1.5)
    assert got == [] and policy.seen == []
