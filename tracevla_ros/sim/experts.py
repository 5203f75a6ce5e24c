"""Scripted experts: privileged-state controllers that emit ``ee_delta_7d`` actions (no rclpy).

Each expert is a short state machine of end-effector waypoints computed from the
true object poses. Every step it moves the end effector towards the current
waypoint (translation clipped to ``max_step`` metres, rotation to ``max_rot``
radians) with a top-down gripper orientation whose yaw is aligned with the
object, and advances once the waypoint is reached. Adding an expert is a class
here and one line in ``EXPERTS``.

Example::

    env = SimEnv("widowx", "lift_cube", seed=3)
    expert = make_expert(env)
    for _ in range(env.task.max_steps):
        env.step_ee_delta(expert.act())
        if env.success():
            break
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.tasks import (
    BALL_R,
    BLOCK_HALF,
    BOX_WALL_H,
    CUBE_HALF,
    FR3_BLOCK_HALF,
    PushBlockToRegion,
)

__all__ = ["Expert", "EXPERTS", "make_expert", "run_expert_episode"]

Target = Callable[[], tuple[np.ndarray, float]]  # -> (position (3,) m, yaw rad)


@dataclass
class Waypoint:
    target: Target
    gripper: float  # openness to command while moving to this waypoint (1 = open)
    tol: float = 0.01  # metres
    hold: int = 0  # extra steps to stay once reached (e.g. let the gripper close)
    max_step: float = 0.04  # metres per step


def _wrap(a: float, period: float) -> float:
    """``a`` wrapped into [-period/2, period/2)."""
    return (a + period / 2.0) % period - period / 2.0


class Expert:
    """Waypoint-following expert; subclasses build ``plan()``."""

    max_rot = 0.29  # rad per step, under the controllers' safety max_rot_step (0.3)

    def __init__(self, env: SimEnv) -> None:
        self.env = env
        home_rot = None
        # Approach axis: the ee-site axis pointing from the flange to the ee site.
        env_ee_pos, _ = env.ee_pose()
        home_rot = env.ee_matrix()
        flange = env.data.site_xpos[self._flange_id()]
        along = env_ee_pos - flange
        axis = int(np.argmax(home_rot.T @ along))
        approach_world = home_rot[:, axis]
        align, _ = Rotation.align_vectors([[0.0, 0.0, -1.0]], [approach_world])
        self.r_down = align.as_matrix() @ home_rot  # top-down grasp orientation, yaw 0
        closing = self.r_down[:, 1]  # fingers close along the ee site's y axis
        self.closing_yaw0 = math.atan2(closing[1], closing[0])
        self.reset()

    def _flange_id(self) -> int:
        import mujoco

        r = self.env.robot
        return mujoco.mj_name2id(self.env.model, mujoco.mjtObj.mjOBJ_SITE, r.prefix + r.spec.flange_site)

    def reset(self) -> None:
        self.waypoints = self.plan()
        self.index = 0
        self.held = 0

    def plan(self) -> list[Waypoint]:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        return self.index >= len(self.waypoints)

    def grasp_yaw(self, axis_yaw: float, symmetry: float) -> float:
        """Gripper yaw so the fingers close along ``axis_yaw`` (object symmetric by ``symmetry`` rad)."""
        return _wrap(axis_yaw - self.closing_yaw0, symmetry)

    def target_rotation(self, yaw: float) -> np.ndarray:
        return Rotation.from_euler("z", yaw).as_matrix() @ self.r_down

    def act(self) -> np.ndarray:
        """(7,) ee_delta_7d action for the current state."""
        if self.done:
            wp = self.waypoints[-1]
        else:
            wp = self.waypoints[self.index]
        pos_t, yaw_t = wp.target()
        pos, _ = self.env.ee_pose()
        rot = self.env.ee_matrix()
        err = pos_t - pos
        dist = float(np.linalg.norm(err))
        dp = err if dist <= wp.max_step else err * (wp.max_step / dist)
        r_err = Rotation.from_matrix(self.target_rotation(yaw_t) @ rot.T)
        rv = r_err.as_rotvec()
        ang = float(np.linalg.norm(rv))
        if ang > self.max_rot:
            r_err = Rotation.from_rotvec(rv * (self.max_rot / ang))
        drpy = r_err.as_euler("xyz")
        if not self.done and dist < wp.tol and ang < 0.15:
            if self.held >= wp.hold:
                self.index += 1
                self.held = 0
            else:
                self.held += 1
        return np.concatenate([dp, drpy, [wp.gripper]])

    # -- helpers for plans ---------------------------------------------------------------
    def obj(self, name: str) -> np.ndarray:
        return self.env.object_pose(name).pos

    def at(self, name: str, dz: float, yaw: Callable[[], float], z_min: float = 0.0) -> Target:
        """Target above object ``name`` by ``dz`` (or at absolute height ``z_min`` if higher)."""
        def f() -> tuple[np.ndarray, float]:
            p = self.obj(name).copy()
            p[2] = max(p[2] + dz, z_min)
            return p, yaw()
        return f

    def fixed(self, pos: Callable[[], np.ndarray], yaw: Callable[[], float]) -> Target:
        return lambda: (pos(), yaw())


class PickPlaceExpert(Expert):
    """Grasp ``obj`` top-down, carry it above ``dest`` and release it there."""

    obj_name = ""
    dest_name = ""
    symmetry = math.pi / 2
    grasp_z = 0.022  # metres, ee-site height when grasping (fingertips off the table, inside
    # the controllers' workspace box z >= 0.02)
    carry_z = 0.12
    release_dz = 0.06  # metres above the destination body origin

    def axis_yaw(self) -> float:
        return self.env.object_pose(self.obj_name).yaw

    def plan(self) -> list[Waypoint]:
        yaw0 = self.grasp_yaw(self.axis_yaw(), self.symmetry)
        yaw = lambda: yaw0  # noqa: E731 - the grasp yaw is fixed at planning time
        dest = lambda: self.obj(self.dest_name)  # noqa: E731
        over = lambda: dest() + np.array([0.0, 0.0, self.carry_z])  # noqa: E731
        low = lambda: dest() + np.array([0.0, 0.0, self.release_dz])  # noqa: E731
        return [
            Waypoint(self.at(self.obj_name, 0.07, yaw), 1.0, tol=0.015),
            Waypoint(self.at(self.obj_name, 0.0, yaw, z_min=self.grasp_z), 1.0, tol=0.008,
                     max_step=0.03),
            Waypoint(self.at(self.obj_name, 0.0, yaw, z_min=self.grasp_z), 0.0, tol=0.02, hold=2),
            Waypoint(self.at(self.obj_name, -1.0, yaw, z_min=self.carry_z), 0.0, tol=0.02),
            Waypoint(self.fixed(over, yaw), 0.0, tol=0.02),
            Waypoint(self.fixed(low, yaw), 0.0, tol=0.012, max_step=0.03),
            Waypoint(self.fixed(low, yaw), 1.0, tol=0.03, hold=2),
            Waypoint(self.fixed(over, yaw), 1.0, tol=0.03),
        ]


class CarrotExpert(PickPlaceExpert):
    obj_name, dest_name = "carrot", "plate"
    symmetry = math.pi
    release_dz = 0.05

    def axis_yaw(self) -> float:
        # The carrot lies along its body x axis: close the fingers across it.
        return self.env.object_pose("carrot").yaw + math.pi / 2


class BallExpert(PickPlaceExpert):
    obj_name, dest_name = "ball", "box"
    grasp_z = BALL_R
    carry_z = 0.16
    release_dz = BOX_WALL_H + 0.06

    def axis_yaw(self) -> float:
        return self.closing_yaw0  # a ball has no preferred axis: keep the current yaw


class LiftExpert(Expert):
    """Grasp the task's target cube (``task.target``: ``cube``, or the prompted one of two)."""

    def plan(self) -> list[Waypoint]:
        cube = self.env.task.target
        yaw0 = self.grasp_yaw(self.env.object_pose(cube).yaw, math.pi / 2)
        yaw = lambda: yaw0  # noqa: E731
        grasp_z = max(CUBE_HALF, 0.022)
        return [
            Waypoint(self.at(cube, 0.07, yaw), 1.0, tol=0.015),
            Waypoint(self.at(cube, 0.0, yaw, z_min=grasp_z), 1.0, tol=0.008, max_step=0.03),
            Waypoint(self.at(cube, 0.0, yaw, z_min=grasp_z), 0.0, tol=0.02, hold=2),
            Waypoint(self.at(cube, -1.0, yaw, z_min=0.15), 0.0, tol=0.02),
        ]


class PushExpert(Expert):
    """Push a block with the closed gripper until it reaches a goal (x, y)."""

    block = ""
    half = BLOCK_HALF
    push_z = 0.022  # ee-site height while pushing (controllers' workspace: z >= 0.02)
    standoff = 0.035  # metres behind the block face where a push starts

    def goal(self) -> np.ndarray:
        raise NotImplementedError

    def plan(self) -> list[Waypoint]:
        return []  # closed loop, see act()

    def reset(self) -> None:
        super().reset()
        self.phase = "approach"
        yaw0 = self.grasp_yaw(self.env.object_pose(self.block).yaw, math.pi / 2)
        self.yaw = yaw0

    @property
    def done(self) -> bool:
        return False

    def act(self) -> np.ndarray:
        b = self.obj(self.block)
        goal = self.goal()
        d = goal - b[:2]
        dist = float(np.linalg.norm(d))
        u = d / max(dist, 1e-6)
        behind = b[:2] - u * (self.half + self.standoff)
        pos, _ = self.env.ee_pose()
        yaw = lambda: self.yaw  # noqa: E731
        # Lateral offset of the ee from the push line through the block.
        rel = pos[:2] - b[:2]
        lateral = abs(rel[0] * u[1] - rel[1] * u[0])
        along = float(rel @ u)
        if self.phase == "push" and (lateral > 0.02 or along > -self.half * 0.5):
            self.phase = "approach"
        if self.phase == "approach":
            above = np.array([behind[0], behind[1], 0.08])
            if np.linalg.norm(pos[:2] - behind) < 0.012:
                self.phase = "descend"
            wp = Waypoint(self.fixed(lambda: above, yaw), 0.0)
        elif self.phase == "descend":
            low = np.array([behind[0], behind[1], self.push_z])
            if abs(pos[2] - self.push_z) < 0.01:
                self.phase = "push"
            wp = Waypoint(self.fixed(lambda: low, yaw), 0.0, max_step=0.03)
        else:
            step = min(0.03, dist + 0.01)
            tgt = np.array([pos[0] + u[0] * step, pos[1] + u[1] * step, self.push_z])
            # Pull back onto the push line while pushing.
            line = b[:2] - u * (self.half + 0.01)
            corr = (line - pos[:2]) - ((line - pos[:2]) @ u) * u
            tgt[:2] += corr
            wp = Waypoint(self.fixed(lambda: tgt, yaw), 0.0, max_step=0.03)
        self.waypoints = [wp]
        self.index = 0
        return super().act()


class PushRightExpert(PushExpert):
    block = "block"
    half = BLOCK_HALF

    def reset(self) -> None:
        super().reset()
        start = self.obj("block")[:2].copy()
        dist = self.env.task.push_distance + 0.03  # type: ignore[attr-defined]
        self._goal = start + np.array([0.0, -dist])

    def goal(self) -> np.ndarray:
        return self._goal


class PushRegionExpert(PushExpert):
    block = "fr3_block"
    half = FR3_BLOCK_HALF
    push_z = 0.025

    def goal(self) -> np.ndarray:
        import mujoco

        m, d = self.env.model, self.env.data
        bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "target_region")
        return d.mocap_pos[m.body_mocapid[bid]][:2].copy()


EXPERTS: dict[str, type[Expert]] = {
    "put_carrot_on_plate": CarrotExpert,
    "push_block_right": PushRightExpert,
    "lift_cube": LiftExpert,
    "lift_target_cube": LiftExpert,
    "push_block_to_region": PushRegionExpert,
    "put_ball_in_box": BallExpert,
}
assert PushBlockToRegion.name in EXPERTS  # every task has an expert (checked in tests too)


def make_expert(env: SimEnv) -> Expert:
    """The scripted expert for ``env``'s task, planned for its current state."""
    try:
        cls = EXPERTS[env.task.name]
    except KeyError:
        raise KeyError(f"no scripted expert for task '{env.task.name}'; known: {sorted(EXPERTS)}") from None
    return cls(env)


def run_expert_episode(env: SimEnv, seed: int, max_steps: int | None = None,
                       on_step: Callable[[np.ndarray], None] | None = None,
                       extra_steps: int = 0) -> tuple[bool, int]:
    """Reset to ``seed`` and run the expert until success; returns (success, steps).

    ``on_step(action)`` is called before each step (e.g. to record observations).
    ``extra_steps``: steps to keep acting after the first success (lets the scene settle).
    """
    env.reset(seed)
    expert = make_expert(env)
    limit = env.task.max_steps if max_steps is None else max_steps
    after = -1
    for step in range(limit):
        action = expert.act()
        if on_step is not None:
            on_step(action)
        env.step_ee_delta(action)
        if after < 0 and env.success():
            after = 0
        if after >= 0:
            if after >= extra_steps:
                return True, step + 1
            after += 1
    return env.success(), limit


class ExpertEpisodes:
    """The scripted expert acting on ``env`` episode after episode (benchmark streams): each
    ``step()`` plans an action, applies it and returns it; an episode that succeeds or runs
    ``max_steps`` is followed by a new one with seed ``seed + k``."""

    def __init__(self, env: SimEnv, seed: int, max_steps: int = 150) -> None:
        self.env, self.seed, self.max_steps = env, seed, max_steps
        self.expert = make_expert(env)
        self.episodes = 1
        self._steps = 0

    def step(self) -> np.ndarray:
        action = self.expert.act()
        self.env.step_ee_delta(action)
        self._steps += 1
        if self.env.success() or self._steps >= self.max_steps:
            self.env.reset(self.seed + self.episodes)
            self.expert = make_expert(self.env)
            self.episodes += 1
            self._steps = 0
        return action
