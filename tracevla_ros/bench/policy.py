"""``tracevla-bench policy``: closed-loop success of the local policy, trace vs no-trace.

Example (the experiment in the README)::

    MUJOCO_GL=egl tracevla-bench policy --episodes 50

For each checkpoint (``--checkpoint``, default the shipped trace-prompted
``widowx_trace``; ``--baseline``, default the shipped no-trace
``widowx_notrace``; ``--baseline none`` skips it) and each WidowX task, runs
``--episodes`` seeded episodes in ``SimEnv``: per 5 Hz policy step the frame
goes through the online ``IncrementalTracker`` with the ``tracker_node``
parameters of ``config/widowx.yaml`` (``--params``), the overlay (when the
trace is valid) and the frame, the task instruction and the joint positions go
to the ``local`` policy, and its action is executed. An episode succeeds when
the task's success check holds at any step within the task's ``max_steps``.
Seeds are ``--seed-offset + i`` (default 100000, disjoint from the training
seeds; the checkpoint's ``training.episode_seeds`` are checked). Both
checkpoints see the same seeds.

Reports per task: success rate, Wilson 95 % interval, episode lengths (steps
until success or the limit), the fraction of steps with a valid trace; per
checkpoint: inference latency of ``LocalPolicy.infer`` (1 torch thread, batch
1) and of the tracker step; the trace-minus-baseline differences.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.cli import ArgParser, existing_file, int_range, require, robot_task
from tracevla_ros.config import config_dir, load_node_config
from tracevla_ros.policy.base import Observation, PolicyError
from tracevla_ros.sim.env import SimEnv
from tracevla_ros.sim.tasks import tasks_for_robot
from tracevla_ros.tracking import IncrementalTracker, TrackerConfig

ROBOT = "widowx250s"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def run_episode(env: SimEnv, policy: Any, tracker: IncrementalTracker, seed: int,
                lat_policy: list[float], lat_tracker: list[float]) -> dict[str, Any]:
    """One closed-loop episode; returns success, steps, valid-trace steps, error."""
    env.reset(seed)
    tracker.reset("new episode")
    policy.reset()
    draw = tracker.config.draw_length
    valid = 0
    for step in range(env.task.max_steps):
        image = env.render()
        t0 = time.perf_counter()
        result = tracker.process(image, env.sim_time)
        overlay = result.overlay(image, draw) if result is not None and result.valid else None
        lat_tracker.append((time.perf_counter() - t0) * 1e3)
        valid += overlay is not None
        obs = Observation(image=image, overlay=overlay, instruction=env.instruction,
                          proprio=env.joint_state().position.astype(np.float32),
                          stamp=env.sim_time)
        t1 = time.perf_counter()
        try:
            chunk = policy.infer(obs)
        except PolicyError as exc:
            return {"success": False, "steps": step, "valid": valid, "error": str(exc)}
        lat_policy.append((time.perf_counter() - t1) * 1e3)
        env.step_ee_delta(chunk.values[0])
        if env.success():
            return {"success": True, "steps": step + 1, "valid": valid, "error": ""}
    return {"success": False, "steps": env.task.max_steps, "valid": valid, "error": ""}


def evaluate(checkpoint: str, tasks: list[str], seeds: list[int], tracker_cfg: TrackerConfig,
             bar: Any) -> dict[str, Any]:
    from tracevla_ros.policy.local.backend import LocalPolicy

    policy = LocalPolicy(checkpoint, device="cpu", num_threads=1)
    trained = policy.checkpoint.training.get("episode_seeds", {})
    overlap = sorted({s for t in tasks for s in trained.get(t, [])} & set(seeds))
    if overlap:
        raise SystemExit(f"tracevla-bench policy: evaluation seeds {overlap[:5]}... were used to "
                         f"train {policy.checkpoint.path}; choose another --seed-offset")
    lat_p: list[float] = []
    lat_t: list[float] = []
    per_task: dict[str, Any] = {}
    wins_all = n_all = 0
    for task in tasks:
        env = SimEnv(robot=ROBOT, task=task, seed=seeds[0])
        tracker = IncrementalTracker(tracker_cfg)
        results = []
        for s in seeds:
            results.append(run_episode(env, policy, tracker, s, lat_p, lat_t))
            bar.update(1)
        env.close()
        wins = sum(r["success"] for r in results)
        lengths = [r["steps"] for r in results]
        ok_len = [r["steps"] for r in results if r["success"]]
        steps = sum(lengths)
        lo, hi = wilson(wins, len(results))
        per_task[task] = {
            "success_rate": round(wins / len(results), 4), "successes": wins,
            "episodes": len(results), "wilson95": [round(lo, 4), round(hi, 4)],
            "mean_length": round(float(np.mean(lengths)), 2),
            "mean_length_success": round(float(np.mean(ok_len)), 2) if ok_len else None,
            "max_steps": env.task.max_steps,
            "trace_valid_ratio": round(sum(r["valid"] for r in results) / max(1, steps), 4),
            "failed_seeds": [s for s, r in zip(seeds, results) if not r["success"]],
            "errors": sorted({r["error"] for r in results if r["error"]}),
        }
        wins_all += wins
        n_all += len(results)
    lo, hi = wilson(wins_all, n_all)
    return {
        "path": str(policy.checkpoint.path), "use_trace": policy.use_trace,
        "parameters": int(sum(p.numel() for p in policy.checkpoint.model.parameters())),
        "size_bytes": int(sum(f.stat().st_size for f in Path(policy.checkpoint.path).glob("*")
                              if f.name in ("model.safetensors", "config.json"))),
        "tasks": per_task,
        "overall": {"success_rate": round(wins_all / n_all, 4), "successes": wins_all,
                    "episodes": n_all, "wilson95": [round(lo, 4), round(hi, 4)]},
        "latency_ms": {
            "policy_infer": {"p50": _pct(lat_p, 50), "p95": _pct(lat_p, 95),
                             "mean": round(float(np.mean(lat_p)), 3) if lat_p else None,
                             "n": len(lat_p), "torch_threads": 1, "batch": 1},
            "tracker_step": {"p50": _pct(lat_t, 50), "p95": _pct(lat_t, 95),
                             "mean": round(float(np.mean(lat_t)), 3) if lat_t else None},
        },
    }


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench policy", description=__doc__)
    ap.add_argument("--checkpoint", default="widowx_trace",
                    help="checkpoint dir or shipped name")
    ap.add_argument("--baseline", default="widowx_notrace",
                    help="second checkpoint; 'none' to skip")
    ap.add_argument("--episodes", type=int_range(1, 100_000), default=50,
                    help="episodes per task and checkpoint")
    ap.add_argument("--seed-offset", type=int_range(0, 2**31 - 1), default=100000,
                    help="seed of the first episode")
    ap.add_argument("--tasks", nargs="*", default=None, help="tasks (default: every WidowX task)")
    ap.add_argument("--params", type=existing_file, default=None,
                    help="parameter file for the tracker (default: config/widowx.yaml)")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    from tracevla_ros.policy.local.checkpoint import CONFIG_FILE, resolve_checkpoint

    for task in args.tasks or ():
        robot_task(ROBOT, task, task_flag="--tasks")
    for flag, ck in (("--checkpoint", args.checkpoint), ("--baseline", args.baseline)):
        if flag == "--baseline" and ck.lower() == "none":
            continue
        path = resolve_checkpoint(ck)
        require((path / CONFIG_FILE).is_file(), f"{flag} '{ck}': {path} is not a checkpoint "
                f"directory (no {CONFIG_FILE}); give one written by tracevla-train or a "
                "shipped name")

    tasks = args.tasks or tasks_for_robot(ROBOT)
    params = args.params or config_dir() / "widowx.yaml"
    tracker_cfg = load_node_config(TrackerConfig, params, "tracker_node")
    seeds = [args.seed_offset + i for i in range(args.episodes)]
    ckpts = {"trace": args.checkpoint}
    if args.baseline.lower() != "none":
        ckpts["baseline"] = args.baseline
    t0 = time.perf_counter()
    bar = tqdm(total=len(ckpts) * len(tasks) * len(seeds), desc="policy episodes", unit="ep")
    out: dict[str, Any] = {}
    for name, path in ckpts.items():
        bar.set_description(f"policy episodes ({name})")
        out[name] = evaluate(path, tasks, seeds, tracker_cfg, bar)
    bar.close()
    result: dict[str, Any] = {
        "benchmark": "policy", "robot": ROBOT, "episodes_per_task": args.episodes,
        "seeds": [seeds[0], seeds[-1]], "control_hz": 5.0, "tasks": tasks,
        "tracker": {"params": str(params), **dict(tracker_cfg.as_dict())},
        "checkpoints": out,
    }
    if "baseline" in out:
        result["trace_minus_baseline"] = {
            t: round(out["trace"]["tasks"][t]["success_rate"]
                     - out["baseline"]["tasks"][t]["success_rate"], 4) for t in tasks}
        result["trace_minus_baseline"]["overall"] = round(
            out["trace"]["overall"]["success_rate"] - out["baseline"]["overall"]["success_rate"], 4)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result
