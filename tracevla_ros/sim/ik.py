"""INTERIM end-effector IK for the simulator (damped least squares on MuJoCo Jacobians).

Placeholder until the project's IK (``tracevla_ros.control``) is merged; then
``solve_ik`` delegates to it so the project has one IK.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tracevla_ros.sim.robot import SimRobot

__all__ = ["solve_ik"]

_scratch: dict[int, mujoco.MjData] = {}


def solve_ik(robot: SimRobot, model: mujoco.MjModel, data: mujoco.MjData, target_pos: np.ndarray,
             target_rot: np.ndarray, iters: int = 20, damping: float = 1e-3,
             rot_weight: float = 0.5) -> np.ndarray:
    """(dof,) joint positions, rad, that put the ee site at ``target_pos`` (3,) / ``target_rot`` (3, 3).

    Starts from the current joint positions in ``data``; clipped to the joint limits.
    """
    scratch = _scratch.get(id(model))
    if scratch is None:
        scratch = _scratch[id(model)] = mujoco.MjData(model)
    scratch.qpos[:] = data.qpos
    s = robot.spec
    sid = robot.ee_site_id
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    q = data.qpos[robot.arm_qadr].copy()
    for _ in range(iters):
        scratch.qpos[robot.arm_qadr] = q
        mujoco.mj_kinematics(model, scratch)
        mujoco.mj_comPos(model, scratch)
        pos = scratch.site_xpos[sid]
        rot = scratch.site_xmat[sid].reshape(3, 3)
        err_p = np.asarray(target_pos) - pos
        r_err = np.asarray(target_rot) @ rot.T
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, r_err.reshape(-1))
        err_r = np.zeros(3)
        mujoco.mju_quat2Vel(err_r, quat, 1.0)
        err = np.concatenate([err_p, rot_weight * err_r])
        if np.linalg.norm(err_p) < 1e-4 and np.linalg.norm(err_r) < 1e-3:
            break
        mujoco.mj_jacSite(model, scratch, jacp, jacr, sid)
        jac = np.vstack([jacp[:, robot.arm_dadr], rot_weight * jacr[:, robot.arm_dadr]])
        dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
        q = np.clip(q + dq, s.lower, s.upper)
    return q
