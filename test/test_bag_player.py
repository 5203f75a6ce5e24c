"""Bag playback: the plan (inputs as recorded, outputs under /recorded, stored QoS), order and
clock of the plain player, and bag_player_node over real DDS (latched instruction, /clock)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tracevla_ros.bag import messages as bm
from tracevla_ros.bag.config import BagPlayerConfig
from tracevla_ros.bag.player import Playback
from tracevla_ros.bag.reader import BagReader
from tracevla_ros.bag.writer import BagRecorder, OfferedQos

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000


def _bag(path: Path, frames: int = 10) -> None:
    with BagRecorder(path) as bag:
        bag.add_topic("/instruction", bm.STRING, OfferedQos(latched=True, depth=1))
        bag.add_topic("/camera/image_raw", bm.IMAGE, OfferedQos(reliable=False))
        bag.add_topic("/trace", bm.VISUAL_TRACE)
        bag.add_topic("/success", "std_msgs/msg/Bool")
        bag.write("/instruction", T0, bm.string_msg("lift the cube")[1])
        img = np.zeros((8, 8, 3), np.uint8)
        for i in range(frames):
            t = T0 + (i + 1) * 20 * MS
            bag.write("/camera/image_raw", t, bm.image_msg(img + i, t - MS)[1])
            bag.write("/trace", t + 5 * MS, bm.visual_trace_msg(t - MS, False, np.zeros((0, 0, 2)),
                                                               np.zeros((0, 0), bool), [t - MS], (8, 8), 5.0)[1])


def test_plan_order_and_clock(tmp_path: Path) -> None:
    _bag(tmp_path / "bag")
    cfg = BagPlayerConfig(bag=str(tmp_path / "bag"), rate=20.0)
    with BagReader(tmp_path / "bag") as reader:
        pb = Playback(reader, cfg)
        assert {k: v.target for k, v in pb.plan.items()} == {
            "/instruction": "/instruction", "/camera/image_raw": "/camera/image_raw",
            "/trace": "/recorded/trace"}  # /success is neither an input nor an output
        assert pb.plan["/instruction"].qos.latched and not pb.plan["/camera/image_raw"].qos.reliable
        sent: list[tuple[str, int]] = []
        clock: list[int] = []
        n = pb.run(lambda target, data: sent.append((target, len(data))), clock.append,
                   threading.Event())
    assert n == 21 and sent[0][0] == "/instruction" and sent[1][0] == "/camera/image_raw"
    assert [s for s, _ in sent].count("/recorded/trace") == 10
    assert clock == sorted(clock) and clock[-1] == T0 + 10 * 20 * MS + 5 * MS


def test_start_offset_and_stop(tmp_path: Path) -> None:
    _bag(tmp_path / "bag")
    cfg = BagPlayerConfig(bag=str(tmp_path / "bag"), rate=20.0, start_offset_s=0.1,
                          recorded_prefix="")
    with BagReader(tmp_path / "bag") as reader:
        pb = Playback(reader, cfg)
        assert "/trace" not in pb.plan
        got: list[str] = []
        assert pb.run(lambda t, d: got.append(t), lambda t: None, threading.Event()) == 6
        stop = threading.Event()
        stop.set()
        assert pb.run(lambda t, d: None, lambda t: None, stop) == 0


@pytest.mark.ros
def test_bag_player_node_publishes_with_recorded_qos(tmp_path: Path) -> None:
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from tracevla_ros.msg import VisualTrace
    from tracevla_ros.nodes.bag_player_node import BagPlayerNode
    from tracevla_ros.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS

    _bag(tmp_path / "bag", frames=30)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = BagPlayerNode(context=ctx, parameter_overrides=[
        Parameter("bag", value=str(tmp_path / "bag")), Parameter("rate", value=0.5),
        Parameter("start_delay_s", value=0.5)])
    io = Node("player_io", context=ctx)
    got: dict[str, list] = {"image": [], "trace": [], "clock": [], "instruction": []}
    io.create_subscription(Image, "/camera/image_raw", got["image"].append, SENSOR_QOS)
    io.create_subscription(VisualTrace, "/recorded/trace", got["trace"].append, RELIABLE_QOS)
    io.create_subscription(Clock, "/clock", got["clock"].append, 10)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    try:
        end = time.monotonic() + 15.0
        while time.monotonic() < end and not node.finished.is_set():
            ex.spin_once(timeout_sec=0.05)
        for _ in range(10):
            ex.spin_once(timeout_sec=0.05)
        # subscribed after the instruction went out: latched, so it still arrives
        io.create_subscription(String, "/instruction", got["instruction"].append, LATCHED_QOS)
        end = time.monotonic() + 3.0
        while time.monotonic() < end and not got["instruction"]:
            ex.spin_once(timeout_sec=0.05)
    finally:
        ex.shutdown()
        node.close()
        node.destroy_node()
        io.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert node.finished.is_set()
    assert [m.data for m in got["instruction"]] == ["lift the cube"]
    assert len(got["image"]) == 30 and len(got["trace"]) == 30  # matched during start_delay_s
    first = got["image"][0].header.stamp
    assert first.sec * 10**9 + first.nanosec >= T0  # recorded stamps, unchanged
    clocks = [c.clock.sec * 10**9 + c.clock.nanosec for c in got["clock"]]
    assert clocks == sorted(clocks) and clocks[-1] >= T0 + 30 * 20 * MS
