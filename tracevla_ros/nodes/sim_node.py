"""sim_node: the MuJoCo world as a drop-in for the real arm + camera.

Publishes (stamps: node clock, or sim time with ``stamp_source: sim``, see below):
    /camera/image_raw            sensor_msgs/Image rgb8 (SENSOR_QOS)   frame_id: camera optical frame
    /camera/camera_info          sensor_msgs/CameraInfo
    /camera/depth/image_raw      sensor_msgs/Image 32FC1 metres, 0 = none (FR3 world only)
    /camera/depth/camera_info    sensor_msgs/CameraInfo (FR3 world only)
    /joint_states                sensor_msgs/JointState: arm joints (real robot names), then fingers
    /<interbotix_robot_name>/joint_states   the same, when that parameter is set (WidowX)
    success                      std_msgs/Bool, the task's success check, at the camera rate
    instruction                  std_msgs/String (latched), the task's language instruction
    /visual_prompt               tracevla_ros/VisualPrompt, only with ``oracle_prompt`` set: the
                                 ground-truth prompt of that kind on the task's target, from a
                                 segmentation render of each camera frame, stamped like the
                                 frame (none while the target is out of view)
    /clock                       rosgraph_msgs/Clock, only with ``stamp_source: sim``
Subscribes (the interfaces the real controllers take):
    /<arm_controller>/joint_trajectory       trajectory_msgs/JointTrajectory; arm joints and/or
    /<gripper_controller>/joint_trajectory   the actuated finger joint (metres), linearly
                                 interpolated over time_from_start like joint_trajectory_controller;
                                 a newer command takes over the joints it names
    /<interbotix_robot_name>/commands/joint_group   interbotix_xs_msgs/JointGroupCommand (group
                                 "arm": 6 joint positions [rad]) and .../joint_single (name
                                 "gripper", PWM: > 0 opens, < 0 closes); only if that package imports
    ~/gripper_command            std_msgs/Float64 openness [0, 1], 1 = open
    /<franka_gripper_namespace>/move, .../grasp, .../homing   franka_msgs Move / Grasp / Homing (goal
                                 width [m] = finger distance; replies at once, the hand then
                                 moves); only if franka_msgs imports and the namespace is set
Action server (only if control_msgs imports):
    /<arm_controller>/follow_joint_trajectory   control_msgs/FollowJointTrajectory, executed by
                                 the tick like the topic; path/goal tolerances, JTC result codes;
                                 a new goal preempts the running one (see README)
Services:
    ~/reset                      std_srvs/Trigger: new episode (seed + number of resets)

One timer ticks the physics at ``physics_rate_hz`` (each tick advances 1/physics_rate_hz
of sim time; a late callback runs the ticks it missed, up to 0.1 s of them, so sim time
keeps pace with wall time on a loaded machine) and renders at ``camera_rate_hz``. Callbacks only store the newest command; the tick applies it.

    ros2 run tracevla_ros sim_node --ros-args --params-file config/widowx.yaml
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from tracevla_ros.nodes.sim_config import SimNodeConfig
from tracevla_ros.msg import VisualPrompt
from tracevla_ros.nodes.common import (LATCHED_QOS, PROMPT_QOS, RELIABLE_QOS, SENSOR_QOS, declare_config,
                                       run_node, sec_to_stamp)
from tracevla_ros.policy.prompt_sampling import episode_rng, sample_prompt
from tracevla_ros.ros_prompt import prompt_to_msg
from tracevla_ros.sim.camera import CameraIntrinsics
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.trajectory import CommandArbiter, JointTrajectoryPlan, TrajectoryError

try:  # franka_ros2 interfaces exist only where franka_ros2 is installed.
    from franka_msgs.action import Grasp, Homing, Move
except ImportError:
    Grasp = Homing = Move = None
try:
    from franka_msgs.action import ErrorRecovery
    from franka_msgs.msg import FrankaRobotState
except ImportError:
    ErrorRecovery = FrankaRobotState = None
try:  # ros2_control's action interface (control_msgs) exists only where it is installed.
    from control_msgs.action import FollowJointTrajectory
except ImportError:
    FollowJointTrajectory = None
try:  # Interbotix interfaces exist only where the Interbotix stack is installed.
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
except ImportError:
    JointGroupCommand = JointSingleCommand = None

# Physics ticks one timer callback may run to catch up with wall time (0.1 s at 100 Hz).
_MAX_CATCHUP = 10


def _next_due(due: float, t: float, period: float) -> float:
    """The next due time on the grid ``due + k * period`` (no drift when a tick is late);
    a whole missed period is skipped, not made up."""
    nxt = due + period
    return nxt if nxt > t + 1e-9 else t + period


# control_msgs/action/FollowJointTrajectory result codes (the JTC's; kept here so the
# bookkeeping below does not need control_msgs to import).
SUCCESSFUL, INVALID_GOAL, INVALID_JOINTS = 0, -1, -2
PATH_TOLERANCE_VIOLATED, GOAL_TOLERANCE_VIOLATED = -4, -5


@dataclass
class _Goal:
    """A FollowJointTrajectory goal the tick is executing."""

    handle: Any
    plan: JointTrajectoryPlan
    names: list[str]
    path_tol: np.ndarray  # (k,) rad/m per goal joint, 0 = not checked
    goal_tol: np.ndarray  # (k,) rad/m, 0 = not checked
    goal_time_tol: float  # s after the last point, 0 = no limit (as the JTC)
    t_end: float  # sim time of the last point [s]
    next_feedback: float = 0.0


def _duration_s(d: Any) -> float:
    return float(d.sec) + float(d.nanosec) * 1e-9


def _camera_info(intr: CameraIntrinsics, header: Header) -> CameraInfo:
    msg = CameraInfo(header=header, width=intr.width, height=intr.height, distortion_model="plumb_bob")
    msg.d = [0.0] * 5
    msg.k = intr.K.reshape(-1).tolist()
    msg.r = np.eye(3).reshape(-1).tolist()
    msg.p = intr.P.reshape(-1).tolist()
    return msg


def _image(arr: np.ndarray, encoding: str, header: Header) -> Image:
    arr = np.ascontiguousarray(arr)
    return Image(header=header, height=arr.shape[0], width=arr.shape[1], encoding=encoding,
                 is_bigendian=0, step=arr.strides[0], data=arr.tobytes())


class SimNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        """``kwargs`` go to ``rclpy.node.Node`` (e.g. ``parameter_overrides`` for in-process use)."""
        super().__init__("sim_node", **kwargs)
        self.cfg = declare_config(self, SimNodeConfig)
        cfg = self.cfg
        self.env = SimEnv(robot=cfg.robot, task=cfg.task or None, seed=cfg.seed)
        spec = self.env.robot.spec
        self._cmd_names = list(spec.ros_joint_names) + [spec.gripper_joints[0]]
        self._substeps = max(1, round(1.0 / (cfg.physics_rate_hz * self.env.model.opt.timestep)))
        self._resets = 0
        self._sim_offset = 0.0  # sim time accumulated over earlier episodes [s]
        self._pending_traj: dict[str, JointTrajectory] = {}  # controller -> newest message
        self._pending_group: np.ndarray | None = None
        self._pending_gripper: float | None = None
        self._arbiter = CommandArbiter(self._cmd_names)
        self._next_cam = self._next_js = 0.0
        self._wall_t0: float | None = None  # wall time of tick 0 (pacing, see _ticks_due)
        self._ticks = 0

        self._pub_rgb = self.create_publisher(Image, cfg.image_topic, SENSOR_QOS)
        self._pub_info = self.create_publisher(CameraInfo, cfg.camera_info_topic, SENSOR_QOS)
        self._pub_depth = self._pub_dinfo = None
        if self.env.has_depth:
            self._pub_depth = self.create_publisher(Image, cfg.depth_topic, SENSOR_QOS)
            self._pub_dinfo = self.create_publisher(CameraInfo, cfg.depth_info_topic, SENSOR_QOS)
        self._pub_js = [self.create_publisher(JointState, "/joint_states", RELIABLE_QOS)]
        if cfg.interbotix_robot_name:
            self._pub_js.append(self.create_publisher(
                JointState, f"/{cfg.interbotix_robot_name}/joint_states", RELIABLE_QOS))
        self._pub_success = self.create_publisher(Bool, "success", RELIABLE_QOS)
        self._pub_instr = self.create_publisher(String, "instruction", LATCHED_QOS)
        self._pub_clock = self.create_publisher(Clock, "/clock", 10) if cfg.stamp_source == "sim" else None
        self._pub_prompt = (self.create_publisher(VisualPrompt, cfg.prompt_topic, PROMPT_QOS)
                            if cfg.oracle_prompt else None)
        self._prompt_rng = self._episode_rng()

        for ctrl in dict.fromkeys(c for c in (cfg.arm_controller, cfg.gripper_controller) if c):
            self.create_subscription(JointTrajectory, f"/{ctrl}/joint_trajectory",
                                     lambda msg, c=ctrl: self._on_joint_trajectory(c, msg), RELIABLE_QOS)
        self.create_subscription(Float64, "~/gripper_command", self._on_gripper_command, RELIABLE_QOS)
        if cfg.interbotix_robot_name:
            ns = f"/{cfg.interbotix_robot_name}/commands"
            if JointGroupCommand is not None and JointSingleCommand is not None:
                self.create_subscription(JointGroupCommand, f"{ns}/joint_group", self._on_joint_group,
                                         RELIABLE_QOS)
                self.create_subscription(JointSingleCommand, f"{ns}/joint_single",
                                         self._on_joint_single, RELIABLE_QOS)
            else:
                self.get_logger().warning("interbotix_xs_msgs is not installed: not subscribing to "
                                          f"{ns}/joint_group and {ns}/joint_single")
        if cfg.franka_gripper_namespace:
            ns = cfg.franka_gripper_namespace
            if Move is not None and Grasp is not None:
                from rclpy.action import ActionServer

                self._actions = [ActionServer(self, Move, f"{ns}/move", self._on_gripper_goal),
                                 ActionServer(self, Grasp, f"{ns}/grasp", self._on_gripper_goal),
                                 ActionServer(self, Homing, f"{ns}/homing", self._on_homing)]
            else:
                self.get_logger().warning(f"franka_msgs is not installed: no {ns}/move, {ns}/grasp "
                                          "action servers (use ~/gripper_command)")
        self._goal: _Goal | None = None
        self._outcomes: dict[bytes, tuple[str, int, str]] = {}  # goal id -> result to send
        self._fjt: Any = None
        if FollowJointTrajectory is not None:
            from rclpy.action import ActionServer, CancelResponse, GoalResponse

            # Goals are accepted here and executed by the tick; the result is produced by the
            # execute callback only once the tick knows it (see _finish_goal): an execute
            # callback that waited would busy-poll or block the single-threaded executor.
            self._fjt = ActionServer(
                self, FollowJointTrajectory, f"/{cfg.arm_controller}/follow_joint_trajectory",
                execute_callback=self._fjt_result,
                goal_callback=lambda _goal: GoalResponse.ACCEPT,
                handle_accepted_callback=self._on_fjt_accepted,
                cancel_callback=lambda _handle: CancelResponse.ACCEPT)
        else:
            self.get_logger().info("control_msgs is not installed: no "
                                   f"/{cfg.arm_controller}/follow_joint_trajectory action server")
        self._reflex = ""  # why the simulated robot is in reflex ('' = it is not)
        self._reflex_armed = True  # re-armed once the contact force fell below half the threshold
        self._robot_bodies = self._find_robot_bodies()
        self._pub_fstate: Any = None
        if (cfg.franka_robot_state_topic or cfg.franka_error_recovery_action) and (
                FrankaRobotState is None or ErrorRecovery is None):
            self.get_logger().warning("franka_msgs is not installed: no robot state topic and no "
                                      "error recovery action server")
        elif cfg.franka_robot_state_topic or cfg.franka_error_recovery_action:
            from rclpy.action import ActionServer

            if cfg.franka_robot_state_topic:
                self._pub_fstate = self.create_publisher(FrankaRobotState,
                                                         cfg.franka_robot_state_topic, RELIABLE_QOS)
            if cfg.franka_error_recovery_action:
                self._recovery = ActionServer(self, ErrorRecovery, cfg.franka_error_recovery_action,
                                              self._on_error_recovery)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(1.0 / cfg.physics_rate_hz, self._on_tick)
        self._pub_instr.publish(String(data=self.env.instruction))
        self.get_logger().info(
            f"{spec.name} / {self.env.task.name} ('{self.env.instruction}'), seed {cfg.seed}; "
            f"commands on /{cfg.arm_controller}/joint_trajectory, images on {cfg.image_topic}")

    # -- callbacks: keep the newest command only -----------------------------------------
    def _on_joint_trajectory(self, controller: str, msg: JointTrajectory) -> None:
        self._pending_traj[controller] = msg

    def _on_gripper_command(self, msg: Float64) -> None:
        self._pending_gripper = float(msg.data)

    def _on_joint_group(self, msg: Any) -> None:
        if msg.name != "arm":
            self.get_logger().warning(f"joint_group '{msg.name}' ignored: only group 'arm' is simulated")
            return
        self._pending_group = np.asarray(msg.cmd, dtype=np.float64)

    def _on_joint_single(self, msg: Any) -> None:
        if msg.name != "gripper":
            self.get_logger().warning(f"joint_single '{msg.name}' ignored: only 'gripper' is simulated")
            return
        self._pending_gripper = 1.0 if msg.cmd > 0 else 0.0

    def _on_gripper_goal(self, goal_handle: Any) -> Any:
        """franka_gripper Move/Grasp: the goal width [m] (finger distance) sets the opening.

        Replies at once (the hand then moves over the next ticks), so the tick is never blocked.
        """
        action = Move if isinstance(goal_handle.request, Move.Goal) else Grasp
        result = action.Result()
        width = float(goal_handle.request.width)
        if not np.isfinite(width) or width < 0.0:
            goal_handle.abort()
            result.error = f"width must be a finite distance >= 0 m, got {width}"
            return result
        s = self.env.robot.spec
        lo, hi = 2.0 * s.gripper_closed, 2.0 * s.gripper_open  # two fingers
        self._pending_gripper = float(np.clip((width - lo) / (hi - lo), 0.0, 1.0))
        goal_handle.succeed()
        result.success = True
        return result

    # -- Franka reflex / error recovery (franka_ros2's interfaces) -------------------------
    def _find_robot_bodies(self) -> set[int]:
        """Bodies of the arm and hand: the first arm joint's body and everything below it."""
        m, r = self.env.model, self.env.robot
        root = int(m.jnt_bodyid[r.arm_jnt[0]])
        out = set()
        for b in range(m.nbody):
            a = b
            while a > 0 and a != root:
                a = int(m.body_parentid[a])
            if a == root:
                out.add(b)
        return out

    def _contact_force(self) -> float:
        """Largest normal force [N] of a contact between the robot and anything else."""
        import mujoco

        m, d = self.env.model, self.env.data
        f = np.zeros(6)
        best = 0.0
        for i in range(d.ncon):
            c = d.contact[i]
            if (int(m.geom_bodyid[c.geom1]) in self._robot_bodies) != (
                    int(m.geom_bodyid[c.geom2]) in self._robot_bodies):
                mujoco.mj_contactForce(m, d, i, f)
                best = max(best, abs(float(f[0])))
        return best

    def _check_reflex(self) -> None:
        thr = self.cfg.reflex_contact_force_n
        if thr <= 0.0 or self._reflex:
            return
        force = self._contact_force()
        if not self._reflex_armed:
            self._reflex_armed = force < thr / 2
            return
        if force <= thr:
            return
        self._reflex = f"cartesian_reflex: contact force {force:.1f} N > {thr} N"
        self._reflex_armed = False
        self.get_logger().error(f"REFLEX ({self._reflex}): holding, commands ignored until error "
                                "recovery")
        s = self.env.robot.spec
        actual = self.env.joint_state().position[: s.dof + 1]
        self._arbiter.clear()
        self._pending_traj.clear()
        self._pending_group = None
        self.env.set_joint_targets(actual[: s.dof])
        self._end_running_goal("abort", PATH_TOLERANCE_VIOLATED, f"robot in reflex ({self._reflex})")

    def _publish_franka_state(self, stamp: Any) -> None:
        if self._pub_fstate is None:
            return
        msg = FrankaRobotState()
        msg.header.stamp = stamp
        msg.header.frame_id = ""
        if self._reflex:
            msg.robot_mode = FrankaRobotState.ROBOT_MODE_REFLEX
            msg.current_errors.cartesian_reflex = True
            msg.last_motion_errors.cartesian_reflex = True
        else:
            msg.robot_mode = (FrankaRobotState.ROBOT_MODE_MOVE if self._arbiter.plans
                              else FrankaRobotState.ROBOT_MODE_IDLE)
        self._pub_fstate.publish(msg)

    def _on_error_recovery(self, handle: Any) -> Any:
        """franka_msgs/ErrorRecovery: clears the reflex (the arm keeps holding where it is)."""
        was, self._reflex = self._reflex, ""
        self.get_logger().warning(f"error recovery: {'cleared ' + was if was else 'no error'}")
        handle.succeed()
        return ErrorRecovery.Result()

    # -- FollowJointTrajectory (the joint_trajectory_controller's action interface) ------
    def _on_fjt_accepted(self, handle: Any) -> None:
        """A new goal: validated and started at once; it preempts the running one, which is
        aborted with an empty (SUCCESSFUL) result, as the JTC's preempt_active_goal does."""
        if self._reflex:
            self._finish_goal(handle, "abort", INVALID_GOAL, f"robot in reflex ({self._reflex})")
            return
        req = handle.request
        traj = req.trajectory
        names = list(traj.joint_names)
        known = self._cmd_names
        unknown = [n for n in names if n not in known]
        unknown_tol = [t.name for t in list(req.path_tolerance) + list(req.goal_tolerance)
                       if t.name not in names]
        if unknown or unknown_tol or len(set(names)) != len(names):
            self._finish_goal(handle, "abort", INVALID_JOINTS,
                              f"unknown or repeated joint(s) {unknown or unknown_tol or names}; "
                              f"this robot has {known}")
            return
        env = self.env
        try:
            plan = self._arbiter.add_trajectory(
                self.cfg.arm_controller, names,
                [_duration_s(p.time_from_start) for p in traj.points],
                [list(p.positions) for p in traj.points], env.command_vector(), env.sim_time)
        except TrajectoryError as exc:
            self._finish_goal(handle, "abort", INVALID_GOAL, str(exc))
            return

        def tol(items: Any) -> np.ndarray:
            by_name = {t.name: float(t.position) for t in items}
            return np.array([max(by_name.get(n, 0.0), 0.0) for n in names])

        old = self._goal
        self._goal = _Goal(handle, plan, names, tol(req.path_tolerance), tol(req.goal_tolerance),
                           max(_duration_s(req.goal_time_tolerance), 0.0),
                           env.sim_time + float(plan.times[-1]))
        if old is not None:
            self._finish_goal(old.handle, "abort", SUCCESSFUL, "preempted by a new goal")

    def _fjt_result(self, handle: Any) -> Any:
        """Execute callback: the outcome is already known (stored by _finish_goal)."""
        status, code, text = self._outcomes.pop(bytes(handle.goal_id.uuid))
        if status == "succeed":
            handle.succeed()
        elif status == "canceled" and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()
        return FollowJointTrajectory.Result(error_code=code, error_string=text)

    def _finish_goal(self, handle: Any, status: str, code: int, text: str) -> None:
        self._outcomes[bytes(handle.goal_id.uuid)] = (status, code, text)
        if code != SUCCESSFUL:
            self.get_logger().warning(f"follow_joint_trajectory goal aborted ({code}): {text}")
        handle.execute(self._fjt_result)  # runs the execute callback: the result goes out

    def _end_running_goal(self, status: str, code: int, text: str,
                          hold_at: np.ndarray | None = None) -> None:
        """End the running goal (if any) with this outcome; ``hold_at``: the measured
        positions to hold, as the JTC does after an abort or a cancel."""
        g, self._goal = self._goal, None
        if g is None:
            return
        if hold_at is not None:
            self._hold_goal_joints(hold_at)
        self._finish_goal(g.handle, status, code, text)

    def _hold_goal_joints(self, actual: np.ndarray) -> None:
        """The JTC holds the measured position after an abort or a cancel."""
        self._arbiter.plans.pop(self.cfg.arm_controller, None)
        s = self.env.robot.spec
        self.env.set_joint_targets(actual[: s.dof])

    def _update_goal(self) -> None:
        g = self._goal
        if g is None:
            return
        t = self.env.sim_time
        s = self.env.robot.spec
        actual_all = self.env.joint_state().position[: s.dof + 1]
        idx = g.plan.indices
        # the plan may have lost joints to a newer command; compare what it still owns
        current = self._arbiter.plans.get(self.cfg.arm_controller)
        if current is not None and current.t0 != g.plan.t0:
            self._end_running_goal("abort", SUCCESSFUL, "preempted by a topic trajectory")
            return
        desired = g.plan.sample(t)
        err = desired - actual_all[idx]
        if t + 1e-9 >= g.next_feedback:
            g.next_feedback = t + 1.0 / self.cfg.joint_state_rate_hz
            fb = FollowJointTrajectory.Feedback(joint_names=g.names)
            fb.header.stamp = self.get_clock().now().to_msg()
            fb.desired.positions = desired.tolist()
            fb.actual.positions = actual_all[idx].tolist()
            fb.error.positions = err.tolist()
            g.handle.publish_feedback(fb)
        if g.handle.is_cancel_requested:
            self._end_running_goal("canceled", SUCCESSFUL, "canceled", hold_at=actual_all)
            return
        over = (g.path_tol > 0) & (np.abs(err) > g.path_tol)
        if t < g.t_end and np.any(over):
            j = int(np.argmax(over))
            self._end_running_goal("abort", PATH_TOLERANCE_VIOLATED,
                                   f"{g.names[j]}: |error| {abs(err[j]):.4f} > path tolerance "
                                   f"{g.path_tol[j]:.4f}", hold_at=actual_all)
            return
        if t + 1e-9 < g.t_end:
            return
        final_err = g.plan.positions[-1] - actual_all[idx]
        bad = (g.goal_tol > 0) & (np.abs(final_err) > g.goal_tol)
        if not np.any(bad):
            self._end_running_goal("succeed", SUCCESSFUL, "")
        elif g.goal_time_tol > 0 and t > g.t_end + g.goal_time_tol:
            j = int(np.argmax(bad))
            self._end_running_goal("abort", GOAL_TOLERANCE_VIOLATED,
                                   f"{g.names[j]}: |error| {abs(final_err[j]):.4f} > goal "
                                   f"tolerance {g.goal_tol[j]:.4f} {g.goal_time_tol} s after the "
                                   "end", hold_at=actual_all)

    def _on_homing(self, goal_handle: Any) -> Any:
        """franka_gripper Homing: the hand opens fully (replies at once, as Move/Grasp)."""
        self._pending_gripper = 1.0
        goal_handle.succeed()
        return Homing.Result(success=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        # Rare operator action: done here (0.3 s of settling) so the reply means "reset done".
        self._sim_offset += self.env.sim_time
        self._resets += 1
        self.env.reset(self.cfg.seed + self._resets)
        self._arbiter.clear()
        self._reflex, self._reflex_armed = "", True  # a new episode starts without a reflex
        self._end_running_goal("abort", SUCCESSFUL, "sim reset")
        self._pending_traj.clear()
        self._pending_group = self._pending_gripper = None
        self._next_cam = self._next_js = 0.0
        self._wall_t0 = None
        self._pub_instr.publish(String(data=self.env.instruction))
        self._prompt_rng = self._episode_rng()
        response.success = True
        response.message = f"episode {self._resets}, seed {self.env.seed}"
        return response

    # -- the tick: apply commands, step, publish ------------------------------------------
    def _now(self) -> float:
        return self._sim_offset + self.env.sim_time

    def _apply_commands(self) -> None:
        env, s, arb = self.env, self.env.robot.spec, self._arbiter
        if self._reflex:  # commands are ignored until error recovery
            self._pending_traj.clear()
            self._pending_group = None
        for ctrl, msg in list(self._pending_traj.items()):
            del self._pending_traj[ctrl]
            try:
                arb.add_trajectory(
                    ctrl, list(msg.joint_names),
                    [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points],
                    [list(p.positions) for p in msg.points], env.command_vector(), env.sim_time)
            except TrajectoryError as exc:
                self.get_logger().error(f"/{ctrl}/joint_trajectory rejected, holding position: {exc}")
        if self._pending_group is not None:
            group, self._pending_group = self._pending_group, None
            if group.shape == (s.dof,) and np.all(np.isfinite(group)):
                arb.take_over(np.arange(s.dof))
                env.set_joint_targets(group)
            else:
                self.get_logger().error(f"joint_group 'arm' needs {s.dof} finite values, got {group.shape}")
        if self._pending_gripper is not None:
            g, self._pending_gripper = self._pending_gripper, None
            if np.isfinite(g):
                arb.take_over(np.array([s.dof]))
                env.set_joint_targets(env.joint_targets(), g)
            else:
                self.get_logger().error(f"gripper_command must be finite in [0, 1], got {g}")
        cmd = arb.sample(env.command_vector(), env.sim_time)
        if cmd is not None:
            env.set_command_vector(cmd)

    def _ticks_due(self) -> int:
        """Physics ticks to run now so that sim time keeps pace with wall time: 1 normally,
        more after a late timer callback (a loaded machine), at most ``_MAX_CATCHUP``; a
        longer stall is not made up (sim time then falls behind, and says so)."""
        now = time.monotonic()
        if self._wall_t0 is None:
            self._wall_t0, self._ticks = now, 0
        due = int((now - self._wall_t0) * self.cfg.physics_rate_hz) + 1 - self._ticks
        if due > _MAX_CATCHUP:
            self.get_logger().warning(
                f"sim fell {due - 1} ticks ({(due - 1) / self.cfg.physics_rate_hz:.2f} s) behind "
                f"wall time: running {_MAX_CATCHUP}, the rest is lost (machine overloaded?)",
                throttle_duration_sec=5.0)
            self._wall_t0 += (due - _MAX_CATCHUP) / self.cfg.physics_rate_hz
            due = _MAX_CATCHUP
        return max(due, 0)

    def _on_tick(self) -> None:
        if not self.context.ok():  # shutting down (e.g. SIGTERM): publishing would fail
            return
        n = self._ticks_due()
        if n == 0:
            return
        for _ in range(n):
            self._apply_commands()
            self.env.advance(self._substeps)
        self._ticks += n
        self._check_reflex()
        self._update_goal()
        t = self.env.sim_time
        if self.cfg.stamp_source == "sim":
            stamp = sec_to_stamp(self._now())
            if self._pub_clock is not None:
                self._pub_clock.publish(Clock(clock=stamp))
        else:
            stamp = self.get_clock().now().to_msg()
        if t + 1e-9 >= self._next_js:
            self._next_js = _next_due(self._next_js, t, 1.0 / self.cfg.joint_state_rate_hz)
            js = self.env.joint_state()
            msg = JointState(header=Header(stamp=stamp, frame_id=""), name=list(js.names),
                             position=js.position.tolist(), velocity=js.velocity.tolist(),
                             effort=js.effort.tolist())
            for pub in self._pub_js:
                pub.publish(msg)
            self._publish_franka_state(stamp)
        if t + 1e-9 >= self._next_cam:
            self._next_cam = _next_due(self._next_cam, t, 1.0 / self.cfg.camera_rate_hz)
            self._publish_camera(stamp)
            self._pub_success.publish(Bool(data=self.env.success()))

    def _episode_rng(self) -> np.random.Generator:
        """The oracle prompt's sampler (points, lines), seeded by the episode's seed."""
        return episode_rng(self.env.seed)

    def _publish_camera(self, stamp: Any) -> None:
        intr = self.env.camera_info()
        header = Header(stamp=stamp, frame_id=intr.frame_id)
        # The frame's prompt goes first, so that policy_node holds it when the frame arrives
        # (the first frame of an episode would otherwise be acted on without one).
        if self._pub_prompt is not None:  # ~4 ms: one segmentation render
            target, _ = self.env.masks()
            prompt = sample_prompt(target, self.cfg.oracle_prompt, self._prompt_rng,
                                   stamp=stamp.sec + stamp.nanosec * 1e-9)
            if prompt is not None:  # out of view: the policy keeps the last one (or none)
                msg = prompt_to_msg(prompt, intr.frame_id)
                msg.header.stamp = stamp  # exactly the frame's (the float above rounds)
                self._pub_prompt.publish(msg)
        self._pub_rgb.publish(_image(self.env.render(), "rgb8", header))
        self._pub_info.publish(_camera_info(intr, header))
        if self._pub_depth is not None and self._pub_dinfo is not None:
            self._pub_depth.publish(_image(self.env.render_depth(), "32FC1", header))
            self._pub_dinfo.publish(_camera_info(intr, header))

    def close(self) -> None:
        self.env.close()


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, args, name="sim_node", config=SimNodeConfig)


if __name__ == "__main__":
    raise SystemExit(main())
