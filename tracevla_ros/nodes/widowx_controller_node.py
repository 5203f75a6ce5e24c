"""widowx_controller_node: PolicyAction (ee_delta_7d) -> IK -> safety -> WidowX-250s.

Subscribes: ``action`` (tracevla_ros/PolicyAction), joint states (sensor_msgs/JointState,
``/<robot_name>/joint_states`` or ``/joint_states``). Commands the arm through the
``interface`` parameter: ``trajectory`` (ros2_control trajectory_msgs/JointTrajectory on
``/<arm_controller>/joint_trajectory``, gripper on ``/<gripper_controller>/joint_trajectory``),
``trajectory_action`` (ros2_control control_msgs/FollowJointTrajectory goals on
``/<arm_controller>/follow_joint_trajectory``, see nodes/trajectory_action.py; gripper on the
gripper controller's topic as above),
``interbotix_topic`` (interbotix_xs_msgs JointGroupCommand "arm" on
``/<robot_name>/commands/joint_group``, JointSingleCommand "gripper" on ``.../joint_single``)
or ``interbotix_api`` (interbotix_xs_modules). ``dry_run``: everything goes to
``~/would_send`` (JointTrajectory, arm joints + the actuated finger) instead.
Services ``~/estop`` and ``~/reset`` (std_srvs/Trigger); status on ``/diagnostics``.
The algorithm lives in tracevla_ros.control.arm_controller (no rclpy).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from trajectory_msgs.msg import JointTrajectory

from tracevla_ros.config import ConfigError
from tracevla_ros.control.controller_config import WidowXControllerConfig
from tracevla_ros.nodes.arm_controller_node import ArmControllerNodeBase, trajectory_msg
from tracevla_ros.nodes.common import RELIABLE_QOS, run_node

Sink = Callable[[np.ndarray, "bool | None"], None]  # (q, gripper_open or None = unchanged)


class WidowXControllerNode(ArmControllerNodeBase):
    ROBOTS = ("widowx250s",)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("widowx_controller_node", WidowXControllerConfig, **kwargs)
        cfg = self.cfg
        self._sink = self._make_sink()
        self.get_logger().info(
            f"{self.spec.name}: interface {cfg.interface}{' (DRY RUN -> ~/would_send)' if cfg.dry_run else ''}, "
            f"state {cfg.state_topic()}, step {cfg.step_period_s} s, watchdog {cfg.watchdog_timeout_s} s")

    def _state_topic(self) -> str:
        return str(self.cfg.state_topic())

    def _emit(self, q: np.ndarray, gripper_open: bool | None) -> None:
        self._sink(q, gripper_open)

    def _diagnostics_extra(self) -> dict[str, str]:
        return {"interface": self.cfg.interface, "dry_run": str(self.cfg.dry_run)}

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
                                               [cfg.point_time_s], stamp))
                    return
                arm.publish(trajectory_msg(names, [list(q)], [cfg.point_time_s], stamp))
                if grip is not None and g is not None:
                    grip.publish(trajectory_msg([spec.gripper_joints[0]], [[gpos]], [cfg.point_time_s], stamp))
            return send_traj
        if cfg.interface == "trajectory_action":
            action = self._make_action_sink()
            grip_pub = None
            if cfg.gripper_controller:
                grip_pub = self.create_publisher(
                    JointTrajectory, f"/{cfg.gripper_controller}/joint_trajectory", RELIABLE_QOS)

            def send_action(q: np.ndarray, g: bool | None) -> None:
                action.send(q, hold=self._holding)
                if grip_pub is not None and g is not None:
                    gpos = spec.gripper_position(1.0 if g else 0.0)
                    grip_pub.publish(trajectory_msg([spec.gripper_joints[0]], [[gpos]],
                                                    [cfg.point_time_s],
                                                    self.get_clock().now().to_msg()))
            return send_action
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


def main(args: list[str] | None = None) -> int:
    return run_node(WidowXControllerNode, args, name="widowx_controller_node",
                    config=WidowXControllerConfig)
