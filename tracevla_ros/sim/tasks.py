"""Tasks: objects, seeded initial placement, success checks, instructions (no rclpy).

A task adds its objects to the scene spec (``build``), places them from a seeded
RNG (``reset``) and judges success from privileged state (``success``). Adding
a task is adding a class here and one line in ``TASKS``. Scripted experts for
the tasks live in :mod:`tracevla_ros.sim.experts`.

All positions are in the world = robot base frame, metres; the table top is z = 0.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import mujoco
import numpy as np

from tracevla_ros.sim.scene import WorldLayout, add_free_body, add_material

__all__ = ["Task", "TASKS", "get_task", "tasks_for_robot", "ObjectPose", "TaskError"]


class TaskError(ValueError):
    """Unknown task or a task used with a robot it does not support."""


@dataclass(frozen=True)
class ObjectPose:
    """Pose of a free object: position (3,) metres and wxyz quaternion (4,), world frame."""

    pos: np.ndarray
    quat: np.ndarray

    @property
    def yaw(self) -> float:
        w, x, y, z = self.quat
        return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)])


class Task(abc.ABC):
    """One table-top task. Subclasses set the class attributes and implement the hooks."""

    name: str = ""
    instruction: str = ""
    robots: tuple[str, ...] = ()
    max_steps: int = 60  # policy steps an episode may take
    objects: tuple[str, ...] = ()  # free bodies this task adds (names)
    target: str = ""  # the body the instruction refers to (the visual prompt's target)

    @abc.abstractmethod
    def build(self, spec: mujoco.MjSpec, layout: WorldLayout) -> None:
        """Add this task's bodies, geoms and materials to ``spec``."""

    @abc.abstractmethod
    def place(self, rng: np.random.Generator, layout: WorldLayout) -> dict[str, tuple[float, float, float]]:
        """Seeded initial (x, y, yaw) of every object in ``objects`` and of fixed targets."""

    @abc.abstractmethod
    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Whether the task is accomplished in the current state."""

    # -- shared helpers -------------------------------------------------------------
    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator,
              layout: WorldLayout) -> None:
        """Place objects (free joints) and movable targets (mocap bodies) from ``rng``."""
        placement = self.place(rng, layout)
        for name, (x, y, yaw) in placement.items():
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
            if bid < 0:
                raise TaskError(f"task '{self.name}': no body '{name}' in the model")
            mocap = model.body_mocapid[bid]
            z = self._rest_height(model, name)
            if mocap >= 0:
                data.mocap_pos[mocap] = [x, y, z]
                data.mocap_quat[mocap] = _yaw_quat(yaw)
            else:
                jid = model.body_jntadr[bid]
                adr = model.jnt_qposadr[jid]
                data.qpos[adr:adr + 3] = [x, y, z]
                data.qpos[adr + 3:adr + 7] = _yaw_quat(yaw)
                dadr = model.jnt_dofadr[jid]
                data.qvel[dadr:dadr + 6] = 0.0

    def _rest_height(self, model: mujoco.MjModel, name: str) -> float:
        """Height of the body origin when resting on the table (default: its lowest geom)."""
        return REST_HEIGHTS.get(name, 0.0)

    @staticmethod
    def object_pose(model: mujoco.MjModel, data: mujoco.MjData, name: str) -> ObjectPose:
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        if bid < 0:
            raise TaskError(f"no body '{name}' in the model")
        return ObjectPose(data.xpos[bid].copy(), data.xquat[bid].copy())

    @staticmethod
    def in_contact(model: mujoco.MjModel, data: mujoco.MjData, body_a: str, body_b: str) -> bool:
        a = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body_a)
        b = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body_b)
        for i in range(data.ncon):
            c = data.contact[i]
            ba, bb = model.geom_bodyid[c.geom[0]], model.geom_bodyid[c.geom[1]]
            if {ba, bb} == {a, b}:
                return True
        return False

    @staticmethod
    def touching_robot(model: mujoco.MjModel, data: mujoco.MjData, body: str, prefix: str) -> bool:
        """Whether ``body`` touches any body whose name starts with ``prefix`` (the robot)."""
        a = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
        for i in range(data.ncon):
            c = data.contact[i]
            for g, h in ((c.geom[0], c.geom[1]), (c.geom[1], c.geom[0])):
                if model.geom_bodyid[g] == a:
                    other = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, model.geom_bodyid[h])
                    if other is not None and other.startswith(prefix):
                        return True
        return False


# Resting heights of body origins above the table top (metres), from the geoms below.
CARROT_R, CARROT_HALF = 0.014, 0.035  # capsule radius, half length of the cylinder part
BLOCK_HALF = 0.02  # push block half size (widowx)
CUBE_HALF = 0.015  # lift cube half size (widowx gripper opens to 0.044 m)
FR3_BLOCK_HALF = 0.025
BALL_R = 0.025
PLATE_R, PLATE_H = 0.075, 0.006
BOX_IN, BOX_WALL_H, BOX_WALL_T = 0.06, 0.05, 0.008  # inner half size, wall height, wall thickness
REST_HEIGHTS = {
    "carrot": CARROT_R + 0.0005,
    "plate": PLATE_H / 2,
    "block": BLOCK_HALF + 0.0005,
    "cube": CUBE_HALF + 0.0005,
    "cube_b": CUBE_HALF + 0.0005,
    "fr3_block": FR3_BLOCK_HALF + 0.0005,
    "ball": BALL_R + 0.0005,
    "box": 0.0,
    "target_region": 0.0005,
}
_GRIP = dict(friction=[1.2, 0.01, 0.0005], condim=4, solref=[0.01, 1.0], solimp=[0.95, 0.99, 0.001, 0.5, 2.0])


def _sample_xy(rng: np.random.Generator, layout: WorldLayout, dx: tuple[float, float],
               dy: tuple[float, float]) -> tuple[float, float]:
    cx, cy = layout.workspace_center
    return float(cx + rng.uniform(*dx)), float(cy + rng.uniform(*dy))


class PutCarrotOnPlate(Task):
    name = "put_carrot_on_plate"
    instruction = "put the carrot on the plate"
    robots = ("widowx250s",)
    max_steps = 60
    objects = ("carrot", "plate")
    target = "carrot"

    def build(self, spec: mujoco.MjSpec, layout: WorldLayout) -> None:
        add_material(spec, "carrot_mat", (0.95, 0.45, 0.05), (0.85, 0.35, 0.02), texrepeat=3.0,
                     random=0.08, size=64)
        add_material(spec, "plate_mat", (0.92, 0.92, 0.88), (0.80, 0.82, 0.85), texrepeat=4.0,
                     random=0.05, size=64)
        carrot = add_free_body(spec, "carrot")
        # Lying capsule along the body x axis. condim 6 with rolling friction: a bare
        # capsule keeps rolling after release (it rolled off the plate in long demos).
        carrot.add_geom(name="carrot_geom", type=mujoco.mjtGeom.mjGEOM_CAPSULE,
                        size=[CARROT_R, CARROT_HALF, 0.0], quat=[0.7071068, 0.0, 0.7071068, 0.0],
                        material="carrot_mat", mass=0.03,
                        **{**_GRIP, "condim": 6, "friction": [1.2, 0.01, 0.002]})
        plate = add_free_body(spec, "plate")
        plate.add_geom(name="plate_geom", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                       size=[PLATE_R, PLATE_H / 2, 0.0], material="plate_mat", mass=0.2,
                       friction=[1.0, 0.005, 0.0001])

    def place(self, rng: np.random.Generator, layout: WorldLayout) -> dict[str, tuple[float, float, float]]:
        # Carrot on one side, plate on the other; which side is random.
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        cx, cy = _sample_xy(rng, layout, (-0.05, 0.05), (0.06, 0.12))
        px, py = _sample_xy(rng, layout, (-0.05, 0.05), (0.06, 0.12))
        yaw = float(rng.uniform(-0.6, 0.6)) + math.pi / 2
        return {"carrot": (cx, side * cy, yaw), "plate": (px, -side * py, 0.0)}

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        carrot = self.object_pose(model, data, "carrot").pos
        plate = self.object_pose(model, data, "plate").pos
        on_xy = float(np.linalg.norm(carrot[:2] - plate[:2])) < PLATE_R - 0.01
        return on_xy and self.in_contact(model, data, "carrot", "plate") \
            and not self.touching_robot(model, data, "carrot", "robot/")


class PushBlockRight(Task):
    name = "push_block_right"
    instruction = "push the block to the right"
    robots = ("widowx250s",)
    max_steps = 60
    objects = ("block",)
    target = "block"
    _start: np.ndarray = np.zeros(2)  # block (x, y) at reset
    push_distance = 0.10  # metres towards -y (the robot's and camera's right)

    def build(self, spec: mujoco.MjSpec, layout: WorldLayout) -> None:
        add_material(spec, "block_mat", (0.10, 0.35, 0.85), (0.15, 0.45, 0.95), texrepeat=2.0,
                     random=0.1, size=64)
        block = add_free_body(spec, "block")
        block.add_geom(name="block_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[BLOCK_HALF] * 3,
                       material="block_mat", mass=0.05, friction=[0.6, 0.005, 0.0001])

    def place(self, rng: np.random.Generator, layout: WorldLayout) -> dict[str, tuple[float, float, float]]:
        x, y = _sample_xy(rng, layout, (-0.05, 0.05), (-0.02, 0.10))
        self._start = np.array([x, y])
        return {"block": (x, y, float(rng.uniform(-0.4, 0.4)))}

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        pos = self.object_pose(model, data, "block").pos
        moved = self._start[1] - pos[1]
        return bool(moved >= self.push_distance and pos[2] > 0.0
                    and abs(pos[0] - self._start[0]) < 0.06)


class LiftCube(Task):
    name = "lift_cube"
    instruction = "pick up the red cube"
    robots = ("widowx250s",)
    max_steps = 40
    objects: tuple[str, ...] = ("cube",)
    target = "cube"
    lift_height = 0.08  # metres above the table

    def build(self, spec: mujoco.MjSpec, layout: WorldLayout) -> None:
        add_material(spec, "cube_mat", (0.85, 0.10, 0.10), (0.95, 0.20, 0.15), texrepeat=2.0,
                     random=0.1, size=64)
        cube = add_free_body(spec, "cube")
        cube.add_geom(name="cube_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF] * 3,
                      material="cube_mat", mass=0.04, **_GRIP)

    def place(self, rng: np.random.Generator, layout: WorldLayout) -> dict[str, tuple[float, float, float]]:
        x, y = _sample_xy(rng, layout, (-0.06, 0.06), (-0.10, 0.10))
        return {"cube": (x, y, float(rng.uniform(-0.5, 0.5)))}

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        return bool(self.object_pose(model, data, "cube").pos[2] > self.lift_height)


class LiftTargetCube(LiftCube):
    """Two identical red cubes; the instruction does not say which one: only the visual
    prompt does. Which cube is the target is drawn per seed (``target`` is set on reset);
    success = the target is lifted while the other stays on the table."""

    name = "lift_target_cube"
    instruction = "pick up the cube"
    objects = ("cube", "cube_b")
    target = "cube"
    min_gap = 0.09  # metres between the cubes' centres (one grasp cannot take both)

    def build(self, spec: mujoco.MjSpec, layout: WorldLayout) -> None:
        super().build(spec, layout)
        cube = add_free_body(spec, "cube_b")
        cube.add_geom(name="cube_b_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF] * 3,
                      material="cube_mat", mass=0.04, **_GRIP)

    def place(self, rng: np.random.Generator, layout: WorldLayout) -> dict[str, tuple[float, float, float]]:
        x0, y0 = _sample_xy(rng, layout, (-0.05, 0.05), (-0.10, 0.10))
        while True:
            x1, y1 = _sample_xy(rng, layout, (-0.05, 0.05), (-0.10, 0.10))
            if math.hypot(x1 - x0, y1 - y0) >= self.min_gap:
                break
        self.target = "cube" if rng.uniform() < 0.5 else "cube_b"
        return {"cube": (x0, y0, float(rng.uniform(-0.5, 0.5))),
                "cube_b": (x1, y1, float(rng.uniform(-0.5, 0.5)))}

    @property
    def other(self) -> str:
        return "cube_b" if self.target == "cube" else "cube"

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        lifted = self.object_pose(model, data, self.target).pos[2] > self.lift_height
        other_down = self.object_pose(model, data, self.other).pos[2] < CUBE_HALF + 0.02
        return bool(lifted and other_down)


class PushBlockToRegion(Task):
    name = "push_block_to_region"
    instruction = "push the block into the purple region"
    robots = ("fr3",)
    max_steps = 60
    objects = ("fr3_block",)
    target = "fr3_block"
    region_half = 0.06  # metres, half side of the purple square

    def build(self, spec: mujoco.MjSpec, layout: WorldLayout) -> None:
        add_material(spec, "fblock_mat", (0.95, 0.75, 0.10), (0.85, 0.60, 0.05), texrepeat=2.0,
                     random=0.1, size=64)
        add_material(spec, "region_mat", (0.55, 0.20, 0.75), (0.62, 0.28, 0.82), texrepeat=3.0,
                     random=0.05, size=64)
        block = add_free_body(spec, "fr3_block")
        block.add_geom(name="fr3_block_geom", type=mujoco.mjtGeom.mjGEOM_BOX,
                       size=[FR3_BLOCK_HALF] * 3, material="fblock_mat", mass=0.1,
                       friction=[0.6, 0.005, 0.0001])
        region = spec.worldbody.add_body(name="target_region", mocap=True)
        region.add_geom(name="target_region_geom", type=mujoco.mjtGeom.mjGEOM_BOX,
                        size=[self.region_half, self.region_half, 0.0005], material="region_mat",
                        contype=0, conaffinity=0)

    def place(self, rng: np.random.Generator, layout: WorldLayout) -> dict[str, tuple[float, float, float]]:
        bx, by = _sample_xy(rng, layout, (-0.06, 0.04), (-0.12, 0.12))
        # Region 0.14-0.20 m away from the block, on the far or left/right side.
        ang = float(rng.uniform(-1.0, 1.0)) + (0.0 if rng.uniform() < 0.5 else math.pi / 2
                                              * (1 if by < 0 else -1))
        dist = float(rng.uniform(0.14, 0.20))
        rx, ry = bx + dist * math.cos(ang), by + dist * math.sin(ang)
        return {"fr3_block": (bx, by, float(rng.uniform(-0.4, 0.4))), "target_region": (rx, ry, 0.0)}

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        pos = self.object_pose(model, data, "fr3_block").pos
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "target_region")
        reg = data.mocap_pos[model.body_mocapid[bid]]
        inside = np.all(np.abs(pos[:2] - reg[:2]) < self.region_half)
        return bool(inside and pos[2] < FR3_BLOCK_HALF + 0.01)


class PutBallInBox(Task):
    name = "put_ball_in_box"
    instruction = "put the ball in the box"
    robots = ("fr3",)
    max_steps = 60
    objects = ("ball",)
    target = "ball"

    def build(self, spec: mujoco.MjSpec, layout: WorldLayout) -> None:
        add_material(spec, "ball_mat", (0.10, 0.70, 0.20), (0.05, 0.55, 0.15), texrepeat=3.0,
                     random=0.1, size=64)
        add_material(spec, "box_mat", (0.60, 0.45, 0.25), (0.50, 0.38, 0.20), texrepeat=2.0,
                     random=0.05, size=64)
        ball = add_free_body(spec, "ball")
        ball.add_geom(name="ball_geom", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[BALL_R, 0, 0],
                      material="ball_mat", mass=0.05, friction=[1.2, 0.01, 0.001], condim=6,
                      solref=[0.01, 1.0], solimp=[0.95, 0.99, 0.001, 0.5, 2.0])
        box = spec.worldbody.add_body(name="box", mocap=True)
        t, h, a = BOX_WALL_T, BOX_WALL_H, BOX_IN
        box.add_geom(name="box_bottom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[a + t, a + t, t / 2],
                     pos=[0, 0, t / 2], material="box_mat")
        for i, (x, y, sx, sy) in enumerate([(a + t / 2, 0, t / 2, a + t), (-a - t / 2, 0, t / 2, a + t),
                                            (0, a + t / 2, a + t, t / 2), (0, -a - t / 2, a + t, t / 2)]):
            box.add_geom(name=f"box_wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[sx, sy, h / 2],
                         pos=[x, y, h / 2], material="box_mat")

    def place(self, rng: np.random.Generator, layout: WorldLayout) -> dict[str, tuple[float, float, float]]:
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        bx, by = _sample_xy(rng, layout, (-0.06, 0.06), (0.06, 0.14))
        kx, ky = _sample_xy(rng, layout, (-0.04, 0.04), (0.08, 0.14))
        return {"ball": (bx, side * by, 0.0), "box": (kx, -side * ky, 0.0)}

    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        ball = self.object_pose(model, data, "ball").pos
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "box")
        box = data.mocap_pos[model.body_mocapid[bid]]
        inside = np.all(np.abs(ball[:2] - box[:2]) < BOX_IN)
        return bool(inside and ball[2] < box[2] + BOX_WALL_H
                    and not self.touching_robot(model, data, "ball", "robot/"))


TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (PutCarrotOnPlate, PushBlockRight, LiftCube, LiftTargetCube,
                              PushBlockToRegion, PutBallInBox)
}


def get_task(name: str, robot: str) -> Task:
    """A fresh task instance; raises TaskError naming the valid choices."""
    if name not in TASKS:
        raise TaskError(f"unknown task '{name}'; known: {sorted(TASKS)}")
    task = TASKS[name]()
    if robot not in task.robots:
        raise TaskError(f"task '{name}' is for robot(s) {task.robots}, not '{robot}'; "
                        f"tasks for '{robot}': {tasks_for_robot(robot)}")
    return task


def tasks_for_robot(robot: str) -> list[str]:
    return sorted(n for n, cls in TASKS.items() if robot in cls.robots)
