"""Trace tracker accuracy against the MuJoCo simulator's ground-truth point tracks.

``python -m tracegen_ros.bench.tracker_gt`` (prints one JSON object). For each
expert episode (``tracegen_ros.traceforge.simgt.record_expert``, one frame per
policy step) it runs ``IncrementalTracker`` with each backend pair and compares
every traced position with where the surface point under its query pixel
really went (moved rigidly with its body, projected with the camera
intrinsics; occlusion is not modelled):

* ``median/p90_error_px``: L2 error over the positions the tracker marks
  visible (all N at a dense step, the newest one at the other steps);
* ``active_correct_fraction``: of the points drawn at dense re-queries, the
  share whose TRUE mean per-step L1 motion over the window exceeds kappa
  (a correctly chosen active point).

Example::

    MUJOCO_GL=egl python -m tracegen_ros.bench.tracker_gt --episodes 2 \\
        --pairs lk:lk cotracker3:cotracker3 cotracker3:lk --checkpoint scaled_online.pth

``--assume-visible`` (random weights only) treats every CoTracker3 point as
visible so that the wiring runs: its errors then measure untrained weights.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tracevla_ros.cli import ArgParser, dumps_json, finite_float, int_range, robot_task, run_main

import numpy as np

from tracevla_ros.tracking import IncrementalTracker, TrackerConfig


def _score(rec: Any, tracker: IncrementalTracker, hz: float) -> dict[str, Any]:
    from tracegen_ros.traceforge.geometry import project
    from tracegen_ros.traceforge.simgt import gt_points

    errors: list[np.ndarray] = [np.zeros(0)]
    correct: list[np.ndarray] = [np.zeros(0, bool)]
    valid = 0
    kappa = tracker.config.kappa_px
    for t in range(rec.rgb.shape[0]):
        r = tracker.process(rec.rgb[t], t / hz)
        if r is None or not r.valid:
            continue
        valid += 1
        ref = int(round(r.query_stamp * hz))
        idx = np.rint(r.step_stamps * hz).astype(int) - ref
        gt = project(gt_points(rec, ref, r.query_points), rec.K)[idx]  # (N, M, 2)
        pred = r.points.transpose(1, 0, 2)  # (N, M, 2)
        sl = slice(None) if r.dense else slice(-1, None)
        ok = r.visible.T[sl] & np.isfinite(gt[sl]).all(axis=2)
        errors.append(np.linalg.norm(pred[sl] - gt[sl], axis=2)[ok])
        if r.dense:
            motion = np.abs(np.diff(gt, axis=0)).sum(axis=2).mean(axis=0)  # (M,) px/step
            correct.append(np.nan_to_num(motion, nan=0.0) > kappa)
    err, cor = np.concatenate(errors), np.concatenate(correct)
    return {"errors": err, "correct": cor, "valid": valid, "steps": int(rec.rgb.shape[0])}


def _pair(text: str) -> str:
    parts = text.split(":")
    if len(parts) != 2 or not set(parts) <= {"lk", "cotracker3"}:
        raise argparse.ArgumentTypeError(f"'{text}': give dense:sparse, each lk or cotracker3")
    return text


def main(argv: list[str]) -> dict[str, Any]:
    ap = ArgParser("tracker_gt", description=__doc__)
    ap.add_argument("--robot", default="fr3", help="sim robot")
    ap.add_argument("--task", default="push_block_to_region", help="task of that robot")
    ap.add_argument("--episodes", type=int_range(1, 10_000), default=1, help="expert episodes")
    ap.add_argument("--seed", type=int_range(0, 2**31 - 1), default=1, help="first seed")
    ap.add_argument("--preset", choices=("paper", "authors"), default="paper",
                    help="tracker parameter preset")
    ap.add_argument("--grid-size", type=int_range(-1, 1000), default=-1, help="K (-1 = preset)")
    ap.add_argument("--kappa", type=finite_float(ge=-1, le=1000), default=-1.0,
                    help="kappa_px (-1 = preset)")
    ap.add_argument("--max-steps", type=int_range(0, 100_000), default=0,
                    help="cut episodes (0 = task limit)")
    ap.add_argument("--pairs", nargs="+", type=_pair, default=["lk:lk"],
                    help="dense:sparse backend pairs, e.g. lk:lk cotracker3:lk")
    ap.add_argument("--checkpoint", default="", help="cotracker3 online checkpoint")
    ap.add_argument("--device", default="cpu", help="cotracker3 torch device")
    ap.add_argument("--assume-visible", action="store_true",
                    help="cotracker3: treat every point as visible")
    args = ap.parse_args(argv)
    robot_task(args.robot, args.task)

    from tracegen_ros.traceforge.simgt import record_expert
    from tracevla_ros.sim.env import SimEnv

    env = SimEnv(args.robot, args.task, seed=args.seed)
    try:
        recs = [record_expert(env, args.seed + i, segment_every=1,
                              max_steps=args.max_steps or None) for i in range(args.episodes)]
        hz = 1.0 / env.control_dt
    finally:
        env.close()
    out: dict[str, Any] = {"benchmark": "tracker_gt", "robot": args.robot, "task": args.task,
                           "episodes": args.episodes, "frames": [int(r.rgb.shape[0]) for r in recs],
                           "control_hz": hz, "grid_size": args.grid_size, "kappa": args.kappa,
                           "assume_visible": bool(args.assume_visible),
                           "results": {}}
    for pair in args.pairs:
        dense, sparse = pair.split(":")
        cfg = TrackerConfig(preset=args.preset, grid_size=args.grid_size, backend=sparse,
                            kappa_px=args.kappa,
                            dense_backend=dense, sparse_backend=sparse,
                            cotracker_checkpoint=args.checkpoint, cotracker_device=args.device)
        errs, cors, valid, steps = [], [], 0, 0
        for rec in recs:
            tracker = IncrementalTracker(cfg)
            if args.assume_visible:
                from tracevla_ros.bench.tracker import _AllVisible

                for b in {tracker.backend, tracker.dense_backend}:
                    if b.name == "cotracker3":
                        b.predictor = _AllVisible(b.predictor)  # type: ignore[attr-defined]
            s = _score(rec, tracker, hz)
            errs.append(s["errors"])
            cors.append(s["correct"])
            valid, steps = valid + s["valid"], steps + s["steps"]
        err, cor = np.concatenate(errs), np.concatenate(cors)
        out["results"][f"{dense}+{sparse}"] = {
            "median_error_px": round(float(np.median(err)), 2) if err.size else None,
            "p90_error_px": round(float(np.percentile(err, 90)), 2) if err.size else None,
            "positions": int(err.size),
            "active_correct_fraction": round(float(cor.mean()), 3) if cor.size else None,
            "points_drawn": int(cor.size),
            "valid_steps": valid, "steps": steps,
        }
    return out


if __name__ == "__main__":
    sys.exit(run_main("tracker_gt", lambda argv: print(dumps_json(main(list(argv or sys.argv[1:])),
                                                                   indent=None)), None))
