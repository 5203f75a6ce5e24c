"""franka_controller_node: ee actions and ee waypoint sequences -> IK -> safety -> FR3.

Subscribes: ``action`` (tracevla_ros/PolicyAction, ``ee_delta_7d`` single steps or
chunks), ``ee_waypoints`` (geometry_msgs/PoseArray, hand-TCP waypoints in ``fr3_link0``:
one multi-point trajectory), joint states. Publishes trajectory_msgs/JointTrajectory on
``/<arm_controller>/joint_trajectory`` (the topic form of fr3_arm_controller); gripper via
the franka_gripper actions ``<gripper_namespace>/move`` (open) and ``.../grasp`` (close).
``dry_run``: commands go to ``~/would_send`` instead. Services ``~/estop``/``~/reset``,
status on ``/diagnostics``. IK only: moveit_py (collision-aware planning) is not used;
the start-up log says whether it is installed.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from tracevla_ros.config import ConfigError
from tracevla_ros.control.action import ActionError
from tracevla_ros.control.arm_controller import ArmController, StepOutput
from tracevla_ros.control.controller_config import FrankaControllerConfig
from tracevla_ros.control.safety import Intervention
from tracevla_ros.msg import PolicyAction
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS, declare_config, run_node
from tracevla_ros.nodes.widowx_controller_node import diagnostics_msg, trajectory_msg
from tracevla_ros.robots import get_robot


def _quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(n) or n < 1e-9:
        return np.full((3, 3), np.nan)  # rejected by the safety filter
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class FrankaControllerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("franka_controller_node", **kwargs)
        self.cfg = cfg = declare_config(self, FrankaControllerConfig)
        self.spec = get_robot(cfg.robot)
        self.core = ArmController(self.spec, cfg.safety_config(self.spec), cfg.hysteresis(),
                                  cfg.ik_options())
        self._lock = threading.Lock()
        self._index: list[int] | None = None
        self._names_seen: list[str] = []
        self._next_step_t = 0.0
        self._holding = False
        self._gripper_sent: bool | None = None
        self._names = list(self.spec.ros_joint_names)
        topic = "~/would_send" if cfg.dry_run else f"/{cfg.arm_controller}/joint_trajectory"
        self._arm = self.create_publisher(JointTrajectory, topic, RELIABLE_QOS)
        self._move: Any = None  # rclpy ActionClient when the gripper is enabled
        self._grasp: Any = None
        if cfg.gripper_namespace and not cfg.dry_run:
            try:
                from franka_msgs.action import Grasp, Move
                from rclpy.action import ActionClient
            except ImportError:
                raise ConfigError("gripper_namespace is set but franka_msgs is not installed "
                                  "(franka_ros2); install it or set gripper_namespace:='' "
                                  "to run without the gripper") from None
            self._Move, self._Grasp = Move, Grasp
            self._move = ActionClient(self, Move, f"{cfg.gripper_namespace}/move")
            self._grasp = ActionClient(self, Grasp, f"{cfg.gripper_namespace}/grasp")
        control = MutuallyExclusiveCallbackGroup()
        safety = MutuallyExclusiveCallbackGroup()
        self.create_subscription(JointState, cfg.joint_states_topic,
                                 self._on_joint_states, SENSOR_QOS, callback_group=control)
        self.create_subscription(PolicyAction, cfg.action_topic, self._on_action, RELIABLE_QOS,
                                 callback_group=control)
        self.create_subscription(PoseArray, cfg.waypoints_topic, self._on_waypoints, RELIABLE_QOS,
                                 callback_group=control)
        self.create_timer(min(0.02, cfg.step_period_s / 4), self._on_control_tick, callback_group=control)
        self.create_timer(min(0.05, cfg.watchdog_timeout_s / 4), self._on_watchdog, callback_group=safety)
        self.create_service(Trigger, "~/estop", self._on_estop, callback_group=safety)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=safety)
        self._diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        self.create_timer(cfg.diagnostics_period_s, self._on_diagnostics, callback_group=safety)
        try:
            import moveit  # noqa: F401  (moveit_py)
            planner = "moveit_py installed but not used: IK only (no collision-aware planning)"
        except ImportError:
            planner = "moveit_py not installed: IK only (no collision-aware planning)"
        self.get_logger().info(f"{self.spec.name}: {topic}{' (DRY RUN)' if cfg.dry_run else ''}, "
                               f"gripper '{cfg.gripper_namespace or 'off'}'; {planner}")

    # --- output -------------------------------------------------------------------
    def _send(self, out: StepOutput) -> None:
        for r in out.interventions:
            self.get_logger().warning(f"safety [{r.check}]: {r.reason}", throttle_duration_sec=1.0)
        if not out.command.send or out.command.q is None:
            return
        stamp = self.get_clock().now().to_msg()
        self._arm.publish(trajectory_msg(self._names, [list(out.command.q)], [self.cfg.step_period_s], stamp))
        if out.gripper_open != self._gripper_sent:
            self._gripper_sent = out.gripper_open
            self._command_gripper(out.gripper_open)

    def _command_gripper(self, is_open: bool) -> None:
        if self._move is None or self._grasp is None:
            return
        cfg = self.cfg
        if is_open:
            goal = self._Move.Goal(width=cfg.gripper_width_open, speed=cfg.gripper_speed)
            client = self._move
        else:
            goal = self._Grasp.Goal(width=0.0, speed=cfg.gripper_speed, force=cfg.grasp_force)
            goal.epsilon.inner, goal.epsilon.outer = 0.005, cfg.gripper_width_open  # any object width
            client = self._grasp
        if not client.server_is_ready():
            self.get_logger().error("franka gripper action server not available: gripper command "
                                    "dropped", throttle_duration_sec=5.0)
            return
        client.send_goal_async(goal)

    # --- callbacks -------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_states(self, msg: JointState) -> None:
        names = list(msg.name)
        if self._index is None or names != self._names_seen:
            try:
                self._index = [names.index(n) for n in self._names]
                self._names_seen = names
            except ValueError:
                self.get_logger().error(f"joint_states lacks arm joints {self._names}", throttle_duration_sec=5.0)
                return
        q = [msg.position[i] if i < len(msg.position) else float("nan") for i in self._index]
        with self._lock:
            self.core.update_state(q, self._now())

    def _frame_ok(self, frame_id: str) -> bool:
        if frame_id and frame_id != self.cfg.base_frame:
            self.get_logger().error(f"frame '{frame_id}' != base_frame '{self.cfg.base_frame}': ignored",
                                    throttle_duration_sec=5.0)
            return False
        return True

    def _on_action(self, msg: PolicyAction) -> None:
        if msg.action_space != "ee_delta_7d" or not self._frame_ok(msg.header.frame_id):
            if msg.action_space != "ee_delta_7d":
                self.get_logger().error(f"action_space '{msg.action_space}' not supported", throttle_duration_sec=5.0)
            return
        with self._lock:
            if self.core.estop.latched:
                self.core.counts["estop"] += 1
                return
            try:
                self.core.push_action(msg.values, msg.chunk_length, msg.action_dim, self._now())
            except ActionError as exc:
                self.core.counts["bad_action"] += 1
                self.get_logger().error(f"action rejected: {exc}", throttle_duration_sec=2.0)
                return
            self._holding = False
            self._next_step_t = 0.0

    def _on_waypoints(self, msg: PoseArray) -> None:
        if not msg.poses or not self._frame_ok(msg.header.frame_id):
            return
        pos = np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses])
        rot = np.array([_quat_to_matrix(p.orientation.x, p.orientation.y, p.orientation.z,
                                        p.orientation.w) for p in msg.poses])
        with self._lock:
            if self.core.estop.latched:
                self.core.counts["estop"] += 1
                return
            now = self._now()
            plan = self.core.plan_waypoints(pos, rot, now, self.cfg.waypoint_speed)
            # the trajectory counts as a fresh action until it ends: the watchdog starts then
            self.core.action_time = now + (float(plan.times[-1]) if len(plan.times) else 0.0)
            self._holding = False
        for r in plan.interventions:
            self.get_logger().warning(f"waypoints [{r.check}]: {r.reason}", throttle_duration_sec=1.0)
        if len(plan.q):
            self._arm.publish(trajectory_msg(self._names, plan.q.tolist(), plan.times.tolist(),
                                             self.get_clock().now().to_msg()))

    def _on_control_tick(self) -> None:
        now = self._now()
        with self._lock:
            if not self.core.pending or now < self._next_step_t:
                return
            out = self.core.step(now)
            self._next_step_t = now + self.cfg.step_period_s
        if out is not None:
            self._send(out)

    def _on_watchdog(self) -> None:
        with self._lock:
            if self._holding or not self.core.watchdog_due(self._now()):
                return
            self._holding = True
            out = self.core.hold(self._now(), Intervention(
                "watchdog", f"no action for {self.cfg.watchdog_timeout_s} s: holding position"))
        self._send(out)

    def _on_estop(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            out = self.core.hold(self._now(), self.core.estop.trigger("~/estop service"))
            self._holding = True
        self._send(out)
        self.get_logger().error("E-STOP latched: holding position until ~/reset")
        resp.success, resp.message = True, "e-stop latched; call ~/reset to release"
        return resp

    def _on_reset(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._lock:
            was = self.core.estop.reset()
        self.get_logger().warning("e-stop released" if was else "reset: e-stop was not latched")
        resp.success, resp.message = True, "released" if was else "was not latched"
        return resp

    def _on_diagnostics(self) -> None:
        with self._lock:
            msg = diagnostics_msg(self, self.core, {"dry_run": str(self.cfg.dry_run)})
        self._diag.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(FrankaControllerNode, args)
