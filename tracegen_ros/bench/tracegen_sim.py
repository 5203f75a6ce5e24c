"""``tracevla-bench tracegen-sim``: TraceGen's execution path on the FR3 sim tasks.

Example::

    MUJOCO_GL=egl tracevla-bench tracegen-sim --episodes 50
    MUJOCO_GL=egl tracevla-bench tracegen-sim --episodes 50 \\
        --checkpoint tracegen_ros/checkpoints/fr3_small --methods no_motion oracle model

For each FR3 task and held-out seed (``--seed-offset`` on; the TraceForge dataset used
seeds 0-89), each method predicts a 3D trace from the first RGB-D frame and the trace is
executed with the real execution path (gripper keypoints -> waypoints in the base frame
via the camera extrinsic -> the FR3 controller's IK and safety layer -> joint trajectory
on the simulated arm, gripper events between segments; ``tracegen_ros.sim_exec``):

- ``no_motion``: the baseline; every keypoint stays where it is.
- ``oracle``: the scripted expert's own episode from that seed, run through TraceForge
  (the trace the model is trained to predict): the execution path's upper bound.
- ``model``: the learned TraceGen checkpoint (``--checkpoint``).

Success = the task's success check after the trace was executed (``--rounds`` > 1 lets a
method predict again from the new frame while not successful; the oracle has one trace).
Reports success rates with 95 % Wilson intervals.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from tracevla_ros.bench.policy import wilson as wilson_interval
from tracevla_ros.cli import ArgParser, UsageError, finite_float, int_range, require, robot_task
from tracevla_ros.sim.tasks import tasks_for_robot

METHODS = ("no_motion", "oracle", "model")


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of k / n, rounded for the JSON (tracevla_ros.bench.policy's)."""
    lo, hi = wilson_interval(k, n)
    return (round(lo, 4), round(hi, 4))


def path_error(path: Any, ref: Any) -> tuple[float, float]:
    """(symmetric mean closest-point distance between the polylines ``path`` and ``ref``,
    end-point distance), metres."""
    import numpy as np

    from tracegen_ros.traceforge.resample import resample_by_arc_length

    a = resample_by_arc_length(np.asarray(path, float), 200)
    b = resample_by_arc_length(np.asarray(ref, float), 200)
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    return float(0.5 * (d.min(axis=1).mean() + d.min(axis=0).mean())), float(np.linalg.norm(a[-1] - b[-1]))


def _parser() -> ArgParser:
    ap = ArgParser("tracevla-bench tracegen-sim", description=__doc__)
    ap.add_argument("--tasks", nargs="*", default=None, help="FR3 tasks (default: all)")
    ap.add_argument("--episodes", type=int_range(1, 100_000), default=50,
                    help="seeded episodes per task")
    ap.add_argument("--seed-offset", type=int_range(0, 2**31 - 1), default=100000,
                    help="first seed (held out: the dataset used 0-89)")
    ap.add_argument("--methods", nargs="*", choices=METHODS, default=None,
                    help=f"subset of {METHODS} (default: no_motion, oracle, and model if "
                         "--checkpoint is given)")
    ap.add_argument("--checkpoint", default="", help="TraceGen checkpoint directory (model method)")
    ap.add_argument("--device", default="auto", help="torch device for the model")
    ap.add_argument("--flow-steps", type=int_range(1, 10_000), default=100,
                    help="model: flow integration steps")
    ap.add_argument("--guidance", type=finite_float(ge=0, le=100), default=None,
                    help="model: guidance scale (default: the checkpoint's)")
    ap.add_argument("--temperature", type=finite_float(ge=0, le=100), default=None,
                    help="model: initial-noise scale (default: the checkpoint's)")
    ap.add_argument("--rounds", type=int_range(1, 1000), default=1,
                    help="predictions per episode while unsuccessful")
    ap.add_argument("--execute-steps", type=int_range(0, 10_000), default=0,
                    help="receding horizon for no_motion/model: execute each trace up to this step, "
                         "then predict again (with --rounds > 1); 0 = the whole trace")
    ap.add_argument("--plot", default="", metavar="PNG",
                    help="also draw the first planned end-effector paths (top view and height) of up "
                         "to 6 episodes per task, each method against the oracle's")
    ap.add_argument("--verbose", action="store_true", help="log the runners' progress")
    return ap


def plot_first_paths(results: dict[str, dict[str, list[Any]]], png: str, per_task: int = 6) -> None:
    """Top view (base x, y) and height (base z) of the first planned paths, one row per task:
    each method's (colour) against the oracle's (black) for the same seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"no_motion": "tab:gray", "model": "tab:red"}
    tasks = list(results)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        per = results[task]
        oracle = {r.seed: r.first_path for r in per.get("oracle", []) if r.first_path is not None}
        seeds = sorted({r.seed for rs in per.values() for r in rs})[:per_task]
        for i, seed in enumerate(seeds):
            alpha = 0.35 + 0.65 * (i + 1) / len(seeds)
            for m, rs in per.items():
                path = next((r.first_path for r in rs if r.seed == seed), None)
                if path is None or len(path) == 0 or (m == "oracle" and seed not in oracle):
                    continue
                c = "black" if m == "oracle" else colours.get(m, "tab:blue")
                lab = m if i == 0 else None
                row[0].plot(path[:, 1], path[:, 0], "-", color=c, alpha=alpha, label=lab)
                row[0].plot(path[-1, 1], path[-1, 0], "o", color=c, alpha=alpha, ms=4)
                row[1].plot(path[:, 2], "-", color=c, alpha=alpha, label=lab)
        row[0].set(title=f"{task}: first planned path, top view", xlabel="base y (m)",
                   ylabel="base x (m)")
        row[0].invert_xaxis()  # y to the left, as seen from behind the robot
        row[0].set_aspect("equal", adjustable="datalim")
        row[1].set(title="height", xlabel="waypoint", ylabel="base z (m)")
        row[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


class _ModelAdapter:
    """Passes the benchmark's flow settings to ``TraceGenPredictor.predict``."""

    def __init__(self, predictor: Any, steps: int, guidance: float | None,
                 temperature: float | None = None) -> None:
        self.p, self.steps, self.guidance, self.temperature = predictor, steps, guidance, temperature

    def predict(self, rgb: Any, depth_m: Any, K: Any, instruction: str, steps: int = 100,
                guidance: float | None = None, seed: int = 0) -> Any:
        return self.p.predict(rgb, depth_m, K, instruction, steps=self.steps,
                              guidance=self.guidance, seed=seed, temperature=self.temperature)


def main(argv: list[str]) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    for task in args.tasks or ():
        robot_task("fr3", task, task_flag="--tasks")
    require(not args.checkpoint or os.path.isdir(args.checkpoint),
            f"--checkpoint '{args.checkpoint}' is not a directory; give a TraceGen checkpoint "
            "directory")
    os.environ.setdefault("MUJOCO_GL", "egl")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    from tracegen_ros.execution import (ExecutionConfig, FixedTracePredictor, NoMotionPredictor,
                                        TracePredictor)
    from tracegen_ros.sim_exec import SimTraceRunner
    from tracegen_ros.traceforge.pipeline import trace_from_frames
    from tracegen_ros.traceforge.simgt import record_expert
    import numpy as np

    from tracevla_ros.sim.env import SimEnv

    methods = list(args.methods or (["no_motion", "oracle"] + (["model"] if args.checkpoint else [])))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise UsageError(f"--methods: unknown method(s) {bad}; choose from {METHODS}")
    model: TracePredictor | None = None
    if "model" in methods:
        if not args.checkpoint:
            raise UsageError("--methods model needs --checkpoint DIR")
        from tracegen_ros.predict import TraceGenPredictor  # the model helper's API

        model = _ModelAdapter(TraceGenPredictor.from_checkpoint(args.checkpoint, device=args.device),
                              args.flow_steps, args.guidance, args.temperature)
    tasks = args.tasks or tasks_for_robot("fr3")
    t_start = time.perf_counter()
    out: dict[str, Any] = {}
    all_results: dict[str, dict[str, list[Any]]] = {}
    for task in tasks:
        env = SimEnv("fr3", task, seed=args.seed_offset)
        runner = SimTraceRunner(env)  # the oracle's one trace: executed whole
        rh_runner = SimTraceRunner(env, execution=ExecutionConfig(execute_steps=args.execute_steps))
        per: dict[str, list[Any]] = {m: [] for m in methods}
        expert_ok = 0
        for i in range(args.episodes):
            seed = args.seed_offset + i
            if "oracle" in methods:
                rec = record_expert(env, seed)
                expert_ok += rec.success
                traj, _ = trace_from_frames(rec.rgb, rec.depth, rec.K)
                per["oracle"].append(runner.run_episode(FixedTracePredictor(traj), seed, rounds=1))
            if "no_motion" in methods:
                per["no_motion"].append(rh_runner.run_episode(NoMotionPredictor(), seed, args.rounds))
            if model is not None:
                per["model"].append(rh_runner.run_episode(model, seed, args.rounds,
                                                        predict_seed=seed))
        env.close()
        all_results[task] = per
        task_out: dict[str, Any] = {}
        oracle_paths = {r.seed: r.first_path for r in per.get("oracle", []) if r.first_path is not None}
        oracle_grasps = {r.seed: r.first_grasp for r in per.get("oracle", [])
                         if r.first_grasp is not None}
        for m, results in per.items():
            errs = [path_error(r.first_path, oracle_paths[r.seed]) for r in results
                    if m != "oracle" and r.first_path is not None and len(r.first_path) > 0
                    and r.seed in oracle_paths and len(oracle_paths[r.seed]) > 1]
            k = sum(r.success for r in results)
            task_out[m] = {
                "success_rate": round(k / max(1, len(results)), 4), "successes": k,
                "episodes": len(results), "wilson95": wilson(k, len(results)),
                "success_any_rate": round(sum(r.success_any for r in results) / max(1, len(results)), 4),
                "failed_seeds": [r.seed for r in results if not r.success],
                "errors": sum(1 for r in results if r.error),
                "first_error": next((r.error for r in results if r.error), ""),
                "ik_incomplete_plans": sum(r.ik_incomplete for r in results),
                "mean_sim_time_s": round(sum(r.sim_time_s for r in results) / max(1, len(results)), 2),
            }
            if m != "oracle" and oracle_grasps:  # where the first plan closes the gripper
                g_err = [float(np.linalg.norm(r.first_grasp[:2] - oracle_grasps[r.seed][:2]))
                         for r in results if r.seed in oracle_grasps and r.first_grasp is not None]
                task_out[m]["grasps_planned"] = sum(1 for r in results if r.first_grasp is not None)
                if g_err:
                    task_out[m]["grasp_xy_vs_oracle_mean_m"] = round(float(np.mean(g_err)), 4)
            if errs:  # first planned path against the oracle's (same seed, same start)
                task_out[m]["path_vs_oracle_mean_m"] = round(sum(e[0] for e in errs) / len(errs), 4)
                task_out[m]["path_vs_oracle_end_m"] = round(sum(e[1] for e in errs) / len(errs), 4)
        if "oracle" in methods:
            task_out["expert_success_rate"] = round(expert_ok / args.episodes, 4)
        out[task] = task_out
    if args.plot:
        plot_first_paths(all_results, args.plot)
    pooled = {}
    for m in methods:
        k = sum(out[t][m]["successes"] for t in tasks)
        n = sum(out[t][m]["episodes"] for t in tasks)
        pooled[m] = {"success_rate": round(k / max(1, n), 4), "successes": k, "episodes": n,
                     "wilson95": wilson(k, n)}
    return {"benchmark": "tracegen-sim", "robot": "fr3", "episodes_per_task": args.episodes,
            "seeds": [args.seed_offset, args.seed_offset + args.episodes - 1],
            "rounds": args.rounds, "execute_steps": args.execute_steps, "checkpoint": args.checkpoint or None,
            "flow_steps": args.flow_steps if model is not None else None,
            "temperature": args.temperature if model is not None else None,
            "execution": "gripper keypoints -> base-frame waypoints (T_base_cam) -> "
                         "ArmController.plan_waypoints (FR3 IK + safety) -> joint trajectory",
            "tasks": out, "pooled": pooled, "wall_s": round(time.perf_counter() - t_start, 1)}
