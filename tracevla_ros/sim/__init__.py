"""MuJoCo simulation of the WidowX-250s and FR3 table-top worlds (no rclpy).

- :mod:`.env`: ``SimEnv(robot, task, seed)``: reset / step / render / render_depth /
  camera_info / joint_positions / ee_pose / success. World = robot base frame.
- :mod:`.scene`: tables, lights, cameras (``LAYOUTS``), composed with ``mujoco.MjSpec``;
  the robot MJCF comes from ``tracevla_ros.robots``.
- :mod:`.tasks`: tasks with seeded placement and success checks (``TASKS``).
- :mod:`.experts`: scripted privileged-state experts emitting ``ee_delta_7d`` actions.
- :mod:`.camera`: intrinsics from ``fovy`` and the optical-frame convention.
- :mod:`.dataset`: the episode format of ``tracevla-collect`` (see DATASET.md).
- :mod:`.trajectory`: JointTrajectory playback for ``sim_node``.

Headless rendering needs ``MUJOCO_GL=egl`` (or ``osmesa``) in the environment.
"""

from tracevla_ros.sim.env import ACTION_DIM, JointState, SimEnv, SimError
from tracevla_ros.sim.tasks import TASKS, TaskError, tasks_for_robot

__all__ = ["SimEnv", "SimError", "JointState", "ACTION_DIM", "TASKS", "TaskError", "tasks_for_robot"]
