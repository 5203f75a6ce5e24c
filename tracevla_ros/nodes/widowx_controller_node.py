"""widowx_controller_node: PolicyAction (ee_delta_7d) -> IK -> safety -> WidowX-250s.

Subscribes: ``action`` (tracevla_ros/PolicyAction), joint states (sensor_msgs/JointState,
``/<robot_name>/joint_states`` or ``/joint_states``). Commands the arm through the
``interface`` parameter: ``trajectory`` (ros2_control trajectory_msgs/JointTrajectory on
``/<arm_controller>/joint_trajectory``, gripper on ``/<gripper_controller>/joint_trajectory``),
``interbotix_topic`` (interbotix_xs_msgs JointGroupCommand "arm" on
``/<robot_name>/commands/joint_group``, JointSingleCommand "gripper" on ``.../joint_single``)
or ``interbotix_api`` (interbotix_xs_modules). ``dry_run``: everything goes to
``~/would_send`` (JointTrajectory, arm joints + the actuated finger) instead.
Services ``~/estop`` and ``~/reset`` (std_srvs/Trigger); status on ``/diagnostics``.
The algorithm lives in tracevla_ros.control.arm_controller (no rclpy).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from tracevla_ros.config import ConfigError
from tracevla_ros.control.action import ActionError
from tracevla_ros.control.arm_controller import ArmController, StepOutput
from tracevla_ros.control.controller_config import WidowXControllerConfig
from tracevla_ros.control.safety import Intervention
from tracevla_ros.msg import PolicyAction
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS, declare_config, run_node
from tracevla_ros.robots import RobotSpec, get_robot

Sink = Callable[[np.ndarray, "bool | None"], None]  # (q, gripper_open or None = unchanged)


def trajectory_msg(names: list[str], points: list[list[float]], times: list[float],
                   stamp: Any) -> JointTrajectory:
    """JointTrajectory with one point per row of ``points`` [rad] at ``times`` [s]."""
    msg = JointTrajectory(joint_names=names)
    msg.header.stamp = stamp
    for q, t in zip(points, times):
        sec = int(t)
        msg.points.append(JointTrajectoryPoint(
            positions=[float(v) for v in q],
            time_from_start=Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)))))
    return msg


def diagnostics_msg(node: Node, core: ArmController, extra: dict[str, str]) -> DiagnosticArray:
    """One DiagnosticStatus: e-stop state and intervention counts per check."""
    st = DiagnosticStatus(name=f"{node.get_name()}: safety", hardware_id=core.spec.name)
    st.level = DiagnosticStatus.ERROR if core.estop.latched else (
        DiagnosticStatus.WARN if core.counts.get("watchdog") or core.counts.get("stale_state")
        else DiagnosticStatus.OK)
    st.message = "e-stop latched" if core.estop.latched else "running"
    kv = {"estop_latched": str(core.estop.latched), "steps": str(core.steps_done), **extra}
    kv.update({f"interventions.{k}": str(v) for k, v in sorted(core.counts.items())})
    st.values = [KeyValue(key=k, value=v) for k, v in kv.items()]
    out = DiagnosticArray(status=[st])
    out.header.stamp = node.get_clock().now().to_msg()
    return out


class WidowXControllerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("widowx_controller_node", **kwargs)
        self.cfg = cfg = declare_config(self, WidowXControllerConfig)
        self.spec: RobotSpec = get_robot(cfg.robot)
        self.core = ArmController(self.spec, cfg.safety_config(self.spec), cfg.hysteresis(),
                                  cfg.ik_options())
        self._lock = threading.Lock()  # the core is shared by the two callback groups
        self._index: list[int] | None = None
        self._names_seen: list[str] = []
        self._next_step_t = 0.0
        self._gripper_sent: bool | None = None
        self._holding = False
        self._sink = self._make_sink()
        control = MutuallyExclusiveCallbackGroup()
        safety = MutuallyExclusiveCallbackGroup()  # watchdog + e-stop never wait on IK
        self.create_subscription(JointState, cfg.state_topic(), self._on_joint_states,
                                 SENSOR_QOS, callback_group=control)
        self.create_subscription(PolicyAction, cfg.action_topic, self._on_action, RELIABLE_QOS,
                                 callback_group=control)
        # ticks fast; chunk steps are executed step_period_s apart, a new action at once
        self.create_timer(min(0.02, cfg.step_period_s / 4), self._on_control_tick,
                          callback_group=control)
        self.create_timer(min(0.05, cfg.watchdog_timeout_s / 4), self._on_watchdog,
                          callback_group=safety)
        self.create_service(Trigger, "~/estop", self._on_estop, callback_group=safety)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=safety)
        self._diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        self.create_timer(cfg.diagnostics_period_s, self._on_diagnostics, callback_group=safety)
        self.get_logger().info(
            f"{self.spec.name}: interface {cfg.interface}{' (DRY RUN -> ~/would_send)' if cfg.dry_run else ''}, "
            f"state {cfg.state_topic()}, step {cfg.step_period_s} s, watchdog {cfg.watchdog_timeout_s} s")

    # --- command sinks ---------------------------------------------------------
    def _make_sink(self) -> Sink:
        cfg, spec = self.cfg, self.spec
        names = list(spec.ros_joint_names)
        if cfg.dry_run or cfg.interface == "trajectory":
            topic = "~/would_send" if cfg.dry_run else f"/{cfg.arm_controller}/joint_trajectory"
            arm = self.create_publisher(JointTrajectory, topic, RELIABLE_QOS)
            grip = None
            if not cfg.dry_run and cfg.gripper_controller:
                grip = self.create_publisher(JointTrajectory, f"/{cfg.gripper_controller}/joint_trajectory",
                                             RELIABLE_QOS)

            def send_traj(q: np.ndarray, g: bool | None) -> None:
                stamp = self.get_clock().now().to_msg()
                gpos = spec.gripper_position(1.0 if (g if g is not None else self.core.gripper.is_open) else 0.0)
                if cfg.dry_run:
                    arm.publish(trajectory_msg(names + [spec.gripper_joints[0]], [list(q) + [gpos]],
                                               [cfg.step_period_s], stamp))
                    return
                arm.publish(trajectory_msg(names, [list(q)], [cfg.step_period_s], stamp))
                if grip is not None and g is not None:
                    grip.publish(trajectory_msg([spec.gripper_joints[0]], [[gpos]], [cfg.step_period_s], stamp))
            return send_traj
        if cfg.interface == "interbotix_topic":
            try:
                from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
            except ImportError:
                raise ConfigError("interface 'interbotix_topic' needs interbotix_xs_msgs (Interbotix "
                                  "ROS 2 packages; source their workspace) or use interface "
                                  "'trajectory'") from None
            group = self.create_publisher(JointGroupCommand, f"/{cfg.robot_name}/commands/joint_group", RELIABLE_QOS)
            single = self.create_publisher(JointSingleCommand, f"/{cfg.robot_name}/commands/joint_single",
                                           RELIABLE_QOS)

            def send_xs(q: np.ndarray, g: bool | None) -> None:
                group.publish(JointGroupCommand(name="arm", cmd=[float(v) for v in q]))
                if g is not None:
                    single.publish(JointSingleCommand(
                        name="gripper", cmd=cfg.gripper_open_cmd if g else cfg.gripper_closed_cmd))
            return send_xs
        try:
            from interbotix_xs_modules.xs_robot.arm import InterbotixManipulatorXS
        except ImportError:
            raise ConfigError("interface 'interbotix_api' needs interbotix_xs_modules (Interbotix "
                              "Python API) or use interface 'trajectory'") from None
        bot = InterbotixManipulatorXS(robot_model=cfg.robot_name, group_name="arm", gripper_name="gripper")

        def send_api(q: np.ndarray, g: bool | None) -> None:
            bot.arm.set_joint_positions([float(v) for v in q], blocking=False)
            if g is not None:
                (bot.gripper.release if g else bot.gripper.grasp)()
        return send_api

    def _send(self, out: StepOutput) -> None:
        for r in out.interventions:
            self.get_logger().warning(f"safety [{r.check}]: {r.reason}", throttle_duration_sec=1.0)
        if not out.command.send or out.command.q is None:
            return
        g = out.gripper_open if out.gripper_open != self._gripper_sent else None
        self._sink(out.command.q, g)
        if g is not None:
            self._gripper_sent = g

    # --- callbacks ---------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_states(self, msg: JointState) -> None:
        names = list(msg.name)
        if self._index is None or names != self._names_seen:
            try:
                self._index = [names.index(n) for n in self.spec.ros_joint_names]
                self._names_seen = names
            except ValueError:
                self.get_logger().error(f"joint_states lacks arm joints {self.spec.ros_joint_names}",
                                        throttle_duration_sec=5.0)
                return
        q = [msg.position[i] if i < len(msg.position) else float("nan") for i in self._index]
        with self._lock:
            self.core.update_state(q, self._now())

    def _on_action(self, msg: PolicyAction) -> None:
        if msg.action_space != "ee_delta_7d":
            self.get_logger().error(f"action_space '{msg.action_space}' not supported (ee_delta_7d only)",
                                    throttle_duration_sec=5.0)
            return
        if msg.header.frame_id and msg.header.frame_id != self.cfg.base_frame:
            self.get_logger().error(f"action frame '{msg.header.frame_id}' != base_frame "
                                    f"'{self.cfg.base_frame}': ignored", throttle_duration_sec=5.0)
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
            self._next_step_t = 0.0  # the control tick executes the first step next

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
            rec = self.core.estop.trigger("~/estop service")
            out = self.core.hold(self._now(), rec)
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
            msg = diagnostics_msg(self, self.core, {"interface": self.cfg.interface,
                                                    "dry_run": str(self.cfg.dry_run)})
        self._diag.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(WidowXControllerNode, args)
