"""``SimEnv``: one robot on a table with one task, stepped at the policy rate (no rclpy).

Example::

    env = SimEnv(robot="widowx", task="put_carrot_on_plate", seed=0)
    rgb = env.render()                       # (256, 256, 3) uint8
    env.step_ee_delta(np.array([0.02, 0, 0, 0, 0, 0, 1.0]))
    print(env.success(), env.instruction)

Timing: physics runs at ``timestep`` = 2 ms (500 Hz); one policy/control step is
``1 / control_hz`` seconds (default 5 Hz -> 100 physics substeps). Joint targets
are held by the robot model's position actuators during the substeps.

Frames: world = robot base frame (REP 103: x forward, y left, z up; table top at
z = 0). Poses are (position (3,) m, quaternion (4,) wxyz). The camera's optical
frame is x right, y down, z forward (see :mod:`tracevla_ros.sim.camera`).

Action space ``ee_delta_7d``: ``[dx, dy, dz, droll, dpitch, dyaw, gripper]``:
translation of the end-effector site in the base frame (m) and an extrinsic
roll/pitch/yaw rotation about the base x, y, z axes (rad) applied on the left,
``R_target = R_xyz(droll, dpitch, dyaw) @ R_current``, both relative to the
*measured* end-effector pose; ``gripper`` in [0, 1], 1 = open, 0 = closed.
The env turns it into joint targets with the project's IK
(:mod:`tracevla_ros.control.kinematics`, seeded with the measured joints, no random
restarts so the arm never jumps to another branch) and the project's
:func:`tracevla_ros.control.action.integrate_ee_delta` (same convention as the real robot).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mujoco
import numpy as np

from tracevla_ros.control.action import ActionError, integrate_ee_delta
from tracevla_ros.control.kinematics import ArmKinematics, IKOptions, load_kinematics
from tracevla_ros.sim.camera import MJCAM_TO_OPTICAL, CameraIntrinsics, intrinsics_from_fovy
from tracevla_ros.sim.robot import SimRobot, load_sim_robot
from tracevla_ros.sim.scene import LAYOUTS, WorldLayout, build_scene
from tracevla_ros.sim.tasks import ObjectPose, Task, get_task

__all__ = ["SimEnv", "SimError", "JointState", "ACTION_DIM"]

log = logging.getLogger(__name__)

ACTION_DIM = 7  # ee_delta_7d


class SimError(ValueError):
    """Bad input to the simulator (shape, NaN, unknown name); the message says what to pass."""


@dataclass(frozen=True)
class JointState:
    """All robot joints in ROS order: arm joints, then the finger joints."""

    names: tuple[str, ...]
    position: np.ndarray  # (n,) rad for arm joints, m for fingers
    velocity: np.ndarray  # (n,) rad/s, m/s
    effort: np.ndarray  # (n,) N*m, N (actuator force; 0 for unactuated fingers)


class SimEnv:
    """A MuJoCo world: robot + table + task objects + a fixed camera."""

    def __init__(self, robot: str = "widowx", task: str | None = None, seed: int = 0,
                 control_hz: float = 5.0, settle_s: float = 0.3) -> None:
        self.robot: SimRobot = load_sim_robot(robot)
        name = self.robot.spec.name
        if name not in LAYOUTS:
            raise SimError(f"no simulated world for robot '{name}'; worlds: {sorted(LAYOUTS)}")
        self.layout: WorldLayout = LAYOUTS[name]
        if task is None:
            task = DEFAULT_TASK[name]
        self.task: Task = get_task(task, name)
        if not 0.5 <= control_hz <= 100.0:
            raise SimError(f"control_hz must be in [0.5, 100], got {control_hz}")
        self.control_hz = float(control_hz)
        self.settle_s = float(settle_s)

        spec = build_scene(self.layout, mujoco.MjSpec.from_file(str(self.robot.spec.model_path)))
        self.task.build(spec, self.layout)
        self.model: mujoco.MjModel = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.robot.bind(self.model, self.layout.robot_prefix)
        self.kinematics: ArmKinematics = load_kinematics(self.robot.spec)
        self.substeps = max(1, int(round(1.0 / (self.control_hz * self.model.opt.timestep))))

        cam = self.layout.camera
        self._cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, cam.name)
        self._intr = intrinsics_from_fovy(cam.fovy, cam.width, cam.height, cam.frame_id)
        self._rgb: mujoco.Renderer | None = None
        self._depth: mujoco.Renderer | None = None
        self._seg: mujoco.Renderer | None = None
        # robot bodies that form the gripper (the gripper mask): the gripper link and fingers
        pre = self.layout.robot_prefix
        names = [mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_BODY, i) or ""
                 for i in range(self.model.nbody)]
        self._gripper_bodies = np.array([i for i, n in enumerate(names) if n.startswith(pre)
                                         and ("finger" in n or "gripper" in n or "hand" in n)],
                                        np.int32)
        self.steps = 0
        self.seed = seed
        self.reset(seed)

    # -- episode ----------------------------------------------------------------------
    @property
    def instruction(self) -> str:
        return self.task.instruction

    @property
    def has_depth(self) -> bool:
        return self.layout.camera.depth

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the last reset."""
        return float(self.data.time)

    @property
    def control_dt(self) -> float:
        """Seconds per policy step."""
        return self.substeps * float(self.model.opt.timestep)

    def reset(self, seed: int | None = None) -> None:
        """New episode: robot at home with the gripper open, objects placed from ``seed``."""
        if seed is not None:
            self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        mujoco.mj_resetData(self.model, self.data)
        r = self.robot
        self.data.qpos[r.arm_qadr] = r.spec.home_q
        self.data.qpos[r.finger_qadr] = r.finger_positions(1.0)
        self.data.ctrl[r.arm_act] = r.spec.home_q
        self.data.ctrl[r.gripper_act] = r.spec.gripper_position(1.0)
        self.task.reset(self.model, self.data, rng, self.layout)
        mujoco.mj_forward(self.model, self.data)
        for _ in range(int(self.settle_s / self.model.opt.timestep)):
            mujoco.mj_step(self.model, self.data)
        self.data.time = 0.0
        self.steps = 0
        self._gripper_cmd = 1.0

    # -- control ----------------------------------------------------------------------
    def step_joint_targets(self, q: np.ndarray, gripper: float | None = None) -> None:
        """Hold arm joint targets ``q`` ((dof,) rad, clipped to limits) for one control step.

        ``gripper``: openness in [0, 1] (1 = open); None keeps the last command.
        """
        self.set_joint_targets(q, gripper)
        self.advance(self.substeps)
        self.steps += 1

    def set_joint_targets(self, q: np.ndarray, gripper: float | None = None) -> None:
        """Set actuator targets without stepping (for nodes that step on their own clock)."""
        r = self.robot
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (r.spec.dof,) or not np.all(np.isfinite(q)):
            raise SimError(f"joint targets must be {r.spec.dof} finite values "
                           f"({', '.join(r.spec.arm_joints)}), got shape {q.shape}")
        self.data.ctrl[r.arm_act] = np.clip(q, r.spec.lower, r.spec.upper)
        if gripper is not None:
            if not np.isfinite(gripper):
                raise SimError(f"gripper command must be finite in [0, 1], got {gripper}")
            self._gripper_cmd = float(np.clip(gripper, 0.0, 1.0))
            self.data.ctrl[r.gripper_act] = r.spec.gripper_position(self._gripper_cmd)

    def advance(self, n: int) -> None:
        """Run ``n`` physics steps (``n * timestep`` seconds)."""
        for _ in range(n):
            mujoco.mj_step(self.model, self.data)

    def step_ee_delta(self, action: np.ndarray) -> np.ndarray:
        """Execute one ``ee_delta_7d`` action; returns the (dof,) joint targets sent."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
            raise SimError(f"ee_delta_7d action must be 7 finite values "
                           f"[dx, dy, dz, droll, dpitch, dyaw, gripper], got {np.shape(action)}")
        try:
            target_pos, target_rot = integrate_ee_delta(self.ee_pose()[0], self.ee_matrix(), a)
        except ActionError as exc:
            raise SimError(str(exc)) from None
        res = self.kinematics.solve_ik(target_pos, target_rot, q_seed=self.joint_positions(),
                                       options=_SIM_IK)
        if not res.success:
            log.debug("IK inexact (%.1f mm, %.3f rad): best effort", res.pos_err * 1e3, res.rot_err)
        self.step_joint_targets(res.q, float(a[6]))
        return res.q

    # -- state ------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        """(dof,) arm joint positions, rad, in ``robot.spec.arm_joints`` order."""
        return self.data.qpos[self.robot.arm_qadr].copy()

    def joint_targets(self) -> np.ndarray:
        """(dof,) current arm actuator targets, rad."""
        return self.data.ctrl[self.robot.arm_act].copy()

    def gripper_opening(self) -> float:
        """Openness in [0, 1] of the actuated finger (1 = open), measured."""
        s = self.robot.spec
        q = float(self.data.qpos[self.robot.finger_qadr[0]])
        return float(np.clip((q - s.gripper_closed) / (s.gripper_open - s.gripper_closed), 0.0, 1.0))

    @property
    def gripper_command(self) -> float:
        """Last commanded openness in [0, 1]."""
        return self._gripper_cmd

    def command_vector(self) -> np.ndarray:
        """(dof + 1,) the present command as ROS controllers see it: arm joint targets [rad],
        then the actuated finger joint [m] (``sim.trajectory.CommandArbiter``'s vector)."""
        s = self.robot.spec
        return np.concatenate([self.joint_targets(), [s.gripper_position(self._gripper_cmd)]])

    def set_command_vector(self, cmd: np.ndarray) -> None:
        """Set actuator targets from a :meth:`command_vector`-shaped vector (no stepping)."""
        s = self.robot.spec
        self.set_joint_targets(cmd[: s.dof], (cmd[s.dof] - s.gripper_closed)
                               / (s.gripper_open - s.gripper_closed))

    def joint_state(self) -> JointState:
        r = self.robot
        adr = np.concatenate([r.arm_qadr, r.finger_qadr])
        dadr = np.concatenate([r.arm_dadr, r.finger_dadr])
        effort = np.zeros(len(adr))
        effort[: r.spec.dof] = self.data.actuator_force[r.arm_act]
        effort[r.spec.dof] = self.data.actuator_force[r.gripper_act]
        names = tuple(r.spec.ros_joint_names) + tuple(r.spec.gripper_joints)
        return JointState(names, self.data.qpos[adr].copy(), self.data.qvel[dadr].copy(), effort)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector site pose in the base frame: position (3,) m, quaternion (4,) wxyz."""
        sid = self.robot.ee_site_id
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[sid])
        return self.data.site_xpos[sid].copy(), quat

    def ee_matrix(self) -> np.ndarray:
        """(3, 3) end-effector site orientation in the base frame."""
        return self.data.site_xmat[self.robot.ee_site_id].reshape(3, 3).copy()

    def object_pose(self, name: str) -> ObjectPose:
        """Privileged pose of a task body (for experts and success checks)."""
        return self.task.object_pose(self.model, self.data, name)

    def success(self) -> bool:
        return bool(self.task.success(self.model, self.data))

    # -- camera -----------------------------------------------------------------------
    def camera_info(self) -> CameraIntrinsics:
        """Intrinsics of the scene camera (same for RGB and depth: one aligned camera)."""
        return self._intr

    def camera_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Optical frame pose in the base frame: position (3,) m, (3, 3) rotation (columns = axes)."""
        cid = self._cam_id
        return (self.data.cam_xpos[cid].copy(),
                self.data.cam_xmat[cid].reshape(3, 3) @ MJCAM_TO_OPTICAL)

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB from the scene camera."""
        if self._rgb is None:
            self._rgb = mujoco.Renderer(self.model, self._intr.height, self._intr.width)
        self._rgb.update_scene(self.data, self._cam_id)
        return self._rgb.render().copy()

    def render_depth(self) -> np.ndarray:
        """(H, W) float32 depth in metres along the optical axis (z), aligned with ``render()``.

        Pixels that see no geometry (beyond the far clipping plane) are 0.0 = no measurement,
        as a real depth camera reports them.
        """
        if self._depth is None:
            self._depth = mujoco.Renderer(self.model, self._intr.height, self._intr.width)
            self._depth.enable_depth_rendering()
        self._depth.update_scene(self.data, self._cam_id)
        depth = self._depth.render().astype(np.float32, copy=True)
        far = float(self.model.vis.map.zfar * self.model.stat.extent)
        depth[depth >= 0.999 * far] = 0.0
        return depth

    def render_body_ids(self) -> np.ndarray:
        """(H, W) int32 id of the MuJoCo body seen at each pixel (segmentation render of the
        scene camera, aligned with ``render()``); -1 where no geom is seen."""
        if self._seg is None:
            self._seg = mujoco.Renderer(self.model, self._intr.height, self._intr.width)
            self._seg.enable_segmentation_rendering()
        self._seg.update_scene(self.data, self._cam_id)
        seg = self._seg.render()
        geom = seg[..., 0]
        is_geom = (seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (geom >= 0)
        body = np.full(geom.shape, -1, np.int32)
        body[is_geom] = self.model.geom_bodyid[geom[is_geom]]
        return body

    def target_body(self) -> str:
        """The body the instruction refers to in this episode (``Task.target``)."""
        return self.task.target

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(target mask, gripper mask), each (H, W) bool, from one segmentation render: the
        pixels of the task's target body and of the robot's gripper link and fingers."""
        ids = self.render_body_ids()
        bid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, self.task.target)
        if bid < 0:
            raise SimError(f"task '{self.task.name}': no target body '{self.task.target}'")
        return ids == bid, np.isin(ids, self._gripper_bodies)

    def close(self) -> None:
        for r in (self._rgb, self._depth, self._seg):
            if r is not None:
                r.close()
        self._rgb = self._depth = self._seg = None

    def __enter__(self) -> "SimEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# One solve per 5 Hz step, from the measured joints; no random restarts (no branch jumps).
_SIM_IK = IKOptions(restarts=0, max_iters=60)

DEFAULT_TASK = {"widowx250s": "put_carrot_on_plate", "fr3": "push_block_to_region"}
