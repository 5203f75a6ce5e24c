"""Tracker evaluation on synthetic sequences with known motion (no ROS).

Runs ``IncrementalTracker`` over a ``SyntheticScene`` and compares every
traced position with the ground truth of the material point it was queried
on (grid point at the oldest buffer frame of its dense query):

* tracking error (px, L2) over positions both the tracker and the ground
  truth mark visible; each position is counted once (all N at a dense step,
  the newest one at the other steps);
* ``on_mover_fraction``: of the points drawn at dense re-queries, the share
  whose query position lies on a moving object (not background/occluder).

Example::

    from tracevla_ros.tracking.evaluate import evaluate
    from tracevla_ros.tracking.synthetic import SyntheticScene
    report = evaluate(SyntheticScene.default(256, 256), TrackerConfig(preset="paper"),
                      n_steps=150)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.synthetic import SyntheticScene
from tracevla_ros.tracking.tracker import IncrementalTracker, TraceResult

__all__ = ["EvalReport", "evaluate", "run_stream"]


@dataclass(frozen=True)
class EvalReport:
    median_error_px: float
    p90_error_px: float
    max_error_px: float
    num_positions: int  # positions compared
    on_mover_fraction: float
    num_sampled: int  # points drawn at dense re-queries
    valid_steps: int
    steps: int
    lost_fraction: float  # traced positions the tracker marked invisible

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def run_stream(scene: SyntheticScene, config: TrackerConfig, n_steps: int,
               camera_per_step: int = 1) -> list[TraceResult]:
    """Feed ``n_steps`` policy steps; ``camera_per_step`` camera frames per step
    (observe at camera rate; frames 0, k, 2k, ... are the policy steps, so the
    policy-step frames are exactly those of a ``camera_per_step=1`` run)."""
    tracker = IncrementalTracker(config)
    camera_hz = config.control_rate_hz * camera_per_step
    results = []
    for i in range(n_steps * camera_per_step):
        t = i / camera_hz
        tracker.observe(scene.render(t)[0], t)
        if i % camera_per_step == 0:
            results.append(tracker.step())
    return results


def _score(scene: SyntheticScene, results: list[TraceResult]
           ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(errors px, on-mover flags of drawn points, lost positions, shown positions)."""
    movers = np.array(sorted(scene.moving_labels))
    cache: dict[float, np.ndarray] = {}
    errors: list[np.ndarray] = [np.zeros(0)]
    on_mover: list[np.ndarray] = [np.zeros(0, bool)]
    lost = shown = 0
    for r in results:
        if not r.valid:
            continue
        gt, gt_vis, labels = scene.gt_tracks(r.query_points, r.query_stamp, r.step_stamps, cache)
        sl = slice(None) if r.dense else slice(-1, None)
        pred = r.points.transpose(1, 0, 2)[sl]  # (n, M, 2)
        vis = r.visible.T[sl]
        both = vis & gt_vis[sl]
        errors.append(np.linalg.norm(pred - gt[sl], axis=2)[both])
        lost += int((~vis).sum())
        shown += int(vis.size)
        if r.dense:
            on_mover.append(np.isin(labels, movers))
    return np.concatenate(errors), np.concatenate(on_mover), lost, shown


def evaluate(scenes: SyntheticScene | Sequence[SyntheticScene], config: TrackerConfig,
             n_steps: int = 150, camera_per_step: int = 1) -> EvalReport:
    """Run the tracker over each scene (fresh tracker each) and pool the scores."""
    scene_list = [scenes] if isinstance(scenes, SyntheticScene) else list(scenes)
    errs, onms = [], []
    lost = shown = valid = steps = 0
    for scene in scene_list:
        results = run_stream(scene, config, n_steps, camera_per_step)
        e, o, lo, sh = _score(scene, results)
        errs.append(e)
        onms.append(o)
        lost, shown = lost + lo, shown + sh
        valid += sum(r.valid for r in results)
        steps += len(results)
    err, onm = np.concatenate(errs), np.concatenate(onms)
    nan = float("nan")
    return EvalReport(
        median_error_px=float(np.median(err)) if err.size else nan,
        p90_error_px=float(np.percentile(err, 90)) if err.size else nan,
        max_error_px=float(err.max()) if err.size else nan,
        num_positions=int(err.size),
        on_mover_fraction=float(onm.mean()) if onm.size else nan,
        num_sampled=int(onm.size),
        valid_steps=valid,
        steps=steps,
        lost_fraction=lost / shown if shown else nan,
    )
