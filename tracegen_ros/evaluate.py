"""Accuracy of predicted traces against TraceForge samples (numpy; no rclpy).

Endpoint error (EPE) of keypoint k: the distance between predicted and true
positions at the last step L-1, over keypoints valid at steps 0 and L-1 --
in pixels ((u, v) in the reference image) and in metres (both points
unprojected with the sample's intrinsics to camera-frame xyz). ADE is the
same distance averaged over steps 1..L-1 where the truth is valid.

The no-motion baseline predicts that nothing moves: every step equals the
true step 0 (the keypoint at its sensor depth). "moving" restricts the means
to keypoints whose true endpoint moved at least ``moving_px`` pixels -- most
of a scene is static, and the mean over all keypoints is dominated by it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from tqdm import tqdm

from tracegen_ros.data import Sample, load_sample
from tracegen_ros.transforms import unproject

__all__ = ["TracePredictor", "trace_errors", "no_motion_trace", "evaluate_samples"]


class TracePredictor(Protocol):
    def predict(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str,
                steps: int = 100, guidance: float | None = None, seed: int = 0) -> np.ndarray: ...


def no_motion_trace(traj: np.ndarray) -> np.ndarray:
    """(K, L, 3): every step = the true step 0."""
    return np.repeat(traj[:, :1], traj.shape[1], axis=1)


def trace_errors(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                 K: np.ndarray) -> dict[str, np.ndarray]:
    """Per-keypoint errors; NaN where the keypoint is not scored.

    pred, gt: (K, L, 3) (u px, v px, z m); valid: (K, L) bool; K: (3, 3).
    Returns epe_px, epe_m, ade_px, ade_m (each (K,)) and gt_motion_px (K,).
    """
    scored = valid[:, 0] & valid[:, -1]
    gt_f = np.where(valid[..., None], gt, np.nan)
    pred = np.where(np.isfinite(pred), pred, np.nan)
    with np.errstate(invalid="ignore"):
        d_px = np.linalg.norm(pred[..., :2] - gt_f[..., :2], axis=-1)  # (K, L)
        d_m = np.linalg.norm(unproject(pred, K) - unproject(gt_f, K), axis=-1)
        ade_px = np.nanmean(np.where(valid[:, 1:], d_px[:, 1:], np.nan), axis=1)
        ade_m = np.nanmean(np.where(valid[:, 1:], d_m[:, 1:], np.nan), axis=1)
    motion = np.linalg.norm(gt_f[:, -1, :2] - gt_f[:, 0, :2], axis=-1)
    nan = np.full(len(scored), np.nan)
    return {
        "epe_px": np.where(scored, d_px[:, -1], nan),
        "epe_m": np.where(scored, d_m[:, -1], nan),
        "ade_px": np.where(scored, ade_px, nan),
        "ade_m": np.where(scored, ade_m, nan),
        "gt_motion_px": np.where(scored, motion, nan),
    }


def _summary(errs: list[dict[str, np.ndarray]], moving_px: float) -> dict[str, dict[str, float]]:
    cat = {k: np.concatenate([e[k] for e in errs]) for k in errs[0]}
    moving = cat["gt_motion_px"] >= moving_px
    out: dict[str, dict[str, float]] = {}
    for name, sel in (("all", np.isfinite(cat["epe_px"])), ("moving", moving)):
        out[name] = {k: float(np.nanmean(cat[k][sel])) if sel.any() else float("nan")
                     for k in ("epe_px", "epe_m", "ade_px", "ade_m")}
        out[name]["keypoints"] = int(sel.sum())
    return out


def evaluate_samples(predictor: TracePredictor, paths: Sequence[Path], steps: int = 100,
                     guidance: float | None = None, seed: int = 0, moving_px: float = 3.0,
                     progress: bool = False) -> dict[str, object]:
    """Model vs no-motion baseline on the samples at ``paths`` (first instruction each)."""
    model_errs: list[dict[str, np.ndarray]] = []
    base_errs: list[dict[str, np.ndarray]] = []
    episodes: set[str] = set()
    for i, p in enumerate(tqdm(paths, desc="evaluating", disable=not progress, unit="sample")):
        s: Sample = load_sample(p)
        pred = predictor.predict(s.rgb, s.depth_m, s.intrinsics, s.instructions[0], steps,
                                 guidance, seed + i)
        model_errs.append(trace_errors(pred, s.traj, s.valid_steps, s.intrinsics))
        base_errs.append(trace_errors(no_motion_trace(s.traj), s.traj, s.valid_steps, s.intrinsics))
        episodes.add(s.episode)
    if not paths:
        return {"samples": 0}
    return {"samples": len(paths), "episodes": len(episodes), "ode_steps": steps,
            "moving_threshold_px": moving_px,
            "model": _summary(model_errs, moving_px), "no_motion": _summary(base_errs, moving_px)}
