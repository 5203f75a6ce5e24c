"""``sim_node``'s parameters: one typed config, validated once (no rclpy, no MuJoCo to
list them; checking the robot and task imports the task registry)."""

from __future__ import annotations

from dataclasses import dataclass

from tracevla_ros.config import check, param
from tracevla_ros.policy.prompt import PROMPT_KINDS

__all__ = ["SimNodeConfig"]


@dataclass(frozen=True)
class SimNodeConfig:
    robot: str = param("widowx", "robot registry name or alias (widowx, fr3)")
    task: str = param("", "task name; empty = the robot's default task")
    seed: int = param(0, "seed of the first episode; reset k uses seed + k")
    physics_rate_hz: float = param(100.0, "sim ticks per second; each advances 1/rate of sim time", "Hz")
    camera_rate_hz: float = param(10.0, "image publishing rate (sim time)", "Hz")
    joint_state_rate_hz: float = param(50.0, "joint state publishing rate (sim time)", "Hz")
    arm_controller: str = param("arm_controller", "controller name: /<name>/joint_trajectory")
    gripper_controller: str = param("gripper_controller",
                                    "gripper controller: /<name>/joint_trajectory; empty = none")
    franka_gripper_namespace: str = param("", "franka_gripper action namespace (fr3_gripper); "
                                          "empty = no Move/Grasp action servers")
    interbotix_robot_name: str = param("", "Interbotix namespace (wx250s) for its topics; empty = none")
    image_topic: str = param("/camera/image_raw", "RGB image topic")
    camera_info_topic: str = param("/camera/camera_info", "RGB camera_info topic")
    depth_topic: str = param("/camera/depth/image_raw", "depth image topic (RGB-D worlds)")
    depth_info_topic: str = param("/camera/depth/camera_info", "depth camera_info topic")
    stamp_source: str = param("wall", "'wall': node clock; 'sim': sim time, also on /clock")
    franka_robot_state_topic: str = param("", "franka_msgs/FrankaRobotState topic (robot_mode, "
                                          "current_errors) as franka_robot_state_broadcaster's; "
                                          "empty = none; only if franka_msgs imports")
    franka_error_recovery_action: str = param("", "franka_msgs/ErrorRecovery action server that "
                                              "clears a reflex; empty = none")
    reflex_contact_force_n: float = param(0.0, "a contact force between the robot and anything "
                                          "else above this puts the robot in reflex (it holds and "
                                          "ignores commands until error recovery), like "
                                          "libfranka's collision thresholds; 0 = never", "N")

    oracle_prompt: str = param("", "publish the simulator's ground-truth visual prompt on the "
                               "task's target with every camera frame (segmentation render; it "
                               "stands in for a user's click or the affordance node): point, "
                               "line, box or mask; empty = none")
    prompt_topic: str = param("/visual_prompt", "topic of the oracle prompt (policy_node's "
                              "visual_prompt)")

    def __post_init__(self) -> None:
        check(self.oracle_prompt in ("", *PROMPT_KINDS), "oracle_prompt",
              f"must be one of {list(PROMPT_KINDS)} or '' (none), got '{self.oracle_prompt}'")
        check(not self.oracle_prompt or bool(self.prompt_topic), "prompt_topic",
              "must name a topic (e.g. /visual_prompt) when oracle_prompt is set")
        check(self.physics_rate_hz >= 10.0, "physics_rate_hz", "must be >= 10 Hz")
        for key in ("camera_rate_hz", "joint_state_rate_hz"):
            v = getattr(self, key)
            check(0.0 < v <= self.physics_rate_hz, key, f"must be in (0, physics_rate_hz={self.physics_rate_hz}]")
        check(self.stamp_source in ("wall", "sim"), "stamp_source", "must be 'wall' or 'sim'")
        check(bool(self.arm_controller), "arm_controller", "must name the controller (e.g. arm_controller)")
        check(self.reflex_contact_force_n >= 0.0, "reflex_contact_force_n", "must be >= 0 N (0 = off)")
        self._check_robot_and_task()

    def _check_robot_and_task(self) -> None:
        """The robot is registered and has a world, the task is one of its tasks (imported
        here: the task registry needs MuJoCo, the parameter list does not)."""
        from tracevla_ros.robots import UnknownRobotError, get_robot
        from tracevla_ros.sim.scene import LAYOUTS
        from tracevla_ros.sim.tasks import TASKS, tasks_for_robot

        try:
            name = get_robot(self.robot).name
        except UnknownRobotError as exc:
            check(False, "robot", str(exc.args[0] if exc.args else exc))
        check(name in LAYOUTS, "robot", f"'{self.robot}' has no simulated world; "
              f"robots with one: {sorted(LAYOUTS)}")
        if self.task:
            known = tasks_for_robot(name)
            other = " (a task of another robot)" if self.task in TASKS else ""
            check(self.task in known, "task", f"must be one of the tasks of '{name}': {known} "
                  f"('' = its default task), got '{self.task}'{other}")
