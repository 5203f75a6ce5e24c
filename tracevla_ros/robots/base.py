"""Per-arm facts shared by the simulator, IK, safety and the controller nodes (no rclpy).

A robot is one module in this package that defines a :class:`RobotSpec` and registers
it with :func:`register`; :func:`get_robot` finds it by name. Adding a robot is adding a
file (and its MJCF under ``assets/``).

Conventions: joint values in radians (prismatic fingers in metres), frames REP 103
(x forward, y left, z up) with the model origin at the robot's base link.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["RobotSpec", "UnknownRobotError", "register", "get_robot", "robot_names", "ASSETS"]

ASSETS = Path(__file__).resolve().parent / "assets"


class UnknownRobotError(KeyError):
    """No robot of that name is registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclasses.dataclass(frozen=True)
class RobotSpec:
    """Facts about one arm and its MJCF model.

    Attributes:
        name: registry key, e.g. ``"widowx250s"``.
        model_path: the MJCF file (loads on its own: ``mujoco.MjModel.from_xml_path``).
        base_frame: ROS frame id of the model origin (the robot's base link).
        arm_joints: arm joint names in controller order (MJCF joint names).
        joint_lower, joint_upper: (n_arm,) position limits [rad], same order.
        velocity_limits: (n_arm,) joint speed limits [rad/s] from the description.
        home: (n_arm,) the default start / ready configuration [rad].
        named_poses: other named configurations [rad] (e.g. the vendor's home/sleep).
        ee_site: MJCF site of the end effector the policy's actions refer to.
        flange_site: MJCF site of the arm flange / last arm link frame.
        gripper_joints: MJCF finger joints; the first is actuated, the rest mirror it.
        gripper_open, gripper_closed: actuated finger joint position [m] when open / closed.
        arm_actuators: MJCF actuator names for the arm joints, same order as arm_joints.
        gripper_actuator: MJCF actuator name of the gripper.
        ros_joint_names: the names the real robot publishes on /joint_states, same order.
        source: where the kinematic numbers were transcribed from.
    """

    name: str
    model_path: Path
    base_frame: str
    arm_joints: tuple[str, ...]
    joint_lower: tuple[float, ...]
    joint_upper: tuple[float, ...]
    velocity_limits: tuple[float, ...]
    home: tuple[float, ...]
    ee_site: str
    flange_site: str
    gripper_joints: tuple[str, ...]
    gripper_open: float
    gripper_closed: float
    arm_actuators: tuple[str, ...]
    gripper_actuator: str
    ros_joint_names: tuple[str, ...]
    source: str
    named_poses: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.arm_joints)
        for key in ("joint_lower", "joint_upper", "velocity_limits", "home",
                    "arm_actuators", "ros_joint_names"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"RobotSpec {self.name}: {key} must have {n} entries")
        lo, hi, home = (np.asarray(v) for v in (self.joint_lower, self.joint_upper, self.home))
        if np.any(lo >= hi):
            raise ValueError(f"RobotSpec {self.name}: joint_lower must be < joint_upper")
        if np.any(home < lo) or np.any(home > hi):
            raise ValueError(f"RobotSpec {self.name}: home is outside the joint limits")
        if not self.gripper_joints:
            raise ValueError(f"RobotSpec {self.name}: needs at least one gripper joint")

    @property
    def dof(self) -> int:
        """Number of arm joints (gripper excluded)."""
        return len(self.arm_joints)

    @property
    def lower(self) -> np.ndarray:
        """(dof,) float64 lower joint limits [rad]."""
        return np.asarray(self.joint_lower, dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """(dof,) float64 upper joint limits [rad]."""
        return np.asarray(self.joint_upper, dtype=np.float64)

    @property
    def home_q(self) -> np.ndarray:
        """(dof,) float64 home configuration [rad]."""
        return np.asarray(self.home, dtype=np.float64)

    def gripper_position(self, openness: float) -> float:
        """Actuated finger joint target [m] for ``openness`` in [0, 1] (1 = open), clipped."""
        o = min(max(float(openness), 0.0), 1.0)
        return self.gripper_closed + o * (self.gripper_open - self.gripper_closed)


_REGISTRY: dict[str, RobotSpec] = {}
_ALIASES: dict[str, str] = {}
_LOADED = False


def register(spec: RobotSpec, aliases: tuple[str, ...] = ()) -> RobotSpec:
    """Add ``spec`` to the registry under its name and ``aliases``; returns it."""
    _REGISTRY[spec.name] = spec
    for a in aliases:
        _ALIASES[a] = spec.name
    return spec


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    pkg = __name__.rsplit(".", 1)[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in ("base", "__init__"):
            importlib.import_module(f"{pkg}.{info.name}")
    _LOADED = True


def robot_names() -> list[str]:
    """Registered robot names (aliases excluded), sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_robot(name: str) -> RobotSpec:
    """The registered :class:`RobotSpec` for ``name`` (or an alias such as ``"widowx"``)."""
    _load_all()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise UnknownRobotError(
            f"unknown robot '{name}'; known: {sorted(_REGISTRY)} (aliases {sorted(_ALIASES)}); "
            f"add a module to tracevla_ros/robots/ that calls register(RobotSpec(...))"
        )
    return _REGISTRY[key]
