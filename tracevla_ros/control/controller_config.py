"""Parameters of the arm controller nodes (one typed config each, validated once; no rclpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tracevla_ros.config import check, param
from tracevla_ros.control.action import HysteresisConfig
from tracevla_ros.control.chunking import ChunkConfig
from tracevla_ros.control.kinematics import IKOptions
from tracevla_ros.control.safety import (
    CartesianSafetyConfig,
    JointSafetyConfig,
    SafetyConfig,
    TimingConfig,
)
from tracevla_ros.robots import RobotSpec, UnknownRobotError, get_robot

INTERFACES = ("trajectory", "trajectory_action", "interbotix_topic", "interbotix_api")
FRANKA_INTERFACES = ("trajectory", "trajectory_action")


@dataclass(frozen=True)
class ArmSafetyParams:
    """The safety/IK parameters both controller nodes share (mixed into their configs)."""

    dry_run: bool = param(False, "compute and filter commands but publish them on ~/would_send "
                          "instead of the robot")
    step_period_s: float = param(0.2, "time per action step: chunk steps are executed this far "
                                 "apart (OpenVLA/TraceVLA run at ~5 Hz)", unit="s")
    trajectory_time_s: float = param(0.0, "time_from_start of each step's joint target: the "
                                     "joint_trajectory_controller interpolates to it in this "
                                     "time, then holds it for the rest of the step; 0 = "
                                     "step_period_s (interpolate over the whole step)", unit="s")
    chunk_execution: str = param("first_k", "how action chunks run: first_k = the first "
                                 "chunk_steps steps of each chunk (a new chunk replaces what is "
                                 "left), ensemble = ACT temporal ensembling of the chunks that "
                                 "cover each step (tracevla_ros.control.chunking)")
    chunk_steps: int = param(0, "first_k: steps executed per chunk, open loop (chunks arriving "
                             "meanwhile are not used); 0 = all of them until the next chunk "
                             "replaces them")
    ensemble_m: float = param(0.1, "ensemble: weight exp(-m i) of the i-th oldest prediction")
    watchdog_timeout_s: float = param(1.0, "no fresh action for this long -> hold the measured "
                                      "position (several policy periods)", unit="s")
    state_timeout_s: float = param(0.5, "no joint state for this long -> send nothing", unit="s")
    workspace_min: tuple[float, ...] = param((0.10, -0.30, 0.02), "ee workspace box lower corner "
                                             "in the base frame", unit="m")
    workspace_max: tuple[float, ...] = param((0.50, 0.30, 0.45), "ee workspace box upper corner",
                                             unit="m")
    max_ee_step: float = param(0.05, "largest ee translation per step", unit="m")
    max_ee_speed: float = param(0.25, "ee translation speed limit", unit="m/s")
    max_rot_step: float = param(0.3, "largest ee rotation per step", unit="rad")
    max_rot_speed: float = param(1.5, "ee rotation speed limit", unit="rad/s")
    max_joint_step: float = param(0.2, "largest joint change per command", unit="rad")
    joint_margin: float = param(0.02, "stay this far inside the joint limits", unit="rad")
    velocity_scale: float = param(0.5, "fraction of the description's joint speed limits used as "
                                  "the per-second joint limit")
    gripper_close_below: float = param(0.05, "an open gripper closes when the policy value "
                                       "drops below this (1 = open)")
    gripper_open_above: float = param(0.95, "a closed gripper opens when the value rises above this")
    ik_orientation_weight: float = param(0.3, "IK: metres of position error one radian of "
                                         "orientation error is worth", unit="m/rad")
    ik_restarts: int = param(1, "IK: extra attempts (from home, then random) when the seed fails")
    diagnostics_period_s: float = param(1.0, "period of the /diagnostics status", unit="s")
    path_tolerance: float = param(0.0, "interface trajectory_action: per-joint position error "
                                  "the controller may have along a goal before it aborts it; "
                                  "0 = not sent (the JTC's own constraints apply)", unit="rad")
    goal_tolerance: float = param(0.05, "interface trajectory_action: per-joint position error "
                                  "allowed at a goal's end; 0 = not sent", unit="rad")
    goal_time_tolerance_s: float = param(0.5, "interface trajectory_action: time after a goal's "
                                         "end to reach goal_tolerance before the JTC aborts it; "
                                         "0 = no limit", unit="s")
    action_server_timeout_s: float = param(5.0, "interface trajectory_action: wait this long at "
                                           "start-up for the follow_joint_trajectory server, "
                                           "then exit with a configuration error", unit="s")

    @property
    def point_time_s(self) -> float:
        """time_from_start of each commanded joint target (trajectory_time_s, 0 = the step)."""
        return self.trajectory_time_s or self.step_period_s

    def _speed_dt(self) -> float:
        """The time a step's motion may take, for the speed limits: the measured time since
        the last command, at most twice the step period; with trajectory_time_s the arm
        covers the step in that time, so that is the bound."""
        return self.trajectory_time_s or max(self.step_period_s * 2, 0.05)

    def _check_safety(self) -> None:
        check(self.step_period_s > 0.0, "step_period_s", "must be > 0 s")
        check(0.0 <= self.trajectory_time_s <= self.step_period_s, "trajectory_time_s",
              f"must be in [0, step_period_s={self.step_period_s}] s (0 = step_period_s), got "
              f"{self.trajectory_time_s}")
        check(self.chunk_execution in ("first_k", "ensemble"), "chunk_execution",
              f"must be first_k or ensemble, got '{self.chunk_execution}'")
        check(self.chunk_steps >= 0, "chunk_steps", "must be >= 0 (0 = every step of a chunk)")
        check(math.isfinite(self.ensemble_m) and self.ensemble_m >= 0.0, "ensemble_m",
              f"must be a finite value >= 0, got {self.ensemble_m}")
        check(self.watchdog_timeout_s > 0.0, "watchdog_timeout_s", "must be > 0 s")
        check(self.state_timeout_s > 0.0, "state_timeout_s", "must be > 0 s")
        check(len(self.workspace_min) == 3 and len(self.workspace_max) == 3, "workspace_min",
              "and workspace_max need 3 values [x, y, z] in metres")
        check(all(a < b for a, b in zip(self.workspace_min, self.workspace_max)), "workspace_min",
              f"must be below workspace_max on every axis ({self.workspace_min} vs {self.workspace_max})")
        for key in ("max_ee_step", "max_ee_speed", "max_rot_step", "max_rot_speed",
                    "max_joint_step", "diagnostics_period_s"):
            check(getattr(self, key) > 0.0, key, "must be > 0")
        check(self.joint_margin >= 0.0, "joint_margin", "must be >= 0 rad")
        check(0.0 < self.velocity_scale <= 1.0, "velocity_scale", "must be in (0, 1]")
        check(0.0 <= self.gripper_close_below < self.gripper_open_above <= 1.0,
              "gripper_close_below", "must satisfy 0 <= gripper_close_below < gripper_open_above <= 1")
        check(self.ik_orientation_weight >= 0.0, "ik_orientation_weight", "must be >= 0")
        check(self.ik_restarts >= 0, "ik_restarts", "must be >= 0")
        for key in ("path_tolerance", "goal_tolerance", "goal_time_tolerance_s"):
            check(getattr(self, key) >= 0.0, key, "must be >= 0 (0 = not used)")
        check(self.action_server_timeout_s > 0.0, "action_server_timeout_s", "must be > 0 s")

    def safety_config(self, spec: RobotSpec) -> SafetyConfig:
        """The pure safety settings for ``spec``."""
        return SafetyConfig(
            joints=JointSafetyConfig(spec.joint_lower, spec.joint_upper, margin=self.joint_margin,
                                     max_step=self.max_joint_step,
                                     max_velocity=tuple(v * self.velocity_scale
                                                        for v in spec.velocity_limits),
                                     max_dt=self._speed_dt()),
            cartesian=CartesianSafetyConfig(
                tuple(self.workspace_min), tuple(self.workspace_max),  # type: ignore[arg-type]
                max_step=self.max_ee_step, max_speed=self.max_ee_speed,
                max_rot_step=self.max_rot_step, max_rot_speed=self.max_rot_speed,
                max_dt=self._speed_dt()),
            timing=TimingConfig(self.watchdog_timeout_s, self.state_timeout_s),
            dry_run=self.dry_run,
        )

    def chunk_config(self) -> ChunkConfig:
        """How the controller runs action chunks (``tracevla_ros.control.chunking``)."""
        return ChunkConfig(mode=self.chunk_execution, k=self.chunk_steps or 1_000_000,  # all
                           ensemble_m=self.ensemble_m)

    def hysteresis(self) -> HysteresisConfig:
        return HysteresisConfig(self.gripper_close_below, self.gripper_open_above)

    def ik_options(self) -> IKOptions:
        return IKOptions(orientation_weight=self.ik_orientation_weight, restarts=self.ik_restarts)


def _check_robot(name: str) -> RobotSpec:
    try:
        return get_robot(name)
    except UnknownRobotError as exc:
        check(False, "robot", str(exc))
        raise  # unreachable


@dataclass(frozen=True)
class WidowXControllerConfig(ArmSafetyParams):
    """widowx_controller_node parameters."""

    robot: str = param("widowx250s", "robot model (tracevla_ros.robots registry)", read_only=True)
    interface: str = param("trajectory", "command interface: trajectory (ros2_control "
                           "JointTrajectory topic), trajectory_action (ros2_control "
                           "FollowJointTrajectory action), interbotix_topic (Interbotix SDK topics), "
                           "interbotix_api (interbotix_xs_modules Python API)", read_only=True)
    robot_name: str = param("wx250s", "Interbotix robot namespace (/<robot_name>/commands/...)")
    arm_controller: str = param("arm_controller", "ros2_control arm controller name "
                                "(/<arm_controller>/joint_trajectory, "
                                "/<arm_controller>/follow_joint_trajectory)")
    gripper_controller: str = param("gripper_controller", "ros2_control gripper controller name; "
                                    "'' = do not command the gripper")
    joint_states_topic: str = param("", "joint state topic; '' = /<robot_name>/joint_states for "
                                    "the Interbotix interfaces, /joint_states otherwise")
    action_topic: str = param("action", "PolicyAction input (action_space ee_delta_7d)")
    gripper_open_cmd: float = param(250.0, "JointSingleCommand value that opens the gripper "
                                    "(Interbotix gripper in PWM mode)", unit="PWM")
    gripper_closed_cmd: float = param(-250.0, "JointSingleCommand value that closes it", unit="PWM")
    base_frame: str = param("wx250s/base_link", "frame actions must be expressed in")
    # WidowX values of shared parameters: the small policies' dynamics (see config/widowx.yaml)
    trajectory_time_s: float = param(0.1, "time_from_start of each step's joint target: reached "
                                     "in this time, then held for the rest of the step, as the "
                                     "sim's training data steps its targets; 0 = step_period_s",
                                     unit="s")
    chunk_execution: str = param("ensemble", "how action chunks run: ensemble = ACT temporal "
                                 "ensembling (a step per arriving chunk, the weighted mean of "
                                 "the stored chunks' predictions for it), first_k = the first "
                                 "chunk_steps steps of each chunk (tracevla_ros.control.chunking)")
    chunk_steps: int = param(8, "first_k: steps executed per chunk, open loop (chunks arriving "
                             "meanwhile are not used); 0 = all of them until the next chunk "
                             "replaces them; 8 = PixelVLA's whole chunk")
    gripper_close_below: float = param(0.4, "an open gripper closes when the policy value "
                                       "drops below this (ensembled values are means of chunks: "
                                       "0.05 was never reached)")
    gripper_open_above: float = param(0.6, "a closed gripper opens when the value rises above this")
    max_ee_speed: float = param(0.5, "ee translation speed limit within a step's "
                                "trajectory_time_s", unit="m/s")
    max_rot_speed: float = param(3.0, "ee rotation speed limit within trajectory_time_s",
                                 unit="rad/s")
    max_joint_step: float = param(0.3, "largest joint change per command (a 0.3 rad ee rotation "
                                  "step turns a wrist joint about as much)", unit="rad")
    velocity_scale: float = param(1.0, "x the URDF joint speed limits (pi rad/s) as the "
                                  "per-second joint limit, within trajectory_time_s")

    def __post_init__(self) -> None:
        _check_robot(self.robot)
        check(self.interface in INTERFACES, "interface", f"must be one of {INTERFACES}, got '{self.interface}'")
        check(bool(self.robot_name), "robot_name", "must not be empty")
        check(bool(self.arm_controller), "arm_controller", "must not be empty")
        self._check_safety()

    def state_topic(self) -> str:
        if self.joint_states_topic:
            return self.joint_states_topic
        return f"/{self.robot_name}/joint_states" if self.interface.startswith("interbotix") \
            else "/joint_states"


@dataclass(frozen=True)
class FrankaControllerConfig(ArmSafetyParams):
    """franka_controller_node parameters (FR3 defaults)."""

    robot: str = param("fr3", "robot model (tracevla_ros.robots registry)", read_only=True)
    workspace_min: tuple[float, ...] = param((0.20, -0.50, 0.02), "ee (hand TCP) workspace box "
                                             "lower corner in fr3_link0", unit="m")
    workspace_max: tuple[float, ...] = param((0.80, 0.50, 0.80), "ee workspace box upper corner",
                                             unit="m")
    interface: str = param("trajectory", "command interface: trajectory (ros2_control "
                           "JointTrajectory topic) or trajectory_action (FollowJointTrajectory "
                           "action)", read_only=True)
    arm_controller: str = param("fr3_arm_controller", "ros2_control arm controller "
                                "(/<arm_controller>/joint_trajectory, "
                                "/<arm_controller>/follow_joint_trajectory)")
    gripper_namespace: str = param("fr3_gripper", "franka_gripper action namespace "
                                   "(<ns>/move, <ns>/grasp); '' = no gripper")
    gripper_command_topic: str = param("", "std_msgs/Float64 gripper openness topic (1 = open, "
                                       "0 = closed), used instead of the franka_gripper actions "
                                       "when gripper_namespace is '': sim_node's "
                                       "/sim_node/gripper_command where franka_msgs is not "
                                       "installed; '' = none")
    joint_states_topic: str = param("/joint_states", "joint state topic")
    action_topic: str = param("action", "PolicyAction input (action_space ee_delta_7d)")
    waypoints_topic: str = param("ee_waypoints", "geometry_msgs/PoseArray ee waypoint sequences "
                                 "in the base frame")
    waypoint_speed: float = param(0.1, "ee speed used to time waypoint trajectories", unit="m/s")
    gripper_width_open: float = param(0.08, "gripper opening when open", unit="m")
    gripper_speed: float = param(0.1, "gripper move speed", unit="m/s")
    grasp_force: float = param(20.0, "grasp force", unit="N")
    base_frame: str = param("fr3_link0", "frame actions and waypoints must be expressed in")
    robot_state_topic: str = param("/franka_robot_state_broadcaster/robot_state",
                                   "franka_msgs/FrankaRobotState (franka_robot_state_broadcaster): "
                                   "a reflex (robot_mode REFLEX or any current_errors flag) holds "
                                   "and blocks actions until ~/recover; '' = not watched")
    error_recovery_action: str = param("/action_server/error_recovery",
                                       "franka_msgs/ErrorRecovery action (franka_hardware) that "
                                       "~/recover calls")

    def __post_init__(self) -> None:
        _check_robot(self.robot)
        check(bool(self.arm_controller), "arm_controller", "must not be empty")
        check(self.interface in FRANKA_INTERFACES, "interface",
              f"must be one of {FRANKA_INTERFACES}, got '{self.interface}'")
        check(not (self.gripper_namespace and self.gripper_command_topic), "gripper_command_topic",
              "must be '' while gripper_namespace is set (one gripper interface at a time)")
        check(self.waypoint_speed > 0.0, "waypoint_speed", "must be > 0 m/s")
        check(0.0 < self.gripper_width_open <= 0.08, "gripper_width_open", "must be in (0, 0.08] m")
        check(self.gripper_speed > 0.0 and self.grasp_force > 0.0, "gripper_speed",
              "and grasp_force must be > 0")
        self._check_safety()
