"""Compiled (numba) FK/Jacobian and the Levenberg-Marquardt IK loop (optional backend).

The chain is read from the same MJCF the simulator loads (via MuJoCo's compiled model:
body offsets, joint axes and the end-effector site), so this backend and the pinocchio
one describe one model; test_ik.py checks they agree. The algorithm is the one of
``ArmKinematics._solve_once`` (see kinematics.py), written for numba: no Python objects
in the loop, ~10x faster than the numpy/pinocchio loop for 6-7 joints.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tracevla_ros.robots import RobotSpec

__all__ = ["chain_from_mjcf", "fk_jac", "solve_lm"]


def _pose(pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
    w, x, y, z = quat / np.linalg.norm(quat)
    t = np.eye(4)
    t[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    t[:3, 3] = pos
    return t


def chain_from_mjcf(spec: RobotSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pre (n, 4, 4), axes (n, 3), post (4, 4)) of the serial chain base -> ee site.

    ``pre[i]`` is the fixed transform from joint i-1's frame (base for i = 0) to the body of
    joint i; ``axes[i]`` the joint axis in that body; ``post`` body of the last joint -> site.
    Raises ValueError if the arm joints are not hinges on the path to the site, in order.
    """
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(spec.model_path))
    site = model.site(spec.ee_site)
    path = []
    body = int(site.bodyid[0])
    while body != 0:
        path.append(body)
        body = int(model.body_parentid[body])
    path.reverse()
    pre: list[np.ndarray] = []
    axes: list[np.ndarray] = []
    names: list[str] = []
    acc = np.eye(4)
    for b in path:
        acc = acc @ _pose(model.body_pos[b], model.body_quat[b])
        for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]):
            if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE or np.any(model.jnt_pos[j] != 0):
                raise ValueError(f"{spec.name}: joint {model.joint(j).name} on the ee path is not a "
                                 "hinge at its body origin")
            pre.append(acc)
            axes.append(model.jnt_axis[j].copy())
            names.append(model.joint(j).name)
            acc = np.eye(4)
    if tuple(names) != spec.arm_joints:
        raise ValueError(f"{spec.name}: joints on the ee path {names} != arm_joints {spec.arm_joints}")
    post = acc @ _pose(model.site_pos[site.id], model.site_quat[site.id])
    return np.ascontiguousarray(pre), np.ascontiguousarray(axes), post


@njit(cache=True)
def _axis_rot(a: np.ndarray, q: float) -> np.ndarray:
    c, s = math.cos(q), math.sin(q)
    t = 1.0 - c
    x, y, z = a[0], a[1], a[2]
    r = np.empty((4, 4))
    r[0, 0] = t * x * x + c
    r[0, 1] = t * x * y - s * z
    r[0, 2] = t * x * z + s * y
    r[1, 0] = t * x * y + s * z
    r[1, 1] = t * y * y + c
    r[1, 2] = t * y * z - s * x
    r[2, 0] = t * x * z - s * y
    r[2, 1] = t * y * z + s * x
    r[2, 2] = t * z * z + c
    r[0, 3] = r[1, 3] = r[2, 3] = 0.0
    r[3, 0] = r[3, 1] = r[3, 2] = 0.0
    r[3, 3] = 1.0
    return r


@njit(cache=True)
def _mul4(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a @ b for rigid 4x4 transforms (last row 0 0 0 1); out must not alias a or b."""
    for i in range(3):
        for j in range(4):
            out[i, j] = a[i, 0] * b[0, j] + a[i, 1] * b[1, j] + a[i, 2] * b[2, j]
        out[i, 3] += a[i, 3]
    out[3, 0] = out[3, 1] = out[3, 2] = 0.0
    out[3, 3] = 1.0


@njit(cache=True)
def fk_jac(pre: np.ndarray, axes: np.ndarray, post: np.ndarray, q: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """ee pose (4, 4) and Jacobian (6, n) (linear; angular, base frame) at ``q``."""
    n = q.shape[0]
    t = np.eye(4)
    tmp = np.empty((4, 4))
    zs = np.empty((n, 3))
    ps = np.empty((n, 3))
    for i in range(n):
        _mul4(t, pre[i], tmp)
        a = axes[i]
        for r in range(3):
            zs[i, r] = tmp[r, 0] * a[0] + tmp[r, 1] * a[1] + tmp[r, 2] * a[2]
            ps[i, r] = tmp[r, 3]
        _mul4(tmp, _axis_rot(a, q[i]), t)
    _mul4(t, post, tmp)
    t = tmp
    jac = np.empty((6, n))
    for i in range(n):
        d0, d1, d2 = t[0, 3] - ps[i, 0], t[1, 3] - ps[i, 1], t[2, 3] - ps[i, 2]
        z0, z1, z2 = zs[i, 0], zs[i, 1], zs[i, 2]
        jac[0, i] = z1 * d2 - z2 * d1
        jac[1, i] = z2 * d0 - z0 * d2
        jac[2, i] = z0 * d1 - z1 * d0
        jac[3, i] = z0
        jac[4, i] = z1
        jac[5, i] = z2
    return t, jac


@njit(cache=True)
def _log3(m: np.ndarray) -> np.ndarray:
    c = (m[0, 0] + m[1, 1] + m[2, 2] - 1.0) * 0.5
    c = min(1.0, max(-1.0, c))
    angle = math.acos(c)
    v = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
    if angle < 1e-6:
        return 0.5 * v
    if math.pi - angle > 1e-4:
        return v * (angle / (2.0 * math.sin(angle)))
    b = 0.5 * (m + m.T)
    for i in range(3):
        b[i, i] -= c
    k = 0
    for i in range(1, 3):
        if b[i, i] > b[k, k]:
            k = i
    axis = b[k].copy()
    axis /= math.sqrt(axis @ axis)
    if axis @ v < 0:
        axis = -axis
    return axis * angle


@njit(cache=True)
def _error(t: np.ndarray, p_t: np.ndarray, r_t: np.ndarray, use_rot: bool, w: float,
           e: np.ndarray) -> tuple[float, float]:
    pe2 = 0.0
    for i in range(3):
        e[i] = p_t[i] - t[i, 3]
        pe2 += e[i] * e[i]
    re2 = 0.0
    if use_rot:
        m = np.empty((3, 3))  # r_t @ R^T
        for i in range(3):
            for j in range(3):
                m[i, j] = r_t[i, 0] * t[j, 0] + r_t[i, 1] * t[j, 1] + r_t[i, 2] * t[j, 2]
        er = _log3(m)
        for i in range(3):
            e[3 + i] = w * er[i]
            re2 += er[i] * er[i]
    return pe2, re2


@njit(cache=True)
def _chol_solve(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    n = h.shape[0]
    lo = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = h[i, j]
            for k in range(j):
                s -= lo[i, k] * lo[j, k]
            if i == j:
                lo[i, i] = math.sqrt(max(s, 1e-300))
            else:
                lo[i, j] = s / lo[j, j]
    y = np.empty(n)
    for i in range(n):
        s = g[i]
        for k in range(i):
            s -= lo[i, k] * y[k]
        y[i] = s / lo[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, n):
            s -= lo[k, i] * x[k]
        x[i] = s / lo[i, i]
    return x


@njit(cache=True)
def solve_lm(pre: np.ndarray, axes: np.ndarray, post: np.ndarray, p_t: np.ndarray,
             r_t: np.ndarray, use_rot: bool, q0: np.ndarray, lower: np.ndarray,
             upper: np.ndarray, w: float, pos_tol: float, rot_tol: float, max_iters: int,
             max_step: float, damping: float) -> tuple[np.ndarray, float, float, int, bool]:
    """One LM run (same algorithm as ``ArmKinematics._solve_once``); returns
    (q, pos_err, rot_err, iterations, success)."""
    n = q0.shape[0]
    rows = 6 if use_rot else 3
    q = q0.copy()
    e = np.zeros(6)
    t, jac = fk_jac(pre, axes, post, q)
    pe2, re2 = _error(t, p_t, r_t, use_rot, w, e)
    cost = 0.5 * (pe2 + w * w * re2)
    mu = 1.0
    pt2, rt2 = pos_tol * pos_tol, rot_tol * rot_tol
    e_new = np.zeros(6)
    j = np.empty((rows, n))
    for it in range(1, max_iters + 1):
        if pe2 < pt2 and re2 < rt2:
            return q, math.sqrt(pe2), math.sqrt(re2), it - 1, True
        for r in range(rows):
            s = 1.0 if r < 3 else w
            for c in range(n):
                j[r, c] = jac[r, c] * s
        g = np.zeros(n)
        for c in range(n):
            for r in range(rows):
                g[c] += j[r, c] * e[r]
        for c in range(n):  # joints at a limit pushed outward sit out this step
            if (q[c] <= lower[c] and g[c] < 0) or (q[c] >= upper[c] and g[c] > 0):
                for r in range(rows):
                    j[r, c] = 0.0
                g[c] = 0.0
        lam = mu * cost + damping
        h = np.empty((n, n))
        for a in range(n):
            for b in range(a + 1):
                acc = 0.0
                for r in range(rows):
                    acc += j[r, a] * j[r, b]
                h[a, b] = acc
                h[b, a] = acc
            h[a, a] += lam
        dq = _chol_solve(h, g)
        norm = 0.0
        for c in range(n):
            norm += dq[c] * dq[c]
        norm = math.sqrt(norm)
        if norm > max_step:
            dq *= max_step / norm
        q_new = np.minimum(np.maximum(q + dq, lower), upper)
        t_new, jac_new = fk_jac(pre, axes, post, q_new)
        pe2_new, re2_new = _error(t_new, p_t, r_t, use_rot, w, e_new)
        cost_new = 0.5 * (pe2_new + w * w * re2_new)
        if cost_new < cost:
            q, jac, pe2, re2, cost = q_new, jac_new, pe2_new, re2_new, cost_new
            e[:] = e_new
            mu = max(mu * 0.3, 1e-3)
        else:
            mu *= 10.0
            if mu > 1e8:
                break
    pe, re = math.sqrt(pe2), math.sqrt(re2)
    return q, pe, re, max_iters, pe < pos_tol and re < rot_tol
