"""franka_controller_node: ee actions and ee waypoint sequences -> IK -> safety -> FR3.

Subscribes: ``action`` (tracevla_ros/PolicyAction, ``ee_delta_7d`` single steps or
chunks), ``ee_waypoints`` (geometry_msgs/PoseArray, hand-TCP waypoints in ``fr3_link0``:
one multi-point trajectory), joint states. Publishes trajectory_msgs/JointTrajectory on
``/<arm_controller>/joint_trajectory`` (the topic form of fr3_arm_controller) or, with
``interface: trajectory_action``, control_msgs/FollowJointTrajectory goals on
``/<arm_controller>/follow_joint_trajectory`` (nodes/trajectory_action.py); gripper via
the franka_gripper actions ``<gripper_namespace>/move`` (open) and ``.../grasp`` (close), or,
with ``gripper_namespace: ''`` and ``gripper_command_topic`` set, a std_msgs/Float64 openness
(1 = open, 0 = closed) on that topic: sim_node's ``~/gripper_command``, for simulation
where franka_msgs (franka_ros2) is not installed.
``dry_run``: commands go to ``~/would_send`` instead. Services ``~/estop``/``~/reset``,
status on ``/diagnostics``. IK only: moveit_py (collision-aware planning) is not used;
the start-up log says whether it is installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import PoseArray
from std_msgs.msg import Float64
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from tracevla_ros.config import ConfigError
from tracevla_ros.control.controller_config import FrankaControllerConfig
from tracevla_ros.control.safety import Intervention
from tracevla_ros.nodes.arm_controller_node import ArmControllerNodeBase, trajectory_msg
from tracevla_ros.nodes.common import RELIABLE_QOS, run_node


def _quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(n) or n < 1e-9:
        return np.full((3, 3), np.nan)  # rejected by the safety filter
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class FrankaControllerNode(ArmControllerNodeBase):
    ROBOTS = ("fr3",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("franka_controller_node", FrankaControllerConfig, **kwargs)
        cfg = self.cfg
        topic = "~/would_send" if cfg.dry_run else f"/{cfg.arm_controller}/joint_trajectory"
        self._arm = self.create_publisher(JointTrajectory, topic, RELIABLE_QOS)
        if cfg.interface == "trajectory_action" and not cfg.dry_run:
            topic = self._make_action_sink().name
        self._gripper_state = "none"  # last franka_gripper goal and its result, for /diagnostics
        self._homing: Any = None
        self._move: Any = None  # rclpy ActionClient when the gripper is enabled
        self._grasp: Any = None
        self._gripper_topic: Any = None  # Float64 openness publisher (sim without franka_msgs)
        if cfg.gripper_command_topic and not cfg.dry_run:
            self._gripper_topic = self.create_publisher(Float64, cfg.gripper_command_topic,
                                                        RELIABLE_QOS)
        if cfg.gripper_namespace and not cfg.dry_run:
            try:
                from franka_msgs.action import Grasp, Move
                from rclpy.action import ActionClient
            except ImportError:
                raise ConfigError("gripper_namespace is set but franka_msgs is not installed "
                                  "(franka_ros2); install it or set gripper_namespace:='' "
                                  "to run without the gripper") from None
            from franka_msgs.action import Homing

            self._Move, self._Grasp, self._Homing = Move, Grasp, Homing
            self._move = ActionClient(self, Move, f"{cfg.gripper_namespace}/move")
            self._grasp = ActionClient(self, Grasp, f"{cfg.gripper_namespace}/grasp")
            self._homing = ActionClient(self, Homing, f"{cfg.gripper_namespace}/homing")
            self.create_service(Trigger, "~/home_gripper", self._on_home_gripper)
        self.create_subscription(PoseArray, cfg.waypoints_topic, self._on_waypoints, RELIABLE_QOS,
                                 callback_group=self.control_group)
        self._watch = "off"  # robot state watching, for /diagnostics
        self._recovery: Any = None  # ErrorRecovery ActionClient
        self._recovery_state = "none"
        self._recovered_at = 0.0  # node time [s] of the last successful recovery
        if cfg.robot_state_topic and not cfg.dry_run:
            try:
                from franka_msgs.action import ErrorRecovery
                from franka_msgs.msg import FrankaRobotState
                from rclpy.action import ActionClient
            except ImportError:
                self._watch = "not watched: franka_msgs is not installed"
                self.get_logger().warning(f"robot_state_topic '{cfg.robot_state_topic}' is set but "
                                          "franka_msgs is not installed: Franka reflexes are not "
                                          "watched (set robot_state_topic:='' to silence this)")
            else:
                from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

                self._FrankaRobotState, self._ErrorRecovery = FrankaRobotState, ErrorRecovery
                self._error_fields = [f for f in FrankaRobotState().current_errors.get_fields_and_field_types()]
                faults = MutuallyExclusiveCallbackGroup()
                self.create_subscription(FrankaRobotState, cfg.robot_state_topic,
                                         self._on_robot_state, RELIABLE_QOS, callback_group=faults)
                self._recovery = ActionClient(self, ErrorRecovery, cfg.error_recovery_action,
                                              callback_group=faults)
                self.create_service(Trigger, "~/recover", self._on_recover, callback_group=faults)
                self._watch = cfg.robot_state_topic
        try:
            import moveit  # noqa: F401  (moveit_py)
            planner = "moveit_py installed but not used: IK only (no collision-aware planning)"
        except ImportError:
            planner = "moveit_py not installed: IK only (no collision-aware planning)"
        self.get_logger().info(f"{self.spec.name}: {topic}{' (DRY RUN)' if cfg.dry_run else ''}, "
                               f"gripper '{cfg.gripper_namespace or cfg.gripper_command_topic or 'off'}'"
                               f"; {planner}")

    # --- Franka reflexes and error recovery ----------------------------------------
    def _diagnostics_extra(self) -> dict[str, str]:
        return {"dry_run": str(self.cfg.dry_run), "interface": self.cfg.interface,
                "robot_state": self._watch, "recovery": self._recovery_state,
                "gripper": self._gripper_state}

    def _on_robot_state(self, msg: Any) -> None:
        errors = [f for f in self._error_fields if getattr(msg.current_errors, f)]
        reflex = msg.robot_mode == self._FrankaRobotState.ROBOT_MODE_REFLEX
        if not (reflex or errors):
            return
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if stamp and stamp <= self._recovered_at:
            return  # published before the recovery that cleared it
        with self._lock:
            if self._fault:
                return
            self._fault = (f"reflex (robot_mode {msg.robot_mode}"
                           + (f"; {', '.join(errors)}" if errors else "") + "): call ~/recover")
            out = self.core.hold(self._now(), Intervention("robot_fault", self._fault))
            self._holding = True
        self.get_logger().error(f"Franka {self._fault}; holding, actions blocked")
        self._send(out)

    def _on_recover(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        """~/recover: franka_ros2's ErrorRecovery action; actions resume once it succeeds.
        Answers at once (no callback waits): the outcome goes to the log and /diagnostics."""
        if not self._fault:
            resp.success, resp.message = False, "no robot fault to recover from"
            return resp
        if not self._recovery.server_is_ready():
            resp.success, resp.message = False, (f"error recovery server "
                                                 f"{self.cfg.error_recovery_action} not available")
            return resp
        self._recovery_state = "requested"
        self._recovery.send_goal_async(self._ErrorRecovery.Goal()).add_done_callback(
            self._on_recovery_accepted)
        resp.success = True
        resp.message = "error recovery requested; actions resume when it succeeds (see /diagnostics)"
        return resp

    def _on_recovery_accepted(self, fut: Any) -> None:
        handle = fut.result() if fut.exception() is None else None
        if handle is None or not handle.accepted:
            self._recovery_state = "rejected"
            self.get_logger().error("error recovery goal rejected: still blocked")
            return
        handle.get_result_async().add_done_callback(self._on_recovery_result)

    def _on_recovery_result(self, fut: Any) -> None:
        from action_msgs.msg import GoalStatus

        res = fut.result()
        if res is None or res.status != GoalStatus.STATUS_SUCCEEDED:
            self._recovery_state = f"failed (status {getattr(res, 'status', '?')})"
            self.get_logger().error(f"error recovery {self._recovery_state}: still blocked")
            return
        with self._lock:
            was, self._fault = self._fault, ""
            self._recovered_at = self.get_clock().now().nanoseconds * 1e-9
        self._recovery_state = "succeeded"
        self.get_logger().warning(f"error recovery succeeded ({was}): actions accepted again")

    # --- output -------------------------------------------------------------------
    def _emit(self, q: np.ndarray, gripper_open: bool | None) -> None:
        if self._action_sink is not None:
            self._action_sink.send(q, hold=self._holding)
        else:
            stamp = self.get_clock().now().to_msg()
            self._arm.publish(trajectory_msg(self._names, [list(q)], [self.cfg.point_time_s],
                                             stamp))
        if gripper_open is not None:
            self._command_gripper(gripper_open)

    def _command_gripper(self, is_open: bool) -> None:
        if self._gripper_topic is not None:
            self._gripper_topic.publish(Float64(data=1.0 if is_open else 0.0))
            return
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
        what = "move" if is_open else "grasp"
        self._gripper_state = f"{what}: sent"
        client.send_goal_async(goal).add_done_callback(
            lambda f: self._on_gripper_response(what, f))

    def _on_gripper_response(self, what: str, fut: Any) -> None:
        handle = fut.result() if fut.exception() is None else None
        if handle is None or not handle.accepted:
            self._gripper_state = f"{what}: rejected"
            self.get_logger().error(f"franka gripper {what} goal rejected")
            return
        handle.get_result_async().add_done_callback(lambda f: self._on_gripper_result(what, f))

    def _on_gripper_result(self, what: str, fut: Any) -> None:
        from action_msgs.msg import GoalStatus

        res = fut.result()
        ok = res is not None and res.status == GoalStatus.STATUS_SUCCEEDED and res.result.success
        if ok:
            self._gripper_state = f"{what}: succeeded"
            return
        err = getattr(getattr(res, "result", None), "error", "") or f"status {getattr(res, 'status', '?')}"
        self._gripper_state = f"{what}: failed ({err})"
        self.get_logger().error(f"franka gripper {what} failed: {err}")

    def _on_home_gripper(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        """~/home_gripper: franka_gripper's Homing action (answers at once; result on
        /diagnostics 'gripper')."""
        if self._homing is None or not self._homing.server_is_ready():
            resp.success, resp.message = False, "franka gripper homing server not available"
            return resp
        self._gripper_state = "homing: sent"
        self._homing.send_goal_async(self._Homing.Goal()).add_done_callback(
            lambda f: self._on_gripper_response("homing", f))
        resp.success, resp.message = True, "homing requested (result on /diagnostics 'gripper')"
        return resp

    def _on_waypoints(self, msg: PoseArray) -> None:
        if not msg.poses or not self._frame_ok(msg.header.frame_id, "waypoints"):
            return
        pos = np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses])
        rot = np.array([_quat_to_matrix(p.orientation.x, p.orientation.y, p.orientation.z,
                                        p.orientation.w) for p in msg.poses])
        with self._lock:
            if self.core.estop.latched:
                self.core.counts["estop"] += 1
                return
            if self._fault:
                self.core.counts["robot_fault"] += 1
                return
            now = self._now()
            plan = self.core.plan_waypoints(pos, rot, now, self.cfg.waypoint_speed)
            # the trajectory counts as a fresh action until it ends: the watchdog starts then
            self.core.action_time = now + (float(plan.times[-1]) if len(plan.times) else 0.0)
            self._holding = False
        for r in plan.interventions:
            self.get_logger().warning(f"waypoints [{r.check}]: {r.reason}", throttle_duration_sec=1.0)
        if len(plan.q) and self._action_sink is not None:
            self._action_sink.send_points(plan.q.tolist(), plan.times.tolist())
        elif len(plan.q):
            self._arm.publish(trajectory_msg(self._names, plan.q.tolist(), plan.times.tolist(),
                                             self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> int:
    return run_node(FrankaControllerNode, args, name="franka_controller_node",
                    config=FrankaControllerConfig)
