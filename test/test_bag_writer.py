"""rosbag2 MCAP written from CDR bytes reads back with rosbags, custom types included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader

from tracevla_ros.bag.typestore import typestore
from tracevla_ros.bag.writer import BagError, BagRecorder
from tracevla_ros.msg import PolicyAction, VisualTrace


def test_round_trip_custom_and_standard_types(tmp_path: Path) -> None:
    from sensor_msgs.msg import JointState

    path = tmp_path / "bag"
    vt = VisualTrace(valid=True, num_points=2, length=3, image_width=256, image_height=256,
                     points=np.arange(12, dtype=np.float32).tolist(), visible=[True] * 6)
    vt.header.stamp.sec = 7
    pa = PolicyAction(action_space="ee_delta_7d", chunk_length=1, action_dim=7,
                      values=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0], trace_used=True)
    js = JointState(name=["waist"], position=[0.5])
    with BagRecorder(path) as bag:
        bag.add_topic("/trace", "tracevla_ros/msg/VisualTrace")
        bag.add_topic("/policy/action", "tracevla_ros/msg/PolicyAction")
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        for i in range(3):
            bag.write("/trace", 1_000 + i, serialize_message(vt))
            bag.write("/policy/action", 1_001 + i, serialize_message(pa))
        bag.write("/joint_states", 2_000, serialize_message(js))
        assert bag.stats["/trace"].count == 3
    assert (path / "metadata.yaml").is_file() and list(path.glob("*.mcap"))
    types = {"/trace": VisualTrace, "/policy/action": PolicyAction, "/joint_states": JointState}
    with Reader(path) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {"/trace": 3, "/policy/action": 3, "/joint_states": 1}
        assert {c.topic: c.msgtype for c in reader.connections}["/trace"] == \
            "tracevla_ros/msg/VisualTrace"
        msgs = [(c.topic, t, deserialize_message(bytes(raw), types[c.topic]))
                for c, t, raw in reader.messages()]
        # rosbags' own decoder reads our custom types (their definitions are in the bag).
        store = typestore()
        c0, _, raw0 = next(iter(reader.messages(connections=[
            c for c in reader.connections if c.topic == "/trace"])))
        assert store.deserialize_cdr(raw0, c0.msgtype).num_points == 2
    traces = [m for topic, _, m in msgs if topic == "/trace"]
    assert traces[0].header.stamp.sec == 7 and traces[0].valid
    assert np.array_equal(np.asarray(traces[0].points), np.arange(12, dtype=np.float32))
    assert next(m for topic, _, m in msgs if topic == "/joint_states").position[0] == 0.5
    action = next(m for topic, _, m in msgs if topic == "/policy/action")
    assert np.allclose(action.values, pa.values)


def test_existing_directory_and_unknown_type_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    with pytest.raises(BagError, match="already exists"):
        BagRecorder(tmp_path / "bag")
    with BagRecorder(tmp_path / "bag2") as bag:
        with pytest.raises(BagError, match="unknown to the typestore"):
            bag.add_topic("/x", "nope_msgs/msg/Nothing")
        with pytest.raises(BagError, match="was not added"):
            bag.write("/y", 1, b"")


def test_rates_come_from_header_stamps_not_bursty_delivery(tmp_path: Path) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from tracevla_ros.bag.writer import header_stamp_ns

    with BagRecorder(tmp_path / "bag") as bag:
        bag.add_topic("/img", "sensor_msgs/msg/Image")
        bag.add_topic("/s", "std_msgs/msg/String")
        for k in range(11):  # produced at 10 Hz, delivered in two bursts
            msg = Image(encoding="rgb8")
            msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + k // 10, (k % 10) * 100_000_000
            data = serialize_message(msg)
            assert header_stamp_ns(data) == 100_000_000_000 + k * 100_000_000
            bag.write("/img", 5_000_000_000 + (0 if k < 6 else 200_000_000) + k, data)
            bag.write("/s", 5_000_000_000 + k * 500_000_000, serialize_message(String(data="x")))
        assert bag.stats["/img"].rate_hz() == pytest.approx(10.0)
        assert bag.stats["/s"].rate_hz() == pytest.approx(2.0)  # no header: receive times
