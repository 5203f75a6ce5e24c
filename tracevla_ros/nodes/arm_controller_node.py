"""The ROS side both arm controllers share (no executable of its own).

``ArmControllerNodeBase`` wires a ``tracevla_ros.control.arm_controller.ArmController``
(the algorithm: action integration, IK, safety; no rclpy) to ROS: joint states and
PolicyAction in, a fast control tick, the watchdog, ``~/estop``/``~/reset``
(std_srvs/Trigger) and ``/diagnostics``. Control callbacks and the safety callbacks
(watchdog, e-stop) are in separate mutually exclusive groups. Every process of the
stack runs a single-threaded executor (rclpy's multi-threaded one busy-spins in the
pinned wheels), so an e-stop request waits at most for the one control callback in
progress: an IK solve and a publish, ~0.1 ms (``tracevla-bench estop`` measures the
request -> hold command time). A new action's first step is executed in the action
callback itself, not on the next control tick. ``close()`` (shutdown, Ctrl-C, parent
gone) sends a hold command before the node goes away. A robot node subclasses it and
implements ``_emit`` (how a command reaches its hardware interface).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration as Duration_
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from tracevla_ros.config import ConfigError
from tracevla_ros.control.action import ActionError
from tracevla_ros.control.arm_controller import ArmController, StepOutput
from tracevla_ros.control.safety import Intervention
from tracevla_ros.loopstats import percentiles
from tracevla_ros.msg import PolicyAction
from tracevla_ros.nodes.common import RELIABLE_QOS, SENSOR_QOS, declare_config, stamp_to_sec
from tracevla_ros.robots import RobotSpec, get_robot


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
    st.level = DiagnosticStatus.ERROR if core.estop.latched or extra.get(
        "robot_fault", "none") != "none" else (
        DiagnosticStatus.WARN if core.counts.get("watchdog") or core.counts.get("stale_state")
        or core.counts.get("trajectory_aborted") else DiagnosticStatus.OK)
    st.message = "e-stop latched" if core.estop.latched else (
        f"robot fault: {extra['robot_fault']}" if extra.get("robot_fault", "none") != "none" else
        f"holding: {extra['hold_reason']}" if extra.get("hold_reason", "none") != "none"
        else "running")
    kv = {"estop_latched": str(core.estop.latched), "steps": str(core.steps_done), **extra}
    react = percentiles(list(core.reaction_s))  # frame of a used action/chunk -> its first step
    if react.get("n"):
        kv.update({"reaction_ms.p50": str(react["p50_ms"]), "reaction_ms.p95": str(react["p95_ms"])})
    kv.update({f"interventions.{k}": str(v) for k, v in sorted(core.counts.items())})
    st.values = [KeyValue(key=k, value=v) for k, v in kv.items()]
    out = DiagnosticArray(status=[st])
    out.header.stamp = node.get_clock().now().to_msg()
    return out


class ArmControllerNodeBase(Node):
    """Shared controller node; ``cfg`` is a WidowX/Franka controller config dataclass."""

    ROBOTS: tuple[str, ...] = ()  # registry names of the robots a subclass drives; () = any

    def __init__(self, node_name: str, config_cls: type, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.cfg: Any = declare_config(self, config_cls)
        cfg: Any = self.cfg
        self.spec: RobotSpec = get_robot(cfg.robot)
        if self.ROBOTS and self.spec.name not in self.ROBOTS:  # before anything is published
            raise ConfigError(f"parameter 'robot' = '{cfg.robot}': {node_name} drives "
                              f"{' or '.join(self.ROBOTS)} only; start the controller node of "
                              f"'{self.spec.name}' instead")
        self.core = ArmController(self.spec, cfg.safety_config(self.spec), cfg.hysteresis(),
                                  cfg.ik_options(), cfg.chunk_config(), settle_s=cfg.point_time_s)
        self._lock = threading.Lock()  # the core is shared by the two callback groups
        self._names = list(self.spec.ros_joint_names)
        self._index: list[int] | None = None
        self._names_seen: list[str] = []
        self._next_step_t = 0.0
        self._chunk_paced = False  # the next step is the one an arriving action asked for
        self._gripper_sent: bool | None = None
        self._holding = False
        self._hold_reason = ""  # why the arm holds after a failed action goal ('' = it does not)
        self._fault = ""  # a robot fault (Franka reflex) blocking actions until recovered
        self._action_sink: Any = None  # TrajectoryActionSink with interface trajectory_action
        self.control_group = MutuallyExclusiveCallbackGroup()
        safety = MutuallyExclusiveCallbackGroup()  # watchdog + e-stop never wait on IK
        self.create_subscription(JointState, self._state_topic(), self._on_joint_states,
                                 SENSOR_QOS, callback_group=self.control_group)
        self.create_subscription(PolicyAction, cfg.action_topic, self._on_action, RELIABLE_QOS,
                                 callback_group=self.control_group)
        # ticks fast; chunk steps are executed step_period_s apart, a new action at once
        self.create_timer(min(0.02, cfg.step_period_s / 4), self._on_control_tick,
                          callback_group=self.control_group)
        self.create_timer(min(0.05, cfg.watchdog_timeout_s / 4), self._on_watchdog,
                          callback_group=safety)
        self.create_service(Trigger, "~/estop", self._on_estop, callback_group=safety)
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=safety)
        self._diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        self.create_timer(cfg.diagnostics_period_s, self._on_diagnostics, callback_group=safety)

    # --- what a robot node provides ---------------------------------------------------
    def _state_topic(self) -> str:
        return str(self.cfg.joint_states_topic)

    def _emit(self, q: np.ndarray, gripper_open: bool | None) -> None:
        """Send arm joint targets ``q`` [rad]; ``gripper_open`` None = gripper unchanged."""
        raise NotImplementedError

    def _diagnostics_extra(self) -> dict[str, str]:
        return {"dry_run": str(self.cfg.dry_run)}

    # --- shared -----------------------------------------------------------------------
    def _make_action_sink(self) -> Any:
        """The FollowJointTrajectory client (interface trajectory_action); ConfigError when
        control_msgs is missing or no server answers within action_server_timeout_s."""
        from tracevla_ros.nodes.trajectory_action import TrajectoryActionSink

        cfg = self.cfg
        self._action_sink = TrajectoryActionSink(
            self, cfg.arm_controller, self._names, cfg.point_time_s, cfg.path_tolerance,
            cfg.goal_tolerance, cfg.goal_time_tolerance_s, cfg.action_server_timeout_s,
            self._command_failed)
        return self._action_sink

    def _command_failed(self, why: str) -> None:
        """The command interface reports a failed command (aborted/rejected goal): hold the
        measured position; the next fresh action resumes (as after a watchdog hold)."""
        self.get_logger().error(f"command failed, holding position: {why}")
        with self._lock:
            self._hold_reason = why
            if self.core.q_state is None:
                self.core.counts["trajectory_aborted"] += 1
                return
            out = self.core.hold(self._now(), Intervention("trajectory_aborted", why))
            self._holding = True
        self._send(out)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _send(self, out: StepOutput) -> None:
        for r in out.interventions:
            self.get_logger().warning(f"safety [{r.check}]: {r.reason}", throttle_duration_sec=1.0)
        if not out.command.send or out.command.q is None:
            return
        g = out.gripper_open if out.gripper_open != self._gripper_sent else None
        self._emit(out.command.q, g)
        if g is not None:
            self._gripper_sent = g

    def _frame_ok(self, frame_id: str, what: str) -> bool:
        if frame_id and frame_id != self.cfg.base_frame:
            self.get_logger().error(f"{what} frame '{frame_id}' != base_frame "
                                    f"'{self.cfg.base_frame}': ignored", throttle_duration_sec=5.0)
            return False
        return True

    def _on_joint_states(self, msg: JointState) -> None:
        names = list(msg.name)
        if self._index is None or names != self._names_seen:
            try:
                self._index = [names.index(n) for n in self._names]
                self._names_seen = names
            except ValueError:
                self.get_logger().error(f"joint_states lacks arm joints {self._names}",
                                        throttle_duration_sec=5.0)
                return
        q = [msg.position[i] if i < len(msg.position) else float("nan") for i in self._index]
        with self._lock:
            self.core.update_state(q, self._now())

    def _on_action(self, msg: PolicyAction) -> None:
        if msg.action_space != "ee_delta_7d":
            self.get_logger().error(f"action_space '{msg.action_space}' not supported "
                                    "(ee_delta_7d only)", throttle_duration_sec=5.0)
            return
        if not self._frame_ok(msg.header.frame_id, "action"):
            return
        with self._lock:
            if self.core.estop.latched:
                self.core.counts["estop"] += 1
                return
            if self._fault:
                self.core.counts["robot_fault"] += 1
                return
            try:
                used = self.core.push_action(msg.values, msg.chunk_length, msg.action_dim,
                                             self._now(), stamp_to_sec(msg.header.stamp))
            except ActionError as exc:
                self.core.counts["bad_action"] += 1
                self.get_logger().error(f"action rejected: {exc}", throttle_duration_sec=2.0)
                return
            self._holding = False
            self._hold_reason = ""
            # A new action replaces the running one at once (the next tick sends it); a new
            # chunk of several steps under chunk_steps starts when the last step of the
            # previous one has had its step_period_s, as in tracevla-bench policy --k: sent
            # earlier, it would cut that step short and the speed limits, scaled by the time
            # since it, would clip it.
            if used and not (self.core.commits_chunks and msg.chunk_length > 1):
                self._next_step_t = 0.0
                self._chunk_paced = True
        self._on_control_tick()

    def _on_control_tick(self) -> None:
        now = self._now()
        with self._lock:
            if not self.core.pending or now < self._next_step_t:
                return
            out = self.core.step(now)
            # A step an arriving action paced: the next one comes with the next action; the
            # stored predictions (ensemble) continue on the timer only if that is half a
            # period late, so a timer step and the action's own never land back to back.
            late = 1.5 if self._chunk_paced and not self.core.commits_chunks else 1.0
            self._chunk_paced = False
            self._next_step_t = now + late * self.cfg.step_period_s
        if out is not None:
            self._send(out)

    def hold_and_flush(self, why: str) -> bool:
        """Hold the current position (a safety intervention named ``why``) and wait briefly
        until the command is delivered. False when there was no joint state to hold at."""
        with self._lock:
            if self.core.q_state is None:
                return False
            out = self.core.hold(self._now(), Intervention("shutdown", why))
            self._holding = True
        try:
            self._send(out)
        except Exception as exc:  # noqa: BLE001 - shutting down: say so, never raise here
            self.get_logger().error(f"could not send the hold command: {exc}")
            return False
        for pub in self.publishers:
            wait = getattr(pub, "wait_for_all_acked", None)
            if callable(wait) and pub.topic_name not in ("/rosout", "/parameter_events"):
                wait(Duration_(seconds=0.2))
        if self._action_sink is not None:  # delivered = the goal accepted by the server
            ok = self._action_sink.flush(0.5)
            self.get_logger().warning("hold goal accepted by the server" if ok else
                                      "the hold goal was not confirmed within 0.5 s")
        return True

    def close(self) -> None:
        """Shutdown: the arm holds where it is (logged), then the node may go."""
        if self.context.ok() and self.hold_and_flush("controller shutting down: holding position"):
            self.get_logger().warning("shutting down: hold command sent")

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
            extra = self._diagnostics_extra()
            if self._action_sink is not None:
                extra.update(self._action_sink.diagnostics())
            extra["hold_reason"] = self._hold_reason or "none"
            extra["robot_fault"] = self._fault or "none"
            msg = diagnostics_msg(self, self.core, extra)
        self._diag.publish(msg)
