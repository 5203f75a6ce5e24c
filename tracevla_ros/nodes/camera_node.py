"""camera_node: publish a camera (usb | realsense | video | folder) as ROS images.

Topics (all stamped with the capture time, ``Frame.stamp``):
    image_raw           sensor_msgs/Image rgb8          frame_id: ``frame_id``
    camera_info         sensor_msgs/CameraInfo          frame_id: ``frame_id``
    depth/image_raw     sensor_msgs/Image 32FC1 m | 16UC1 mm, aligned to colour (RGB-D only)
    depth/camera_info   sensor_msgs/CameraInfo          frame_id: ``depth_frame_id`` (RGB-D only)

A capture thread blocks on the driver and publishes each frame, so the
executor never waits on the device. A device that cannot be opened at start
is one error line and exit code 2; a read error later is logged once and the
device is reopened every ``reconnect_period_s``.

    ros2 run tracevla_ros camera_node --ros-args --params-file config/widowx.yaml
    camera_node --ros-args -p backend:=folder -p path:=/data/frames -p fps:=10.0
"""

from __future__ import annotations

import threading
from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from tracevla_ros.camera import (
    Camera,
    CameraConfig,
    CameraError,
    EndOfStreamError,
    Frame,
    depth_to_mm16,
    make_camera,
)
from tracevla_ros.nodes.common import SENSOR_QOS, declare_config, run_node, sec_to_stamp
from tracevla_ros.ros_image import camera_info_msg, numpy_to_image


class CameraNode(Node):
    """Thin adapter: CameraConfig -> Camera backend -> Image/CameraInfo publishers."""

    def __init__(self, camera: Camera | None = None, **node_kwargs: Any) -> None:
        """``camera``: an in-process source (e.g. ``SimCamera(sim)``) instead of ``backend``."""
        super().__init__("camera_node", **node_kwargs)
        self.cfg = declare_config(self, CameraConfig)
        self._camera = camera if camera is not None else make_camera(self.cfg)
        self._camera.connect()  # CameraError -> run_node: one error line, exit 2
        self._pub_image = self.create_publisher(Image, "image_raw", SENSOR_QOS)
        self._pub_info = self.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        self._pub_depth = self._pub_depth_info = None
        if self._camera.has_depth:
            self._pub_depth = self.create_publisher(Image, "depth/image_raw", SENSOR_QOS)
            self._pub_depth_info = self.create_publisher(CameraInfo, "depth/camera_info", SENSOR_QOS)
        self.frames_published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture_loop, name="camera_capture", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"publishing {self._camera.description} on {self.resolve_topic_name('image_raw')}"
            f"{' with depth (' + self.cfg.depth_encoding + ')' if self._camera.has_depth else ''}")

    # -- capture thread ------------------------------------------------------------
    def _capture_loop(self) -> None:
        failing = False  # one error line per outage, one info line when frames flow again
        while not self._stop.is_set():
            try:
                if not self._camera.is_connected:
                    self._camera.connect()
                frame = self._camera.read()
            except EndOfStreamError as exc:
                self.get_logger().info(f"{exc}; no more frames")
                return
            except CameraError as exc:
                if not failing:
                    self.get_logger().error(f"{exc}; retrying every {self.cfg.reconnect_period_s} s")
                    failing = True
                self._camera.disconnect()
                self._stop.wait(self.cfg.reconnect_period_s)
                continue
            if failing:
                self.get_logger().info(f"camera {self._camera.description} recovered")
                failing = False
            self._publish(frame)

    def _publish(self, frame: Frame) -> None:
        stamp = sec_to_stamp(frame.stamp)
        header = Header(stamp=stamp, frame_id=self.cfg.frame_id)
        info = camera_info_msg(frame.intrinsics, header, width=frame.width, height=frame.height)
        self._pub_image.publish(numpy_to_image(frame.rgb, "rgb8", header))
        self._pub_info.publish(info)
        if frame.depth is not None and self._pub_depth is not None and self._pub_depth_info is not None:
            dheader = Header(stamp=stamp, frame_id=self.cfg.depth_frame_id)
            if self.cfg.depth_encoding == "16UC1":
                depth_msg = numpy_to_image(depth_to_mm16(frame.depth), "16UC1", dheader)
            else:
                depth_msg = numpy_to_image(frame.depth, "32FC1", dheader)
            self._pub_depth.publish(depth_msg)
            self._pub_depth_info.publish(
                camera_info_msg(frame.intrinsics, dheader, width=frame.width, height=frame.height))
        self.frames_published += 1

    def close(self) -> None:
        """Stop the capture thread, then release the device (called by run_node)."""
        self._stop.set()
        self._thread.join(timeout=self.cfg.read_timeout_s + 1.0)
        if self._thread.is_alive():
            self.get_logger().warning("capture thread still blocked in the driver; releasing anyway")
        self._camera.disconnect()


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, args, fatal=(CameraError,), name="camera_node",
                    config=CameraConfig)


if __name__ == "__main__":
    raise SystemExit(main())
