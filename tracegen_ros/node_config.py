"""``tracegen_node`` parameters: one typed config, validated once (no rclpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracegen_ros.execution import ExecutionConfig
from tracegen_ros.executor import ExecutorConfig
from tracevla_ros.config import check, param
from tracevla_ros.robots import UnknownRobotError, get_robot

__all__ = ["TraceGenNodeConfig", "PREDICTORS"]

PREDICTORS = ("model", "no_motion")


@dataclass(frozen=True)
class TraceGenNodeConfig:
    predictor: str = param("model", "trace source: 'model' (TraceGen checkpoint) or 'no_motion' "
                           "(baseline: nothing moves)")
    checkpoint: str = param("", "TraceGen checkpoint directory (predictor 'model'); never downloaded")
    device: str = param("auto", "torch device: auto = cuda when available, else cpu")
    flow_steps: int = param(100, "flow-matching integration steps per prediction")
    guidance: float = param(-1.0, "classifier-free guidance scale; < 0 = the checkpoint's default")
    rate_hz: float = param(0.0, "predict (and execute) at this rate while idle; 0 = only on "
                           "~/predict", unit="Hz")
    execute: bool = param(True, "send the trace to franka_controller_node as waypoints + gripper "
                          "commands; false = publish trace3d only")
    instruction: str = param("", "instruction; empty = wait for /instruction (latched)")
    robot: str = param("fr3", "robot model for the end-effector forward kinematics", read_only=True)
    base_frame: str = param("fr3_link0", "frame of the waypoints and actions (robot base)")
    T_base_cam: tuple[float, ...] = param((), "camera optical frame in the base frame: 16 values, "
                                          "row-major 4x4 (calibrate it on the real robot)")
    max_input_age_s: float = param(1.0, "older RGB-D frames are not predicted from", unit="s")
    pairing_tolerance_s: float = param(0.02, "RGB and depth frames pair when their stamps differ "
                                       "by at most this", unit="s")
    gripper_radius_px: float = param(30.0, "gripper keypoints lie within this of the end "
                                     "effector's projection", unit="px")
    gripper_depth_tol_m: float = param(0.10, "and their depth within this of the end effector's",
                                       unit="m")
    gripper_points: int = param(3, "gripper keypoints averaged into the waypoints")
    grasp_height_m: float = param(0.06, "a low point of the path below this (base z) is a grasp / "
                                  "push contact", unit="m")
    lift_m: float = param(0.03, "rise after a grasp that makes it a pick (else a push)", unit="m")
    z_min_m: float = param(0.022, "waypoints are kept at least this high (base z)", unit="m")
    execute_steps: int = param(0, "receding horizon: execute each trace up to this step (of 32), "
                               "then predict again (with rate_hz > 0); 0 = the whole trace")
    waypoint_speed: float = param(0.1, "franka_controller_node's waypoint_speed (expected segment "
                                  "durations)", unit="m/s")
    reach_tol_m: float = param(0.01, "a segment is done when the end effector is this close to "
                               "its last waypoint (and its expected time has passed)", unit="m")
    settle_s: float = param(0.3, "... and has stayed there this long", unit="s")
    timeout_margin_s: float = param(3.0, "move on this long after a segment's expected end",
                                    unit="s")
    gripper_wait_s: float = param(1.0, "wait after a gripper command", unit="s")

    def __post_init__(self) -> None:
        check(self.predictor in PREDICTORS, "predictor", f"must be one of {PREDICTORS}, "
              f"got '{self.predictor}'")
        try:
            get_robot(self.robot)
        except UnknownRobotError as exc:
            check(False, "robot", str(exc.args[0] if exc.args else exc))
        check(self.predictor != "model" or bool(self.checkpoint), "checkpoint",
              "must name a TraceGen checkpoint directory for predictor 'model' "
              "(or set predictor: no_motion)")
        check(self.flow_steps >= 1, "flow_steps", "must be >= 1")
        check(self.rate_hz >= 0.0, "rate_hz", "must be >= 0 (0 = on request only)")
        check(self.max_input_age_s > 0 and self.pairing_tolerance_s >= 0, "max_input_age_s",
              "must be > 0 and pairing_tolerance_s >= 0")
        check(len(self.T_base_cam) == 16 or (not self.execute and len(self.T_base_cam) == 0),
              "T_base_cam", f"needs 16 values (row-major 4x4 camera pose in {self.base_frame}) "
              f"to execute traces; got {len(self.T_base_cam)}")
        if len(self.T_base_cam) == 16:
            t = self.transform()
            ok = np.allclose(t[3], [0, 0, 0, 1]) and np.allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3),
                                                                 atol=1e-4)
            check(bool(ok), "T_base_cam", "must be a rigid transform (orthonormal rotation, last "
                  "row 0 0 0 1)")
        for key in ("gripper_radius_px", "gripper_depth_tol_m", "waypoint_speed", "reach_tol_m"):
            check(getattr(self, key) > 0, key, "must be > 0")
        check(self.gripper_points >= 1, "gripper_points", "must be >= 1")
        check(self.execute_steps >= 0, "execute_steps", "must be >= 0 (0 = the whole trace)")

    def transform(self) -> np.ndarray:
        """(4, 4) T_base_cam."""
        return np.asarray(self.T_base_cam, np.float64).reshape(4, 4)

    def execution(self) -> ExecutionConfig:
        return ExecutionConfig(gripper_radius_px=self.gripper_radius_px,
                               gripper_depth_tol_m=self.gripper_depth_tol_m,
                               gripper_points=self.gripper_points, grasp_height_m=self.grasp_height_m,
                               lift_m=self.lift_m, z_min_m=self.z_min_m,
                               execute_steps=self.execute_steps)

    def executor(self) -> ExecutorConfig:
        return ExecutorConfig(speed=self.waypoint_speed, reach_tol_m=self.reach_tol_m,
                              settle_s=self.settle_s,
                              timeout_margin_s=self.timeout_margin_s,
                              gripper_wait_s=self.gripper_wait_s)
