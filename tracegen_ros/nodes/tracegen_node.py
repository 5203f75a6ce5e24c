"""tracegen_node: RGB-D + CameraInfo + instruction -> TraceGen 3D trace -> FR3 waypoints.

Subscribes: ``image`` (sensor_msgs/Image rgb8), ``depth`` (Image 32FC1 m or 16UC1 mm,
aligned to the colour image), ``camera_info`` (CameraInfo), ``instruction`` (std_msgs/String,
latched), ``joint_states`` (for the end effector's pose by forward kinematics).
Publishes: ``trace3d`` (tracevla_ros/Trace3D, COORDS_PIXEL_DEPTH, header = the RGB frame's),
``ee_waypoints`` (geometry_msgs/PoseArray in ``base_frame``, one per trace segment) and
``action`` (PolicyAction: zero motion + gripper, between segments) for franka_controller_node.
Service ``~/predict`` (std_srvs/Trigger) queues one prediction; ``rate_hz`` > 0 predicts
whenever the previous trace has been executed. Callbacks keep the newest message; a worker
thread predicts and plans (``tracegen_ros.execution``), a timer sequences the plan
(``tracegen_ros.executor``). Bad input (no depth, sizes differ, stale, no gripper keypoint)
is logged and nothing moves.

    ros2 run tracevla_ros tracegen_node --ros-args --params-file config/fr3.yaml
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from tracegen_ros.execution import ExecutionError, NoMotionPredictor, TracePredictor, plan_execution
from tracegen_ros.executor import SendGripper, SendWaypoints, TraceExecutor
from tracegen_ros.node_config import TraceGenNodeConfig
from tracegen_ros.ros_convert import gripper_action_msg, trace3d_msg, waypoints_msg
from tracegen_ros.traceforge.geometry import GeometryError, check_rgbd
from tracevla_ros.config import ConfigError
from tracevla_ros.control.kinematics import load_kinematics
from tracevla_ros.msg import PolicyAction, Trace3D
from tracevla_ros.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, declare_config, run_node, stamp_to_sec
from tracevla_ros.robots import get_robot
from tracevla_ros.ros_image import ImageConversionError, image_to_numpy, image_to_rgb


def _make_predictor(cfg: TraceGenNodeConfig) -> TracePredictor:
    if cfg.predictor == "no_motion":
        return NoMotionPredictor()
    try:
        from tracegen_ros.predict import TraceGenPredictor
    except ImportError as exc:
        raise ConfigError(f"predictor 'model' needs tracegen_ros.predict and torch ({exc})") from None
    path = Path(cfg.checkpoint)
    if not path.is_absolute() and not path.exists():  # relative to the repository / package
        path = Path(__file__).resolve().parents[2] / path
    try:
        return TraceGenPredictor.from_checkpoint(path, device=cfg.device)  # type: ignore[no-any-return]
    except (OSError, ValueError, RuntimeError) as exc:  # missing/mismatched checkpoint, encoders
        raise ConfigError(f"checkpoint '{cfg.checkpoint}': {exc}") from None


class TraceGenNode(Node):
    def __init__(self, predictor: TracePredictor | None = None, **kwargs: Any) -> None:
        super().__init__("tracegen_node", **kwargs)
        self.cfg: TraceGenNodeConfig = declare_config(self, TraceGenNodeConfig)
        cfg = self.cfg
        self._predictor = predictor if predictor is not None else _make_predictor(cfg)
        spec = get_robot(cfg.robot)
        self._kin = load_kinematics(spec)
        self._names = list(spec.ros_joint_names)
        self._finger, self._open_q = spec.gripper_joints[0], spec.gripper_open
        self._executor = TraceExecutor(cfg.executor())
        self._lock = threading.Lock()  # latest inputs, shared with the worker
        # the last few frames of each stream, to pair RGB and depth by stamp
        self._rgbs: deque[Image] = deque(maxlen=8)
        self._depths: deque[Image] = deque(maxlen=8)
        self._info: CameraInfo | None = None
        self._q: np.ndarray | None = None
        self._gripper_open = True
        self._instruction = cfg.instruction.strip()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.predictions = 0
        self._predicting = False
        self.create_subscription(Image, "image", self._on_image, SENSOR_QOS)
        self.create_subscription(Image, "depth", self._on_depth, SENSOR_QOS)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, SENSOR_QOS)
        self.create_subscription(String, "instruction", self._on_instruction, LATCHED_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joint_states, SENSOR_QOS)
        self._pub_trace = self.create_publisher(Trace3D, "trace3d", RELIABLE_QOS)
        self._pub_wp = self.create_publisher(PoseArray, "ee_waypoints", RELIABLE_QOS)
        self._pub_action = self.create_publisher(PolicyAction, "action", RELIABLE_QOS)
        self.create_service(Trigger, "~/predict", self._on_predict)
        self.create_timer(0.05, self._on_execute_tick)
        if cfg.rate_hz > 0:
            self.create_timer(1.0 / cfg.rate_hz, self._on_rate_timer)
        self._worker = threading.Thread(target=self._run, name="tracegen_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"predictor '{cfg.predictor}'{' ' + cfg.checkpoint if cfg.checkpoint else ''}"
                               f", {'executing' if cfg.execute else 'trace only'}, "
                               f"{'every ' + str(1 / cfg.rate_hz) + ' s' if cfg.rate_hz else 'on ~/predict'}")

    # --- callbacks: O(1), keep the latest ------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._rgbs.append(msg)

    def _on_depth(self, msg: Image) -> None:
        self._depths.append(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _on_instruction(self, msg: String) -> None:
        self._instruction = msg.data.strip() or self._instruction

    def _on_joint_states(self, msg: JointState) -> None:
        pos = dict(zip(msg.name, msg.position))
        if all(n in pos for n in self._names):
            self._q = np.array([pos[n] for n in self._names])
        if self._finger in pos:
            self._gripper_open = pos[self._finger] > 0.5 * self._open_q

    def _on_predict(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        self._wake.set()
        resp.success, resp.message = True, "prediction queued"
        return resp

    def _on_rate_timer(self) -> None:
        if not self._executor.busy:
            self._wake.set()

    @property
    def busy(self) -> bool:
        """A trace is being predicted or executed."""
        return self._wake.is_set() or self._predicting or self._executor.busy

    # --- execution: sequence the current plan ---------------------------------------------
    def _ee(self) -> tuple[np.ndarray, np.ndarray] | None:
        q = self._q
        return None if q is None else self._kin.fk(q)

    def _on_execute_tick(self) -> None:
        ee = self._ee()
        with self._lock:
            cmds = self._executor.tick(self._now(), None if ee is None else ee[0])
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg.base_frame)
        for c in cmds:
            if isinstance(c, SendWaypoints) and ee is not None:
                quat = Rotation.from_matrix(ee[1]).as_quat()  # x y z w; orientation kept
                self._pub_wp.publish(waypoints_msg(c.positions, quat, header))
            elif isinstance(c, SendGripper):
                self._pub_action.publish(gripper_action_msg(c.open, header))

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- worker: predict + plan ------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.2):
                continue
            self._predicting = True
            self._wake.clear()
            try:
                self._predict_once()
            except (GeometryError, ExecutionError, ImageConversionError, ValueError) as exc:
                self.get_logger().error(f"no trace executed: {exc}", throttle_duration_sec=2.0)
            except RuntimeError as exc:  # the model failed (e.g. device out of memory): keep serving
                self.get_logger().error(f"prediction failed, nothing executed: {exc}")
            finally:
                self._predicting = False

    def _inputs(self) -> tuple[Image, np.ndarray, np.ndarray, np.ndarray]:
        rgbs, depths, info = list(self._rgbs), list(self._depths), self._info
        if not rgbs or not depths or info is None:
            raise GeometryError("waiting for image, depth and camera_info (is depth published?)")
        pairs = [(r, d) for r in reversed(rgbs) for d in reversed(depths)
                 if abs(stamp_to_sec(r.header.stamp) - stamp_to_sec(d.header.stamp))
                 <= self.cfg.pairing_tolerance_s]
        if not pairs:
            gap = abs(stamp_to_sec(rgbs[-1].header.stamp) - stamp_to_sec(depths[-1].header.stamp))
            raise GeometryError(f"no depth frame within {self.cfg.pairing_tolerance_s} s of an RGB "
                                f"frame (newest differ by {gap:.3f} s)")
        rgb_msg, depth_msg = pairs[0]
        t_rgb = stamp_to_sec(rgb_msg.header.stamp)
        if self._now() - t_rgb > self.cfg.max_input_age_s:
            raise GeometryError(f"newest frame is {self._now() - t_rgb:.1f} s old: not acting on it")
        rgb = image_to_rgb(rgb_msg)
        depth = image_to_numpy(depth_msg).astype(np.float32)
        if depth_msg.encoding == "16UC1":
            depth *= np.float32(1e-3)
        rgb, depth = check_rgbd(rgb, depth)
        K = np.asarray(info.k, np.float64).reshape(3, 3)
        if (info.width, info.height) != (rgb.shape[1], rgb.shape[0]):
            raise GeometryError(f"camera_info is {info.width}x{info.height} but the image is "
                                f"{rgb.shape[1]}x{rgb.shape[0]}")
        return rgb_msg, rgb, depth, K

    def _predict_once(self) -> None:
        if not self._instruction:
            raise ValueError("no instruction yet (publish /instruction or set the parameter)")
        msg, rgb, depth, K = self._inputs()
        traj = self._predictor.predict(rgb, depth, K, self._instruction, steps=self.cfg.flow_steps,
                                       guidance=None if self.cfg.guidance < 0 else self.cfg.guidance,
                                       seed=self.predictions)
        self.predictions += 1
        self._pub_trace.publish(trace3d_msg(traj, msg.header, rgb.shape[1], rgb.shape[0],
                                            self._instruction))
        ee = self._ee()
        if not self.cfg.execute or ee is None:
            if self.cfg.execute:
                self.get_logger().warning("no joint_states: trace published, not executed")
            return
        plan = plan_execution(traj, K, self.cfg.transform(), ee[0], self._gripper_open,
                              self.cfg.execution(), depth_m=depth)
        self.get_logger().info(f"trace {self.predictions}: {len(plan.path)} waypoints, gripper "
                               f"keypoints {plan.keypoints.tolist()}, grasp at {plan.grasp_index}, "
                               f"release at {plan.release_index}")
        with self._lock:
            self._executor.start(plan)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(TraceGenNode, args, name="tracegen_node", config=TraceGenNodeConfig)


if __name__ == "__main__":
    raise SystemExit(main())
