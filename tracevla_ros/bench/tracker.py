"""``tracevla-bench tracker``: latency of the incremental trace tracker on a synthetic stream.

Frames are rendered on the fly (render time excluded); the timed work per
policy step is ``observe`` of each camera frame of that step plus ``step``.
Statistics cover the steady state: from the first dense re-query on.

Examples::

    tracevla-bench tracker --backend lk --size 256 --frames 300 --preset paper
    tracevla-bench tracker --size 640x480 --preset authors --camera-per-step 6
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import cv2
import numpy as np

from tracevla_ros.tracking import IncrementalTracker, TrackerConfig
from tracevla_ros.tracking.synthetic import SyntheticScene


def _size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '640x480' -> (640, 480)."""
    parts = text.lower().split("x")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"size must be N or WxH, got '{text}'")


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="tracevla-bench tracker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="lk", help="tracker backend (lk, cotracker3)")
    ap.add_argument("--size", type=_size, default=(256, 256), help="N or WxH pixels")
    ap.add_argument("--frames", type=int, default=300, help="policy steps to run")
    ap.add_argument("--preset", default="paper", help="paper or authors")
    ap.add_argument("--camera-per-step", type=int, default=1,
                    help="camera frames observed per policy step (6 = 30 Hz camera, 5 Hz policy)")
    ap.add_argument("--threads", type=int, default=-1,
                    help="cv2.setNumThreads (-1 = leave OpenCV's default)")
    ap.add_argument("--checkpoint", default="", help="cotracker3 checkpoint path")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads >= 0:
        cv2.setNumThreads(args.threads)
    width, height = args.size
    cfg = TrackerConfig(preset=args.preset, backend=args.backend, seed=args.seed,
                        cotracker_checkpoint=args.checkpoint)
    scene = SyntheticScene.default(width, height, seed=args.seed)
    tracker = IncrementalTracker(cfg)
    k = max(1, args.camera_per_step)
    hz = cfg.control_rate_hz * k
    step_ms: list[float] = []
    cpu_ms: list[float] = []
    dense_ms: list[float] = []
    overlay_ms: list[float] = []
    steady_from: int | None = None
    valid = 0
    load_before = os.getloadavg()
    for s in range(args.frames):
        images = [scene.render((s * k + j) / hz)[0] for j in range(k)]
        t0, c0 = time.perf_counter(), time.process_time()
        for j, img in enumerate(images):
            tracker.observe(img, (s * k + j) / hz)
        result = tracker.step()
        step_ms.append((time.perf_counter() - t0) * 1e3)
        cpu_ms.append((time.process_time() - c0) * 1e3)
        if result.dense:
            dense_ms.append(tracker.last_dense_ms)
            if steady_from is None:
                steady_from = s
        if result.valid:
            valid += 1
            t1 = time.perf_counter()
            result.overlay(images[0], cfg.draw_length)
            overlay_ms.append((time.perf_counter() - t1) * 1e3)
    steady = np.array(step_ms[steady_from or 0:])
    incremental = [m for i, m in enumerate(step_ms) if steady_from is not None and i > steady_from
                   and m not in dense_ms]

    def pct(a: list[float] | np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 3) if len(a) else None

    return {
        "benchmark": "tracker",
        "backend": args.backend,
        "preset": args.preset,
        "size": f"{width}x{height}",
        "policy_steps": args.frames,
        "camera_frames_per_step": k,
        "ms_per_step_p50": pct(steady, 50),
        "ms_per_step_p95": pct(steady, 95),
        "amortized_ms_per_step": round(float(steady.mean()), 3) if steady.size else None,
        # CPU time of this process (all its threads) per step: less sensitive to other
        # processes competing for the cores than the wall-clock numbers above
        "amortized_cpu_ms_per_step": round(float(np.mean(cpu_ms[steady_from or 0:])), 3),
        "dense_ms": pct(dense_ms, 50),
        "dense_ms_max": round(max(dense_ms), 3) if dense_ms else None,
        "dense_queries": len(dense_ms),
        "incremental_ms_p50": pct(incremental, 50),
        "overlay_ms_p50": pct(overlay_ms, 50),
        "valid_fraction": round(valid / max(1, args.frames), 3),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "cv2_threads": cv2.getNumThreads(),
        "opencv": cv2.__version__,
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "config": dict(cfg.as_dict()),
    }
