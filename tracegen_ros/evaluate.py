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

"gripper" (sim samples with ``ee_uvz``): what the execution path uses. The
keypoints whose predicted step 0 lies within ``gripper_radius_px`` of the end
effector's pixel and ``gripper_depth_tol_m`` of its depth stand for the
gripper; the mean of their 3-D displacements from step 0 is compared with the
end effector's true displacement, at the last step (``end_m``) and averaged
over the steps (``mean_m``), in metres in the camera frame. The no-motion
baseline's error is the end effector's true displacement.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from tracegen_ros.data import Sample, load_sample
from tracegen_ros.transforms import unproject

__all__ = ["TracePredictor", "trace_errors", "no_motion_trace", "evaluate_samples"]


class TracePredictor(Protocol):
    def predict(self, rgb: np.ndarray, depth_m: np.ndarray, K: np.ndarray, instruction: str,
                steps: int = 100, guidance: float | None = None, seed: int = 0,
                temperature: float | None = None) -> np.ndarray: ...


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


GRIPPER_RADIUS_PX = 24.0  # keypoints this close to the end effector's pixel at step 0 ...
GRIPPER_DEPTH_TOL_M = 0.08  # ... and to its depth stand for the gripper


def on_gripper(uvz0: np.ndarray, ee_uvz0: np.ndarray, radius_px: float = GRIPPER_RADIUS_PX,
               depth_tol_m: float = GRIPPER_DEPTH_TOL_M) -> np.ndarray:
    """(K,) bool: keypoints whose step-0 (u, v, z) ``uvz0`` (K, 3; NaN = unknown) lie within
    ``radius_px`` of the end effector's pixel and ``depth_tol_m`` of its depth (``ee_uvz0`` (3,))."""
    with np.errstate(invalid="ignore"):
        return ((np.linalg.norm(uvz0[:, :2] - ee_uvz0[:2], axis=1) <= radius_px)
                & (np.abs(uvz0[:, 2] - ee_uvz0[2]) <= depth_tol_m))


def gripper_errors(pred: np.ndarray, ee_uvz: np.ndarray, K: np.ndarray,
                   radius_px: float = GRIPPER_RADIUS_PX,
                   depth_tol_m: float = GRIPPER_DEPTH_TOL_M) -> tuple[float, float]:
    """(end_m, mean_m) error of the gripper keypoints' mean displacement vs the end
    effector's; NaN when no keypoint qualifies. pred (K, L, 3); ee_uvz (L, 3)."""
    p = np.where(np.isfinite(pred), pred, np.nan)
    ee = np.asarray(ee_uvz, np.float64)
    near = on_gripper(p[:, 0], ee[0], radius_px, depth_tol_m)
    if not near.any() or not np.isfinite(ee).all():
        return float("nan"), float("nan")
    xyz = unproject(p[near], K)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        disp = np.nanmean(xyz - xyz[:, :1], axis=0)  # (L, 3)
    e_xyz = unproject(ee, K)
    err = np.linalg.norm(disp - (e_xyz - e_xyz[:1]), axis=-1)
    return float(err[-1]), float(np.nanmean(err[1:]))


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
                     progress: bool = False, temperature: float | None = None) -> dict[str, object]:
    """Model vs no-motion baseline on the samples at ``paths`` (first instruction each);
    ``temperature`` is passed on to the predictor when given."""
    kw: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    model_errs: list[dict[str, np.ndarray]] = []
    base_errs: list[dict[str, np.ndarray]] = []
    grip_model: list[tuple[float, float]] = []
    grip_base: list[tuple[float, float]] = []
    episodes: set[str] = set()
    for i, p in enumerate(tqdm(paths, desc="evaluating", disable=not progress, unit="sample")):
        s: Sample = load_sample(p)
        pred = predictor.predict(s.rgb, s.depth_m, s.intrinsics, s.instructions[0], steps,
                                 guidance, seed + i, **kw)
        model_errs.append(trace_errors(pred, s.traj, s.valid_steps, s.intrinsics))
        still = no_motion_trace(s.traj)
        base_errs.append(trace_errors(still, s.traj, s.valid_steps, s.intrinsics))
        if s.ee_uvz is not None:
            grip_model.append(gripper_errors(pred, s.ee_uvz, s.intrinsics))
            grip_base.append(gripper_errors(still, s.ee_uvz, s.intrinsics))
        episodes.add(s.episode)
    if not paths:
        return {"samples": 0}
    model_sum, base_sum = _summary(model_errs, moving_px), _summary(base_errs, moving_px)
    for target, vals in ((model_sum, grip_model), (base_sum, grip_base)):
        arr = np.array(vals, np.float64).reshape(-1, 2)
        ok = np.isfinite(arr[:, 0])
        target["gripper"] = {"end_m": float(arr[ok, 0].mean()) if ok.any() else float("nan"),
                             "mean_m": float(arr[ok, 1].mean()) if ok.any() else float("nan"),
                             "samples": int(ok.sum())}
    return {"samples": len(paths), "episodes": len(episodes), "ode_steps": steps,
            "moving_threshold_px": moving_px, "model": model_sum, "no_motion": base_sum}
