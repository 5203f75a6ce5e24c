"""Table-top worlds composed with ``mujoco.MjSpec`` (no rclpy).

World frame = robot base frame: origin at the robot base on the table top,
x forward (away from the robot), y left, z up (REP 103). The table top is the
plane z = 0. The robot model comes from the robots registry through
:mod:`tracevla_ros.sim.robot`; it is attached into the scene spec here.

Rendering is set up for speed on CPU: no shadows, no reflections, one
directional light plus the headlight.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

__all__ = ["CameraSpec", "WorldLayout", "LAYOUTS", "build_scene", "lookat_quat", "add_material",
           "add_free_body"]


@dataclass(frozen=True)
class CameraSpec:
    """A fixed scene camera aimed at ``lookat`` from ``pos`` (world frame, metres)."""

    name: str
    pos: tuple[float, float, float]
    lookat: tuple[float, float, float]
    fovy: float  # degrees, vertical field of view
    width: int  # pixels
    height: int  # pixels
    depth: bool  # whether this world publishes a depth image
    frame_id: str  # optical frame id (x right, y down, z forward)


@dataclass(frozen=True)
class WorldLayout:
    """Where the table, the robot and the camera are for one robot's world."""

    robot: str
    table_center: tuple[float, float]  # metres, table centre (x, y) in the base frame
    table_half: tuple[float, float]  # metres, half extents (x, y)
    workspace_center: tuple[float, float]  # metres, centre of the object spawn region
    workspace_half: tuple[float, float]  # metres, half extents of the spawn region
    camera: CameraSpec
    robot_prefix: str = "robot/"  # names of the attached robot's elements get this prefix


LAYOUTS: dict[str, WorldLayout] = {
    # Bridge/TraceVLA-like: a fixed third-person camera over the robot's right
    # shoulder, looking forward-down at the table; 256x256 RGB.
    "widowx250s": WorldLayout(
        robot="widowx250s",
        table_center=(0.30, 0.0),
        table_half=(0.40, 0.45),
        workspace_center=(0.30, 0.0),
        workspace_half=(0.08, 0.12),
        camera=CameraSpec(name="scene_cam", pos=(0.0, -0.35, 0.45), lookat=(0.36, 0.03, 0.0),
                          fovy=45.0, width=256, height=256, depth=False,
                          frame_id="camera_color_optical_frame"),
    ),
    # TraceGen-like FR3 cell: an RGB-D camera in front-right of the robot.
    "fr3": WorldLayout(
        robot="fr3",
        table_center=(0.50, 0.0),
        table_half=(0.55, 0.60),
        workspace_center=(0.50, 0.0),
        workspace_half=(0.10, 0.15),
        camera=CameraSpec(name="scene_cam", pos=(1.20, -0.60, 0.90), lookat=(0.40, 0.0, 0.15),
                          fovy=50.0, width=256, height=256, depth=True,
                          frame_id="camera_color_optical_frame"),
    ),
}


def lookat_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4,) wxyz quaternion of a MuJoCo camera at ``pos`` looking at ``target``, image up ~ world z."""
    fwd = np.asarray(target, float) - np.asarray(pos, float)
    fwd /= np.linalg.norm(fwd)
    x = np.cross(fwd, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:  # looking straight down: pick world y as image up
        x = np.cross(fwd, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    z = -fwd
    y = np.cross(z, x)
    mat = np.stack([x, y, z], axis=1)  # columns: camera axes in world
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat


def add_material(spec: mujoco.MjSpec, name: str, rgb1: tuple[float, float, float],
                 rgb2: tuple[float, float, float], builtin: str = "checker", texrepeat: float = 1.0,
                 random: float = 0.02, size: int = 128) -> str:
    """Add a procedural texture + material; returns the material name.

    The random dots (``random`` fraction of texels) give point trackers corners to lock on to.
    """
    kinds = {"checker": mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
             "gradient": mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
             "flat": mujoco.mjtBuiltin.mjBUILTIN_FLAT}
    spec.add_texture(name=f"{name}_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=kinds[builtin],
                     width=size, height=size, rgb1=list(rgb1), rgb2=list(rgb2),
                     mark=mujoco.mjtMark.mjMARK_RANDOM, random=random,
                     markrgb=[min(1.0, c + 0.35) for c in rgb1])
    mat = spec.add_material(name=name, texrepeat=[texrepeat, texrepeat], texuniform=False,
                            specular=0.1, shininess=0.1, reflectance=0.0)
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{name}_tex"
    return name


def add_free_body(spec: mujoco.MjSpec, name: str) -> mujoco.MjsBody:
    """A body with a free joint ``<name>_free`` on the world; geoms are added by the caller."""
    body = spec.worldbody.add_body(name=name, pos=[0.0, 0.0, 0.1])
    body.add_freejoint(name=f"{name}_free")
    return body


def build_scene(layout: WorldLayout, robot_spec: mujoco.MjSpec | None) -> mujoco.MjSpec:
    """The table, floor, lights and camera of ``layout``, with the robot attached at the origin.

    ``robot_spec`` is the robot's own MJCF as a spec (None: an empty table, for tests).
    Tasks add their objects to the returned spec before it is compiled.
    """
    spec = mujoco.MjSpec()
    spec.modelname = f"tracevla_{layout.robot}"
    spec.option.timestep = 0.002
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST  # as the robot models
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.option.noslip_iterations = 3
    spec.visual.quality.shadowsize = 0  # no shadow maps: ~10x faster on llvmpipe
    spec.visual.quality.offsamples = 0  # no MSAA
    spec.visual.map.znear = 0.01
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.45, 0.45, 0.45]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.stat.extent = 1.5
    spec.stat.center = [layout.table_center[0], layout.table_center[1], 0.0]

    world = spec.worldbody
    world.add_light(name="sun", pos=[0.3, 0.0, 2.0], dir=[0.0, 0.0, -1.0], castshadow=False,
                    diffuse=[0.5, 0.5, 0.5], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)

    add_material(spec, "floor_mat", (0.25, 0.27, 0.30), (0.30, 0.32, 0.35), texrepeat=8.0)
    add_material(spec, "table_mat", (0.55, 0.42, 0.30), (0.62, 0.48, 0.35), texrepeat=6.0,
                 random=0.05)
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3.0, 3.0, 0.05],
                   pos=[0.0, 0.0, -0.75], material="floor_mat")
    tx, ty = layout.table_center
    hx, hy = layout.table_half
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hy, 0.02],
                   pos=[tx, ty, -0.02], material="table_mat", friction=[0.8, 0.005, 0.0001])
    for sx in (-1, 1):
        for sy in (-1, 1):
            world.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, 0.365],
                           pos=[tx + sx * (hx - 0.05), ty + sy * (hy - 0.05), -0.405],
                           rgba=[0.3, 0.25, 0.2, 1.0], contype=0, conaffinity=0)

    # A room around the table, so every camera ray hits something (valid depth, no black sky).
    add_material(spec, "wall_mat", (0.70, 0.72, 0.75), (0.62, 0.64, 0.68), builtin="gradient",
                 texrepeat=1.0, random=0.01)
    room = 1.6  # metres from the table centre to each wall
    for ax in (0, 1):
        for sign in (-1.0, 1.0):
            pos = [tx, ty, 0.25]
            pos[ax] += sign * room
            size = [0.02, room, 1.0] if ax == 0 else [room, 0.02, 1.0]
            world.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=size, pos=pos, material="wall_mat",
                           contype=0, conaffinity=0)

    cam = layout.camera
    world.add_camera(name=cam.name, pos=list(cam.pos),
                     quat=list(lookat_quat(np.array(cam.pos), np.array(cam.lookat))), fovy=cam.fovy)

    if robot_spec is not None:
        frame = world.add_frame(name="robot_base_frame", pos=[0.0, 0.0, 0.0])
        spec.attach(robot_spec, prefix=layout.robot_prefix, frame=frame)
    return spec
