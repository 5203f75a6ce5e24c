"""A Where2Place-like question set rendered in the WidowX sim world (no rclpy).

Each scene is the WidowX table seen by its scene camera (``sim.scene.LAYOUTS``,
rendered here at ``size`` x ``size`` px) with the arm in view, as the policy's
camera sees it (at its home pose or a pose near it, ``ARM_POSE_STD``; it hides
what it covers), and 3-5 objects from ``SHAPES`` x ``COLORS``, sometimes a plate. Every question has a valid-region
mask computed from the simulator's ground truth:

* subtype ``touch`` ("point to the red cube"): the object's pixels in MuJoCo's
  segmentation render;
* subtype ``place`` ("point to free space left of the red cube", "... on the
  plate"): table (or plate) pixels whose back-projection onto the table plane
  lies in the target area relative to the reference (a band ``BAND`` m beyond
  its edge, ``LATERAL`` m wide, in the robot base frame: left = +y, right = -y,
  in front of = -x towards the robot, behind = +x), at least ``CLEARANCE`` m
  from every other object, and not hidden by one.

The reasoning is generated programmatically from that ground truth the way
TRACE generated its own: subtype -> reference -> target area -> points
(``reasoning_text``). ``UNSEEN`` lists the (relation or colour, shape) pairs the
training split never asks about; test questions that use one are ``unseen``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import mujoco
import numpy as np

from tracevla_ros.sim.camera import MJCAM_TO_OPTICAL, intrinsics_from_fovy
from tracevla_ros.sim.robot import load_sim_robot
from tracevla_ros.sim.scene import LAYOUTS, build_scene

__all__ = ["Question", "COLORS", "SHAPES", "RELATIONS", "UNSEEN", "SceneGenerator",
           "reasoning_text", "write_split", "read_split", "instruction_for", "TOUCH_VERBS"]

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10), "green": (0.15, 0.65, 0.20), "blue": (0.15, 0.30, 0.85),
    "yellow": (0.92, 0.82, 0.10), "purple": (0.55, 0.20, 0.70)}
SHAPES = ("cube", "cylinder", "ball", "bar")
RELATIONS = ("touch", "left of", "right of", "in front of", "behind", "on")  # "on": plates only
# held out of training: (relation, shape) for placement, (colour, shape) for touching
UNSEEN = {("behind", "ball"), ("left of", "bar"), ("right of", "cylinder"),
          ("in front of", "cube"), ("purple", "cylinder"), ("yellow", "cube")}
BAND = (0.025, 0.09)  # m beyond the reference's edge: the free-space target area
LATERAL = 0.045  # m, half width of the target area across the relation's direction
CLEARANCE = 0.02  # m from any other object's footprint
PLATE_R = 0.075  # m
_DIRS = {"left of": (0.0, 1.0), "right of": (0.0, -1.0), "in front of": (-1.0, 0.0),
         "behind": (1.0, 0.0)}
_SPAWN = ((0.16, 0.50), (-0.22, 0.22))  # m, x and y ranges of object centres (all in view)
ARM_HOME_P = 0.5  # fraction of scenes with the arm exactly at its home pose (a task's first frame)
ARM_POSE_STD = 0.25  # rad, joint noise around home in the others (the arm mid-task)


@dataclass
class Question:
    """One question: image/mask file names (relative to the split), the instruction and its
    ground-truth reasoning structure (reference centre in normalized image coordinates)."""

    image: str
    mask: str
    instruction: str
    subtype: str  # touch | place
    relation: str  # one of RELATIONS
    color: str
    shape: str  # of the reference (plate for "on")
    ref_point: tuple[float, float]  # normalized (x, y) of the reference's centre
    unseen: bool
    reasoning: str


# how a touch question may be asked: RoboPoint's "point to", and the task verbs a robot
# instruction uses ("pick up the red cube" asks for the same points)
TOUCH_VERBS = ("point to", "pick up", "grasp", "push")


def instruction_for(relation: str, color: str, shape: str, verb: str = "point to") -> str:
    if relation == "touch":
        return f"{verb} the {color} {shape}"
    return f"point to free space {relation} the {color} {shape}"


def reasoning_text(subtype: str, relation: str, color: str, shape: str,
                   ref_point: tuple[float, float]) -> str:
    """TRACE-style reasoning: subtype, reference, target area (the points follow it)."""
    kind = ("an object to touch" if subtype == "touch" else
            "placement on a surface" if relation == "on" else "placement in free space")
    area = (f"the {color} {shape} itself" if subtype == "touch" else
            f"the free part of the {color} {shape}" if relation == "on" else
            f"the free table area {relation} the {color} {shape}")
    return (f"Subtype: {kind}. Reference: the {color} {shape} at "
            f"({ref_point[0]:.2f}, {ref_point[1]:.2f}). Target area: {area}.")


@dataclass
class _Obj:
    name: str
    color: str
    shape: str
    xy: tuple[float, float]
    radius: float  # m, footprint radius
    height: float


class SceneGenerator:
    """Random scenes and their questions; one MuJoCo model per scene (static geoms)."""

    def __init__(self, size: int = 128, arm: bool = True) -> None:
        self.layout = LAYOUTS["widowx250s"]
        self.size = size
        self.arm = arm
        self.intr = intrinsics_from_fovy(self.layout.camera.fovy, size, size, "cam")
        self.robot = load_sim_robot(self.layout.robot)

    def _objects(self, rng: np.random.Generator) -> list[_Obj]:
        objs: list[_Obj] = []
        if rng.uniform() < 0.35:
            objs.append(_Obj("plate", str(rng.choice(list(COLORS))), "plate", (0.0, 0.0), PLATE_R, 0.01))
        n = int(rng.integers(3, 6))
        used: set[tuple[str, str]] = set()
        while len(objs) < n + (1 if objs else 0):
            c, s = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
            if (c, s) in used:
                continue
            used.add((c, s))
            r = {"cube": 0.022, "cylinder": 0.02, "ball": 0.02, "bar": 0.04}[s]
            objs.append(_Obj(f"obj{len(objs)}", c, s, (0.0, 0.0), r, 0.04))
        for _ in range(200):  # rejection-sample non-overlapping positions
            for o in objs:
                o.xy = (float(rng.uniform(*_SPAWN[0])), float(rng.uniform(*_SPAWN[1])))
            ok = all(np.hypot(a.xy[0] - b.xy[0], a.xy[1] - b.xy[1]) > a.radius + b.radius + 0.03
                     for i, a in enumerate(objs) for b in objs[i + 1:])
            if ok:
                return objs
        raise RuntimeError("could not place the scene's objects")

    def _model(self, objs: list[_Obj], rng: np.random.Generator) -> mujoco.MjModel:
        robot = (mujoco.MjSpec.from_file(str(self.robot.spec.model_path)) if self.arm else None)
        spec = build_scene(self.layout, robot)
        for o in objs:
            rgba = [*COLORS[o.color], 1.0]
            pos = [o.xy[0], o.xy[1], 0.0]
            g = mujoco.mjtGeom
            if o.shape == "plate":
                spec.worldbody.add_geom(name=o.name, type=g.mjGEOM_CYLINDER, size=[o.radius, 0.005, 0],
                                        pos=[pos[0], pos[1], 0.005],
                                        rgba=[0.5 + 0.5 * v for v in COLORS[o.color]] + [1.0])
            elif o.shape == "cube":
                yaw = float(rng.uniform(0, np.pi))
                spec.worldbody.add_geom(name=o.name, type=g.mjGEOM_BOX, size=[0.018, 0.018, 0.02],
                                        pos=[pos[0], pos[1], 0.02], rgba=rgba,
                                        quat=[np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)])
            elif o.shape == "cylinder":
                spec.worldbody.add_geom(name=o.name, type=g.mjGEOM_CYLINDER, size=[0.02, 0.025, 0],
                                        pos=[pos[0], pos[1], 0.025], rgba=rgba)
            elif o.shape == "ball":
                spec.worldbody.add_geom(name=o.name, type=g.mjGEOM_SPHERE, size=[0.02, 0, 0],
                                        pos=[pos[0], pos[1], 0.02], rgba=rgba)
            else:  # bar: a long box along y
                spec.worldbody.add_geom(name=o.name, type=g.mjGEOM_BOX, size=[0.012, 0.04, 0.012],
                                        pos=[pos[0], pos[1], 0.012], rgba=rgba)
        return spec.compile()

    def _table_xy(self, data: mujoco.MjData, cam: int) -> np.ndarray:
        """(H, W, 2) world x, y where each pixel's ray meets the table plane z = 0."""
        h = w = self.size
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        rays = np.stack([(u - self.intr.cx) / self.intr.fx, (v - self.intr.cy) / self.intr.fy,
                         np.ones_like(u)], -1)
        rot = data.cam_xmat[cam].reshape(3, 3) @ MJCAM_TO_OPTICAL
        d = rays @ rot.T
        p = data.cam_xpos[cam]
        t = -p[2] / np.where(np.abs(d[..., 2]) < 1e-9, -1e-9, d[..., 2])
        return p[:2] + t[..., None] * d[..., :2]

    def scene(self, seed: int) -> tuple[np.ndarray, list[tuple[dict, np.ndarray]]]:
        """(image (H, W, 3) uint8, [(question fields, mask (H, W) bool), ...]) of scene ``seed``."""
        rng = np.random.default_rng(seed)
        objs = self._objects(rng)
        model = self._model(objs, rng)
        data = mujoco.MjData(model)
        if self.arm:
            r = self.robot
            r.bind(model, self.layout.robot_prefix)
            q = np.asarray(r.spec.home_q, np.float64)
            if rng.uniform() >= ARM_HOME_P:
                q = q + rng.normal(0.0, ARM_POSE_STD, q.shape)
            data.qpos[r.arm_qadr] = np.clip(q, r.spec.lower, r.spec.upper)
            data.qpos[r.finger_qadr] = r.finger_positions(float(rng.uniform()))
        mujoco.mj_forward(model, data)
        cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.layout.camera.name)
        with mujoco.Renderer(model, self.size, self.size) as r:
            r.update_scene(data, cam)
            image = r.render().copy()
            r.enable_segmentation_rendering()
            r.update_scene(data, cam)
            seg = r.render()[..., 0].copy()  # geom id per pixel (-1 = none)
        gid = {o.name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, o.name) for o in objs}
        table = seg == mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "table")
        xy = self._table_xy(data, cam)
        out: list[tuple[dict, np.ndarray]] = []
        for o in objs:
            px = np.argwhere(seg == gid[o.name])
            if len(px) < 6:
                continue  # (nearly) hidden: not asked about
            ref = (float(px[:, 1].mean() + 0.5) / self.size, float(px[:, 0].mean() + 0.5) / self.size)
            if o.shape == "plate":
                others = [b for b in objs if b is not o]
                free = seg == gid[o.name]
                for b in others:
                    free &= np.hypot(xy[..., 0] - b.xy[0], xy[..., 1] - b.xy[1]) > b.radius + CLEARANCE
                free &= np.hypot(xy[..., 0] - o.xy[0], xy[..., 1] - o.xy[1]) < o.radius - 0.01
                out.append((dict(subtype="place", relation="on", color=o.color, shape="plate",
                                 ref_point=ref), free))
                continue
            out.append((dict(subtype="touch", relation="touch", color=o.color, shape=o.shape,
                             ref_point=ref), seg == gid[o.name]))
            for rel, (dx, dy) in _DIRS.items():
                along = (xy[..., 0] - o.xy[0]) * dx + (xy[..., 1] - o.xy[1]) * dy
                across = np.abs((xy[..., 0] - o.xy[0]) * dy - (xy[..., 1] - o.xy[1]) * dx)
                region = table & (along > o.radius + BAND[0]) & (along < o.radius + BAND[1]) \
                    & (across < LATERAL)
                for b in objs:
                    if b is not o:
                        region &= np.hypot(xy[..., 0] - b.xy[0], xy[..., 1] - b.xy[1]) \
                            > b.radius + CLEARANCE
                if region.sum() >= 12:
                    out.append((dict(subtype="place", relation=rel, color=o.color, shape=o.shape,
                                     ref_point=ref), region))
        return image, out


def _unseen(q: dict) -> bool:
    key = (q["color"] if q["relation"] == "touch" else q["relation"], q["shape"])
    return key in UNSEEN


def write_split(out: Path, seeds: Iterator[int] | range, per_scene: int, train: bool,
                size: int = 128, limit: int = 0) -> list[Question]:
    """Render scenes ``seeds`` into ``out`` (images/, masks/, questions.jsonl); ``per_scene``
    questions drawn per scene. ``train``: questions with an ``UNSEEN`` pair are skipped."""
    from PIL import Image

    gen = SceneGenerator(size)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    questions: list[Question] = []
    for seed in seeds:
        image, qs = gen.scene(seed)
        if train:
            qs = [(q, m) for q, m in qs if not _unseen(q)]
        rng = np.random.default_rng(10_000_000 + seed)
        pick = rng.permutation(len(qs))[:per_scene]
        if len(pick) == 0:
            continue
        img_name = f"images/{seed:06d}.png"
        Image.fromarray(image).save(out / img_name)
        for k in pick:
            q, mask = qs[int(k)]
            mask_name = f"masks/{seed:06d}_{int(k):02d}.png"
            Image.fromarray((mask * 255).astype(np.uint8)).save(out / mask_name)
            questions.append(Question(
                image=img_name, mask=mask_name,
                instruction=instruction_for(q["relation"], q["color"], q["shape"]),
                subtype=q["subtype"], relation=q["relation"], color=q["color"], shape=q["shape"],
                ref_point=q["ref_point"], unseen=_unseen(q),
                reasoning=reasoning_text(q["subtype"], q["relation"], q["color"], q["shape"],
                                         q["ref_point"])))
        if limit and len(questions) >= limit:
            break
    (out / "questions.jsonl").write_text("".join(json.dumps(asdict(q)) + "\n" for q in questions))
    return questions


def read_split(root: Path) -> list[Question]:
    """The questions of a split written by ``write_split``."""
    path = Path(root) / "questions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: write the split with "
                                "`python -m tracevla_ros.affordance.train --make-data DIR`")
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            d["ref_point"] = tuple(d["ref_point"])
            out.append(Question(**d))
    return out
