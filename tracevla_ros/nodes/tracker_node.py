"""``tracker_node``: camera images -> TraceVLA visual traces, once per policy step.

Subscribes ``image`` (sensor_msgs/Image rgb8/bgr8/mono8, sensor QoS; remap it,
e.g. ``image:=/camera/image_raw``). Publishes, once per policy step:

* ``trace`` (tracevla_ros/VisualTrace) -- the last N policy-step positions of M points;
* ``image_trace`` (sensor_msgs/Image rgb8) -- that frame with the trace drawn, for rviz.

Both carry the header (stamp, frame_id) of the camera frame they belong to.

Threading/rates (event-driven): ``_on_image`` only keeps the newest message and
wakes the worker thread (O(1)). The worker tracks each new frame at once: a frame
due at ``control_rate_hz`` (by its stamp, ``FrameSchedule``: exactly the
policy rate, on the frame nearest each policy period) is observed and stepped
into the trace, which is published immediately; with ``observe_rate_hz > 0`` the
frames in between are observed too (camera-rate tracking of the active points,
rate-limited the same way). Only the worker touches the tracker. Bad frames
(unsupported encoding, empty, older than the last one) are logged (throttled)
and skipped; a frame-size change resets the tracker (logged); the node keeps
running.

Run: ``ros2 run tracevla_ros tracker_node --ros-args --params-file
config/widowx.yaml -r image:=/camera/image_raw``
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import cv2
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from tracevla_ros.config import ConfigError
from tracevla_ros.msg import VisualTrace
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS, declare_config, run_node, stamp_to_sec
from tracevla_ros.ratelimit import FrameSchedule
from tracevla_ros.tracking import (
    IncrementalTracker,
    TraceResult,
    TrackerConfig,
    TrackerInputError,
    decode_image,
    encode_image,
)
from tracevla_ros.worker import WakeWorker

_THROTTLE_S = 2.0


def trace_to_msg(result: TraceResult, header: Header, step_stamps: list[Any],
                 config: TrackerConfig) -> VisualTrace:
    """A VisualTrace for ``result``; ``step_stamps`` are the builtin_interfaces/Time
    of its policy steps, oldest first (same length as ``result.step_stamps``)."""
    msg = VisualTrace()
    msg.header = header
    msg.valid = bool(result.valid)
    msg.image_width, msg.image_height = (int(v) for v in result.image_size)
    msg.control_rate_hz = float(config.control_rate_hz)
    msg.tracker = result.tracker
    msg.step_stamps = list(step_stamps)
    if result.valid:
        m, n = result.visible.shape
        msg.num_points, msg.length = m, n
        msg.points = np.ascontiguousarray(result.points, np.float32).reshape(-1)
        msg.visible = [bool(v) for v in result.visible.reshape(-1)]
    return msg


class TrackerNode(Node):
    """Thin ROS adapter around ``IncrementalTracker``; the tracking runs in one worker thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("tracker_node", **kwargs)
        self.config: TrackerConfig = declare_config(self, TrackerConfig)
        cfg = self.config
        if cfg.opencv_threads >= 0:
            cv2.setNumThreads(cfg.opencv_threads)
        try:
            self.tracker = IncrementalTracker(cfg)
        except (FileNotFoundError, ImportError) as exc:  # backend weights/package missing
            raise ConfigError(f"tracker backend '{cfg.dense_backend_name}'/"
                              f"'{cfg.sparse_backend_name}': {exc}") from None
        self._latest: Image | None = None  # newest message, written by _on_image only
        self._schedule = FrameSchedule(cfg.control_rate_hz, cfg.observe_rate_hz)
        self._step_stamps: deque[Any] = deque(maxlen=cfg.history)
        self._resets = 0
        self.published = 0
        self.create_subscription(Image, "image", self._on_image, SENSOR_QOS)
        self._trace_pub = self.create_publisher(VisualTrace, "trace", RELIABLE_QOS)
        self._image_pub = (self.create_publisher(Image, "image_trace", SENSOR_QOS)
                           if cfg.publish_overlay else None)
        self.create_timer(5.0, self._on_idle_check)
        self._done: Image | None = None  # the message the worker tracked last
        self._worker = WakeWorker(self._on_wake, "tracker_worker", on_error=self._on_worker_error)
        self._worker.start()
        self.get_logger().info(
            f"tracking with preset '{cfg.preset}' backend '{self.tracker.tracker_name}': "
            f"K={cfg.grid_size} "
            f"M={cfg.num_points} N={cfg.history} redraw={cfg.redraw_steps} "
            f"kappa={cfg.kappa_px}px at {cfg.control_rate_hz} Hz, on each frame as it arrives "
            f"(observe {cfg.observe_rate_hz or 'at policy steps only'})")

    def _on_image(self, msg: Image) -> None:
        self._latest = msg
        self._worker.wake()

    def _on_idle_check(self) -> None:
        if self._latest is None:
            self.get_logger().info(
                f"waiting for camera images on {self.resolve_topic_name('image')}")

    # --- worker ---------------------------------------------------------------------------
    def _on_wake(self) -> None:
        msg = self._latest
        if msg is not None and msg is not self._done:
            self._done = msg
            self._on_frame(msg)

    def _on_worker_error(self, exc: Exception) -> None:  # the node keeps running; logged
        self.get_logger().error(f"tracking failed on a frame: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=_THROTTLE_S)

    def _on_frame(self, msg: Image) -> None:
        stamp = stamp_to_sec(msg.header.stamp)
        observe, step = self._schedule.decide(stamp)
        if not observe:
            return  # between policy steps, and not observed at camera rate
        log = self.get_logger()
        try:
            image = decode_image(msg.data, msg.width, msg.height, msg.encoding, msg.step)
            accepted = self.tracker.observe(image, stamp)
        except TrackerInputError as exc:
            log.error(f"skipping camera frame: {exc}", throttle_duration_sec=_THROTTLE_S)
            return
        if not accepted:
            log.warning(f"dropping a camera frame not newer than the previous one (stamp {stamp:.6f})",
                        throttle_duration_sec=_THROTTLE_S)
            return
        if self.tracker.reset_count != self._resets:
            self._resets = self.tracker.reset_count
            self._step_stamps.clear()
            log.warning(f"camera frame size changed to {msg.width}x{msg.height}: tracker reset, "
                        f"no trace for the next {self.config.history} policy steps")
        if step:
            self._publish_step(image, msg.header)

    def _publish_step(self, image: np.ndarray, header: Header) -> None:
        result = self.tracker.step()
        self._step_stamps.append(header.stamp)
        stamps = list(self._step_stamps)[len(self._step_stamps) - len(result.step_stamps):]
        self._trace_pub.publish(trace_to_msg(result, header, stamps, self.config))
        if self._image_pub is not None:
            drawn = result.overlay(image, self.config.draw_length)
            data, encoding, step = encode_image(drawn)
            img = Image(header=header, height=drawn.shape[0], width=drawn.shape[1],
                        encoding=encoding, is_bigendian=0, step=step)
            img.data = data
            self._image_pub.publish(img)
        self.published += 1

    def close(self) -> None:
        self._worker.close()


def main(args: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO)
    return run_node(TrackerNode, args, name="tracker_node", config=TrackerConfig)


if __name__ == "__main__":
    raise SystemExit(main())
