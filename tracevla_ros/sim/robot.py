"""The robots registry seen from the simulator (no rclpy).

The robot's MJCF and its facts (joints, limits, ee site, gripper) come from
``tracevla_ros.robots.get_robot``; this module only resolves them to indices in
the compiled scene, where every robot element is named ``<prefix><name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from tracevla_ros.robots import RobotSpec, get_robot

__all__ = ["SimRobot", "load_sim_robot"]


@dataclass
class SimRobot:
    """A registry ``RobotSpec`` plus its indices in one compiled scene (after ``bind``)."""

    spec: RobotSpec
    prefix: str = ""
    arm_qadr: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (dof,) qpos indices
    arm_dadr: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (dof,) qvel indices
    arm_jnt: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (dof,) joint ids
    arm_act: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (dof,) actuator ids
    finger_qadr: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    finger_dadr: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    finger_sign: np.ndarray = field(default_factory=lambda: np.zeros(0))  # mimic sign per finger
    gripper_act: int = -1
    ee_site_id: int = -1

    def bind(self, model: mujoco.MjModel, prefix: str) -> None:
        """Resolve names in ``model`` (robot attached with ``prefix``); raises KeyError if missing."""
        self.prefix = prefix

        def idx(kind: mujoco.mjtObj, name: str) -> int:
            i = mujoco.mj_name2id(model, kind, prefix + name)
            if i < 0:
                raise KeyError(f"robot '{self.spec.name}': no {kind.name} '{prefix + name}' "
                               f"in the scene (check the robot's MJCF and RobotSpec)")
            return int(i)

        jnt = [idx(mujoco.mjtObj.mjOBJ_JOINT, j) for j in self.spec.arm_joints]
        self.arm_jnt = np.array(jnt)
        self.arm_qadr = model.jnt_qposadr[self.arm_jnt].copy()
        self.arm_dadr = model.jnt_dofadr[self.arm_jnt].copy()
        self.arm_act = np.array([idx(mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in self.spec.arm_actuators])
        fj = np.array([idx(mujoco.mjtObj.mjOBJ_JOINT, j) for j in self.spec.gripper_joints])
        self.finger_qadr = model.jnt_qposadr[fj].copy()
        self.finger_dadr = model.jnt_dofadr[fj].copy()
        # Mirrored fingers: the sign of each finger joint's range relative to the first.
        first = np.sign(model.jnt_range[fj[0]].sum()) or 1.0
        self.finger_sign = np.array([(np.sign(model.jnt_range[j].sum()) or 1.0) * first for j in fj])
        self.gripper_act = idx(mujoco.mjtObj.mjOBJ_ACTUATOR, self.spec.gripper_actuator)
        self.ee_site_id = idx(mujoco.mjtObj.mjOBJ_SITE, self.spec.ee_site)

    def finger_positions(self, openness: float) -> np.ndarray:
        """(n_fingers,) finger joint positions for ``openness`` in [0, 1] (mimic signs applied)."""
        return self.finger_sign * self.spec.gripper_position(openness)

    def body_names_prefix(self) -> str:
        return self.prefix


def load_sim_robot(name: str) -> SimRobot:
    """The registry entry for ``name`` (aliases such as ``"widowx"`` work), not yet bound."""
    return SimRobot(get_robot(name))
