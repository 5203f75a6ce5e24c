"""trace_viz_node: traces as rviz MarkerArrays (one LINE_STRIP per traced point), and
visual prompts for people (rviz clicks in, the active prompt drawn on the overlay).

Subscribes:
    trace         tracevla_ros/VisualTrace (2D, from tracker_node)
    trace3d       tracevla_ros/Trace3D (3D, from TraceGen)
    depth         sensor_msgs/Image 32FC1 m / 16UC1 mm, aligned to the colour image (optional)
    camera_info   sensor_msgs/CameraInfo of the colour image (needed for 2D and pixel+depth 3D)
    clicked_point geometry_msgs/PointStamped from rviz's "Publish Point" tool, in base_frame
                  (rviz's fixed frame) or camera_frame
    image_trace   sensor_msgs/Image, the tracker's overlay (the policy's input image)
    active_prompt tracevla_ros/VisualPrompt, latched: policy_node's ~/active_prompt
Publishes (stamp and frame_id of the trace's camera frame):
    trace_markers     visualization_msgs/MarkerArray: the 2D trace lifted to 3D
    trace3d_markers   visualization_msgs/MarkerArray: the 3D trace
    visual_prompt     tracevla_ros/VisualPrompt: a clicked point projected into the camera
                      image (one point, the click's stamp, frame_id camera_frame)
    image_prompt      sensor_msgs/Image rgb8: image_trace with the active prompt drawn
                      (``tracevla_ros.viz.prompt.draw_prompt``), for rviz only
    /tf_static        tf2_msgs/TFMessage, once, latched (only with ``publish_static_tf``:
                      base_frame -> camera_frame from the extrinsic, what tf2_ros'
                      static_transform_publisher publishes; the launch files set it
                      when tf2_ros is not installed. Without tf2_msgs: one warning.)
Each array starts with DELETEALL, then per point its LINE_STRIP runs (ns 'trace', a
missing step breaks the line) and a SPHERE at its newest position (ns 'head'), in
the overlay's colours. 2D points take the depth of their frame (``depth`` with the
same stamp); without one they are drawn where their ray meets the table plane
(``no_depth: plane``, using the camera extrinsic) or not at all (``skip``). The
algorithms are in ``tracevla_ros.viz``; callbacks keep the newest message, a timer
draws.

A clicked point goes into the optical frame through the static extrinsic
(camera_xyz, camera_quat_xyzw: the transform the launch files publish), then
through the newest CameraInfo's K and distortion (``viz.prompt.project_point``).
tf2_ros is not a dependency here; on a ROS install a tf lookup of the click's
frame would also take clicks in other fixed frames. A click behind the camera,
outside the image, before a calibrated CameraInfo, or in another frame: one
warning, nothing published.

    ros2 run tracevla_ros trace_viz_node --ros-args --params-file config/widowx.yaml \\
        -r camera_info:=/camera/camera_info
"""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import Point, PointStamped, TransformStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import Marker, MarkerArray

from tracevla_ros.camera.base import CameraIntrinsics
from tracevla_ros.msg import Trace3D, VisualPrompt, VisualTrace
from tracevla_ros.nodes.common import (
    LATCHED_QOS,
    PROMPT_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    declare_config,
    run_node,
    stamp_to_sec,
)
from tracevla_ros.policy.prompt import PromptError
from tracevla_ros.ros_image import (
    ImageConversionError,
    image_to_numpy,
    image_to_rgb,
    intrinsics_from_camera_info,
    numpy_to_image,
)
from tracevla_ros.ros_prompt import prompt_from_msg, prompt_to_msg
from tracevla_ros.stamped import StampedBuffer
from tracevla_ros.viz.config import TraceVizConfig
from tracevla_ros.viz.lift import CameraExtrinsic, lift_trace, trace3d_to_xyz
from tracevla_ros.viz.markers import trace_strokes
from tracevla_ros.viz.prompt import click_prompt, draw_prompt


class TraceVizNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("trace_viz_node", **kwargs)
        self.cfg = declare_config(self, TraceVizConfig)
        self._extrinsic = CameraExtrinsic.from_xyz_quat(self.cfg.camera_xyz, self.cfg.camera_quat_xyzw)
        self._trace: VisualTrace | None = None
        self._trace3d: Trace3D | None = None
        self._info: CameraInfo | None = None
        self._depth: StampedBuffer[Image] = StampedBuffer(keep=8)
        self.published = {"trace": 0, "trace3d": 0, "clicked": 0, "image_prompt": 0}
        self.last_method = ""  # how the last 2D trace was lifted: depth | plane | none
        self.create_subscription(VisualTrace, "trace", self._on_trace, RELIABLE_QOS)
        self.create_subscription(Trace3D, "trace3d", self._on_trace3d, RELIABLE_QOS)
        self.create_subscription(Image, "depth", self._on_depth, SENSOR_QOS)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, SENSOR_QOS)
        self._pub2d = self.create_publisher(MarkerArray, "trace_markers", RELIABLE_QOS)
        self._pub3d = self.create_publisher(MarkerArray, "trace3d_markers", RELIABLE_QOS)
        self._overlay: Image | None = None
        self._active: VisualPrompt | None = None
        self.create_subscription(PointStamped, "clicked_point", self._on_clicked_point, RELIABLE_QOS)
        self.create_subscription(Image, "image_trace", self._on_image_trace, SENSOR_QOS)
        self.create_subscription(VisualPrompt, "active_prompt", self._on_active_prompt, LATCHED_QOS)
        self._pub_prompt = self.create_publisher(VisualPrompt, "visual_prompt", PROMPT_QOS)
        self._pub_image = self.create_publisher(Image, "image_prompt", SENSOR_QOS)
        self.create_timer(1.0 / self.cfg.publish_rate_hz, self._on_timer)
        self.static_tf_published = False
        if self.cfg.publish_static_tf:
            self._publish_static_tf()

    def _publish_static_tf(self) -> None:
        """base_frame -> camera_frame on /tf_static, latched (transient local, depth 1),
        as tf2_ros' static_transform_publisher does; one warning if tf2_msgs is absent."""
        base, camera = self.cfg.base_frame, self.cfg.camera_frame
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().warning(
                f"publish_static_tf: tf2_msgs is not installed, so the camera transform {base} -> "
                f"{camera} is not published (install ros-<distro>-tf2-msgs or tf2_ros)")
            return
        t = TransformStamped()
        t.header.stamp = self.get_clock().now().to_msg()
        t.header.frame_id, t.child_frame_id = base, camera
        tr, q = t.transform.translation, t.transform.rotation
        tr.x, tr.y, tr.z = (float(v) for v in self.cfg.camera_xyz)
        q.x, q.y, q.z, q.w = (float(v) for v in self.cfg.camera_quat_xyzw)
        self._tf_static = self.create_publisher(TFMessage, "/tf_static", LATCHED_QOS)
        self._tf_static.publish(TFMessage(transforms=[t]))
        self.static_tf_published = True
        self.get_logger().info(f"published the static transform {base} -> {camera} on /tf_static")

    # --- callbacks: O(1), keep the newest ---------------------------------------------
    def _on_trace(self, msg: VisualTrace) -> None:
        self._trace = msg

    def _on_trace3d(self, msg: Trace3D) -> None:
        self._trace3d = msg

    def _on_depth(self, msg: Image) -> None:
        self._depth.add(stamp_to_sec(msg.header.stamp), msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _on_image_trace(self, msg: Image) -> None:
        self._overlay = msg

    def _on_active_prompt(self, msg: VisualPrompt) -> None:
        self._active = msg

    def _on_clicked_point(self, msg: PointStamped) -> None:
        """rviz "Publish Point" -> a one-point VisualPrompt (O(1): one projection)."""
        log, frame = self.get_logger(), msg.header.frame_id
        if frame in ("", self.cfg.base_frame):
            ext: CameraExtrinsic | None = self._extrinsic
        elif frame == self.cfg.camera_frame:
            ext = None
        else:
            log.warning(f"clicked point in frame '{frame}' ignored: set rviz's Fixed Frame to "
                        f"'{self.cfg.base_frame}' (without tf2_ros only the configured camera "
                        "extrinsic is known)", throttle_duration_sec=2.0)
            return
        intr = intrinsics_from_camera_info(self._info) if self._info is not None else None
        if intr is None:
            log.warning("clicked point ignored: no calibrated camera_info yet",
                        throttle_duration_sec=2.0)
            return
        p = np.array([msg.point.x, msg.point.y, msg.point.z])
        try:
            prompt = click_prompt(p, intr, ext, stamp_to_sec(msg.header.stamp))
        except PromptError as exc:  # behind the camera / outside the image
            log.warning(f"clicked point {np.round(p, 3).tolist()} ignored: {exc}",
                        throttle_duration_sec=2.0)
            return
        self._pub_prompt.publish(prompt_to_msg(prompt, self.cfg.camera_frame))
        self.published["clicked"] += 1
        log.info(f"clicked point -> visual prompt at pixel "
                 f"{np.round(prompt.pixel_points()[0], 1).tolist()}")

    # --- timer ------------------------------------------------------------------------
    def _on_timer(self) -> None:
        trace, self._trace = self._trace, None
        if trace is not None:
            self._publish_2d(trace)
        trace3d, self._trace3d = self._trace3d, None
        if trace3d is not None:
            self._publish_3d(trace3d)
        overlay, self._overlay = self._overlay, None
        if overlay is not None:
            self._publish_image_prompt(overlay)

    def _publish_image_prompt(self, msg: Image) -> None:
        """The overlay with the active prompt drawn (unchanged without one)."""
        log = self.get_logger()
        try:
            image = image_to_rgb(msg)
            prompt = prompt_from_msg(self._active) if self._active is not None else None
        except (ImageConversionError, PromptError) as exc:
            log.error(f"image_prompt not drawn: {exc}", throttle_duration_sec=5.0)
            return
        self._pub_image.publish(numpy_to_image(draw_prompt(image, prompt), "rgb8", msg.header))
        self.published["image_prompt"] += 1

    def _intrinsics(self, width: int, height: int) -> CameraIntrinsics | None:
        intr = intrinsics_from_camera_info(self._info) if self._info is not None else None
        if intr is None:
            self.get_logger().warning("no calibrated camera_info yet: traces not drawn",
                                      throttle_duration_sec=5.0)
            return None
        if (intr.width, intr.height) != (width, height) and width > 0 and height > 0:
            intr = intr.scaled(width, height)
        return intr

    def _depth_for(self, stamp: float) -> np.ndarray | None:
        msg = self._depth.at(stamp + self.cfg.depth_tolerance_s)
        if msg is None or abs(stamp_to_sec(msg.header.stamp) - stamp) > self.cfg.depth_tolerance_s:
            return None
        try:
            depth = image_to_numpy(msg)
        except ImageConversionError as exc:
            self.get_logger().error(f"depth image unusable: {exc}", throttle_duration_sec=5.0)
            return None
        if depth.ndim != 2:
            self.get_logger().error(f"depth encoding '{msg.encoding}' is not 32FC1/16UC1",
                                    throttle_duration_sec=5.0)
            return None
        return depth.astype(np.float32) * (1e-3 if msg.encoding == "16UC1" else 1.0)

    def _publish_2d(self, msg: VisualTrace) -> None:
        if not msg.valid or msg.num_points * msg.length == 0:
            self._pub2d.publish(MarkerArray(markers=[self._delete_all(msg.header)]))
            return
        intr = self._intrinsics(int(msg.image_width), int(msg.image_height))
        if intr is None:
            return
        m, n = int(msg.num_points), int(msg.length)
        pts = np.asarray(msg.points, np.float32).reshape(m, n, 2)
        vis = np.asarray(msg.visible, bool).reshape(m, n)
        depth = self._depth_for(stamp_to_sec(msg.header.stamp))
        ext = self._extrinsic if self.cfg.no_depth == "plane" else None
        xyz, ok, self.last_method = lift_trace(pts, vis, intr, depth, ext, self.cfg.table_height,
                                               self.cfg.depth_window_px)
        self._pub2d.publish(self._markers(msg.header, xyz, ok))
        self.published["trace"] += 1

    def _publish_3d(self, msg: Trace3D) -> None:
        k, length = int(msg.num_keypoints), int(msg.length)
        if k * length == 0 or len(msg.points) != k * length * 3 or len(msg.valid) != k * length:
            self.get_logger().error(f"Trace3D with K={k} L={length} has {len(msg.points)} values "
                                    f"and {len(msg.valid)} flags: not drawn", throttle_duration_sec=5.0)
            return
        intr = None
        if msg.coordinates == Trace3D.COORDS_PIXEL_DEPTH:
            intr = self._intrinsics(int(msg.image_width), int(msg.image_height))
            if intr is None:
                return
        try:
            xyz, ok = trace3d_to_xyz(np.asarray(msg.points, np.float32).reshape(k, length, 3),
                                     np.asarray(msg.valid, bool).reshape(k, length),
                                     int(msg.coordinates), intr)
        except ValueError as exc:
            self.get_logger().error(f"Trace3D not drawn: {exc}", throttle_duration_sec=5.0)
            return
        s = self.cfg.trace3d_stride
        self._pub3d.publish(self._markers(msg.header, xyz[::s], ok[::s]))
        self.published["trace3d"] += 1

    # --- messages ---------------------------------------------------------------------
    def _delete_all(self, header: Any) -> Marker:
        mk = Marker(action=Marker.DELETEALL)
        mk.header.stamp = header.stamp
        mk.header.frame_id = header.frame_id or self.cfg.camera_frame
        return mk

    def _markers(self, header: Any, xyz: np.ndarray, ok: np.ndarray) -> MarkerArray:
        out = [self._delete_all(header)]
        frame = header.frame_id or self.cfg.camera_frame
        lines, heads = trace_strokes(xyz, ok)
        for i, stroke in enumerate(lines + heads):
            head = i >= len(lines)
            mk = Marker(ns="head" if head else "trace", id=i,
                        type=Marker.SPHERE if head else Marker.LINE_STRIP, action=Marker.ADD)
            mk.header.stamp, mk.header.frame_id = header.stamp, frame
            mk.pose.orientation.w = 1.0
            mk.color.r, mk.color.g, mk.color.b, mk.color.a = stroke.rgba
            if head:
                p = stroke.points[0]
                mk.pose.position.x, mk.pose.position.y, mk.pose.position.z = (float(v) for v in p)
                mk.scale.x = mk.scale.y = mk.scale.z = self.cfg.head_diameter
            else:
                mk.scale.x = self.cfg.line_width
                mk.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in stroke.points]
            out.append(mk)
        return MarkerArray(markers=out)


def main(args: list[str] | None = None) -> int:
    return run_node(TraceVizNode, args, name="trace_viz_node", config=TraceVizConfig)


if __name__ == "__main__":
    raise SystemExit(main())
