"""IK benchmark: solve time, success rate and final errors on reachable random targets.

Targets are FK poses (position + orientation of the end-effector site) of joint
configurations drawn uniformly within the limits, so every target is reachable. Each
target is solved from two seeds: ``near`` (the true configuration plus N(0, sigma) noise
per joint, clipped to the limits: the controller's case, seeded with the current joint
state) and ``home`` (``RobotSpec.home``: a cold start, using the solver's restarts).

Example::

    tracevla-bench ik --robot fr3 --n 1000
    /work/main/.venv/bin/python -m tracevla_ros.tools.bench ik --robot widowx --n 1000
"""

from __future__ import annotations

import os
import time

import numpy as np

from tracevla_ros.cli import ArgParser, finite_float, int_range, require, robot_task
from tracevla_ros.control.kinematics import ArmKinematics, IKOptions
from tracevla_ros.robots import get_robot


def _stats(x: np.ndarray, scale: float, digits: int = 4) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64) * scale
    return {
        "p50": round(float(np.percentile(x, 50)), digits),
        "p95": round(float(np.percentile(x, 95)), digits),
        "p99": round(float(np.percentile(x, 99)), digits),
        "max": round(float(np.max(x)), digits),
        "mean": round(float(np.mean(x)), digits),
    }


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench ik", description=__doc__.split("\n")[0])
    ap.add_argument("--robot", default="fr3", help="widowx | widowx250s | fr3")
    ap.add_argument("--n", type=int_range(1, 10_000_000), default=1000,
                    help="number of random targets")
    ap.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0,
                    help="RNG seed for the targets")
    ap.add_argument("--near-sigma", type=finite_float(ge=0, le=10), default=0.1,
                    help="std of the per-joint seed noise for the 'near' seed [rad]")
    ap.add_argument("--orientation-weight", type=finite_float(ge=0),
                    default=IKOptions.orientation_weight,
                    help="metres per radian in the IK error; 0 = position only")
    ap.add_argument("--backend", default="auto", choices=("auto", "numba", "pinocchio"),
                    help="IK loop implementation (auto = numba when installed)")
    ap.add_argument("--modes", default="near,home", help="comma list of seed modes: near,home")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    require(bool(modes) and set(modes) <= {"near", "home"},
            f"--modes '{args.modes}': give a comma list of near and/or home")
    spec = get_robot(robot_task(args.robot)[0])
    opts = IKOptions(orientation_weight=args.orientation_weight)
    kin = ArmKinematics(spec, opts, backend=args.backend)
    rng = np.random.default_rng(args.seed)
    qs = rng.uniform(spec.lower, spec.upper, size=(args.n, spec.dof))
    targets = [kin.fk(q) for q in qs]
    noise = rng.normal(0.0, args.near_sigma, size=qs.shape)
    # warm up (imports, caches)
    for p, r in targets[:20]:
        kin.solve_ik(p, r, spec.home_q)

    out: dict = {
        "benchmark": "ik",
        "robot": spec.name,
        "dof": spec.dof,
        "ee_site": spec.ee_site,
        "n_targets": args.n,
        "targets": "FK of joint configs uniform within the limits (all reachable)",
        "options": {k: getattr(opts, k) for k in opts.__dataclass_fields__},
        "solver": "Levenberg-Marquardt DLS on the MJCF model, clamped to limits, "
                  "restarts from home then random on failure",
        "backend": kin.backend,
    }
    out["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ("near", "home"):
            raise SystemExit(f"unknown seed mode '{mode}'; use near and/or home")
        times, cpu, pos, rot, iters, attempts, ok = [], [], [], [], [], [], []
        for i, (p, r) in enumerate(targets):
            seed = np.clip(qs[i] + noise[i], spec.lower, spec.upper) if mode == "near" \
                else spec.home_q
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            res = kin.solve_ik(p, r, seed)
            times.append((time.perf_counter_ns() - t0) * 1e-6)
            cpu.append((time.thread_time_ns() - c0) * 1e-6)
            ok.append(res.success)
            pos.append(res.pos_err)
            rot.append(res.rot_err)
            iters.append(res.iterations)
            attempts.append(res.attempts)
        okm = np.asarray(ok)
        out[f"seed_{mode}"] = {
            "seed": (f"true q + N(0, {args.near_sigma} rad)" if mode == "near" else "home pose"),
            "success_rate": round(float(okm.mean()), 4),
            "solve_time_ms": _stats(np.asarray(times), 1.0),
            "solve_cpu_time_ms": _stats(np.asarray(cpu), 1.0),
            "pos_err_mm_all": _stats(np.asarray(pos), 1e3),
            "rot_err_mrad_all": _stats(np.asarray(rot), 1e3),
            "pos_err_mm_success": _stats(np.asarray(pos)[okm], 1e3) if okm.any() else None,
            "rot_err_mrad_success": _stats(np.asarray(rot)[okm], 1e3) if okm.any() else None,
            "iterations": _stats(np.asarray(iters), 1.0, 1),
            "restarts_used_frac": round(float(np.mean(np.asarray(attempts) > 1)), 4),
        }
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out["note"] = ("solve_time_ms is wall time per solve_ik call (the number to compare with "
                   "a control period); solve_cpu_time_ms is this thread's CPU time, which "
                   "excludes time the OS gave to other processes on a shared machine")
    return out
