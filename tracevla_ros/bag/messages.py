"""Build CDR-serialised ROS messages without rclpy (``rosbags`` types), to write bags
offline: synthetic/sim bags for tests and benchmarks, converted recordings.

Every function returns ``(msgtype, cdr_bytes)`` ready for
``BagRecorder.add_topic(topic, msgtype)`` / ``BagRecorder.write(topic, t_ns, cdr_bytes)``.
Stamps are integer nanoseconds.

Example::

    with BagRecorder("bag") as bag:
        bag.add_topic("/camera/image_raw", IMAGE)
        msgtype, data = image_msg(rgb, stamp_ns=t, frame_id="camera_color_optical_frame")
        bag.write("/camera/image_raw", t, data)
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from tracevla_ros.bag.typestore import typestore

__all__ = ["COMPRESSED_IMAGE", "IMAGE", "JOINT_STATE", "POLICY_ACTION", "STRING", "VISUAL_TRACE",
           "compressed_image_msg", "image_msg", "joint_state_msg", "policy_action_msg",
           "serialize", "string_msg", "visual_trace_msg"]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"
VISUAL_TRACE = "tracevla_ros/msg/VisualTrace"
POLICY_ACTION = "tracevla_ros/msg/PolicyAction"


def _t(ns: int) -> Any:
    return typestore().types["builtin_interfaces/msg/Time"](sec=int(ns // 1_000_000_000),
                                                          nanosec=int(ns % 1_000_000_000))


def _header(stamp_ns: int, frame_id: str) -> Any:
    return typestore().types["std_msgs/msg/Header"](stamp=_t(stamp_ns), frame_id=frame_id)


def serialize(msg: Any) -> tuple[str, bytes]:
    """A rosbags message object -> (msgtype, CDR bytes)."""
    name = msg.__msgtype__
    return name, bytes(typestore().serialize_cdr(msg, name))


def image_msg(image: np.ndarray, stamp_ns: int, frame_id: str = "camera_color_optical_frame"
              ) -> tuple[str, bytes]:
    """(H, W, 3) uint8 RGB -> rgb8 sensor_msgs/Image; (H, W) uint8 -> mono8."""
    a = np.ascontiguousarray(image, dtype=np.uint8)
    enc = "rgb8" if a.ndim == 3 else "mono8"
    step = a.shape[1] * (3 if a.ndim == 3 else 1)
    msg = typestore().types[IMAGE](header=_header(stamp_ns, frame_id), height=a.shape[0],
                                   width=a.shape[1], encoding=enc, is_bigendian=0, step=step,
                                   data=a.reshape(-1))
    return serialize(msg)


def compressed_image_msg(image: np.ndarray, stamp_ns: int, fmt: str = "png",
                         frame_id: str = "camera_color_optical_frame") -> tuple[str, bytes]:
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage ('png' lossless or 'jpeg')."""
    ok, buf = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else fmt}",
                           cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image as {fmt}")
    msg = typestore().types[COMPRESSED_IMAGE](header=_header(stamp_ns, frame_id),
                                              format=f"rgb8; {fmt} compressed bgr8",
                                              data=buf.reshape(-1).astype(np.uint8))
    return serialize(msg)


def string_msg(text: str) -> tuple[str, bytes]:
    return serialize(typestore().types[STRING](data=text))


def joint_state_msg(names: Sequence[str], position: np.ndarray, stamp_ns: int) -> tuple[str, bytes]:
    """position: (n,) rad (arm) / m (fingers), in ``names`` order."""
    pos = np.asarray(position, np.float64)
    msg = typestore().types[JOINT_STATE](header=_header(stamp_ns, ""), name=list(names),
                                         position=pos, velocity=np.zeros_like(pos),
                                         effort=np.zeros_like(pos))
    return serialize(msg)


def visual_trace_msg(stamp_ns: int, valid: bool, points: np.ndarray, visible: np.ndarray,
                     step_stamps_ns: Sequence[int], image_size: tuple[int, int],
                     control_rate_hz: float, tracker: str = "lk",
                     frame_id: str = "camera_color_optical_frame") -> tuple[str, bytes]:
    """points: (M, N, 2) float32 px (x right, y down), visible: (M, N) bool; empty when not valid."""
    pts = np.asarray(points, np.float32)
    vis = np.asarray(visible, bool)
    m, n = (vis.shape if valid else (0, 0))
    msg = typestore().types[VISUAL_TRACE](
        header=_header(stamp_ns, frame_id), valid=bool(valid), num_points=int(m), length=int(n),
        image_width=int(image_size[0]), image_height=int(image_size[1]),
        points=pts.reshape(-1) if valid else np.zeros(0, np.float32),
        visible=vis.reshape(-1) if valid else np.zeros(0, bool),
        step_stamps=[_t(s) for s in step_stamps_ns], control_rate_hz=float(control_rate_hz),
        tracker=tracker)
    return serialize(msg)


def policy_action_msg(stamp_ns: int, values: np.ndarray, policy_name: str,
                      trace_used: bool, latency_s: float = 0.0,
                      action_space: str = "ee_delta_7d", frame_id: str = "wx250s/base_link"
                      ) -> tuple[str, bytes]:
    """values: (H, D) float32 action chunk."""
    v = np.asarray(values, np.float32)
    v = v.reshape(1, -1) if v.ndim == 1 else v
    msg = typestore().types[POLICY_ACTION](
        header=_header(stamp_ns, frame_id), action_space=action_space,
        chunk_length=int(v.shape[0]), action_dim=int(v.shape[1]), values=v.reshape(-1),
        trace_used=bool(trace_used), inference_latency_s=float(latency_s),
        policy_name=policy_name)
    return serialize(msg)
