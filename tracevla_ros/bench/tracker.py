"""``tracevla-bench tracker``: latency of the incremental trace tracker on a synthetic stream.

Frames are rendered on the fly (render time excluded); the timed work per
policy step is ``observe`` of each camera frame of that step plus ``step``.
Statistics cover the steady state: from the first dense re-query on.

Examples::

    tracevla-bench tracker --backend lk --size 256 --frames 300 --preset paper
    tracevla-bench tracker --size 640x480 --preset authors --camera-per-step 6
    tracevla-bench tracker --backend cotracker3 --checkpoint scaled_online.pth --device cuda
    tracevla-bench tracker --dense-backend cotracker3 --sparse-backend lk --checkpoint ...

CoTracker3 (``--backend``/``--dense-backend``/``--sparse-backend cotracker3``)
needs ``--checkpoint``: a local online checkpoint; random weights (a state dict
of an untrained ``CoTrackerThreeOnline``) give the same cost, not the accuracy.
``--autocast fp16|bf16`` runs the steps under ``torch.autocast`` on the device;
``--compile`` wraps the feature encoder (``model.fnet``) in ``torch.compile``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time
from typing import Any

import cv2
import numpy as np

from tracevla_ros.cli import ArgParser, finite_float, int_range
from tracevla_ros.tracking import IncrementalTracker, TrackerConfig
from tracevla_ros.tracking.synthetic import SyntheticScene


_BACKENDS = ("lk", "cotracker3")


def _size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '640x480' -> (640, 480)."""
    parts = text.lower().split("x")
    try:
        if len(parts) in (1, 2):
            w, h = int(parts[0]), int(parts[-1])
            if 16 <= w <= 8192 and 16 <= h <= 8192:
                return w, h
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"'{text}': give N or WxH pixels, each in [16, 8192]")


class _AllVisible:
    """Predictor wrapper: every point visible (``--assume-visible``, random weights)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, video_chunk: Any, is_first_step: bool = False, **kw: Any) -> Any:
        out = self.inner(video_chunk, is_first_step=is_first_step, **kw)
        return out if is_first_step else (out[0], out[1] | True)


def _torch_setup(tracker: IncrementalTracker, args: argparse.Namespace) -> tuple[Any, Any]:
    """(report, context factory) for the CoTracker3 options; no torch import for LK."""
    cots = [b for b in {id(tracker.backend): tracker.backend,
                        id(tracker.dense_backend): tracker.dense_backend}.values()
            if b.name == "cotracker3"]
    if not cots:
        return (lambda: {}), contextlib.nullcontext
    import torch

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    device = torch.device(args.device)
    if args.compile:
        for b in cots:
            model = b.predictor.model  # type: ignore[attr-defined]
            model.fnet = torch.compile(model.fnet)
    if args.assume_visible:
        for b in cots:
            b.predictor = _AllVisible(b.predictor)  # type: ignore[attr-defined]
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.autocast)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def guard() -> Any:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def report() -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": str(device), "autocast": args.autocast, "compile": bool(args.compile),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cotracker_window_len": args.window_len, "cotracker_lag": args.lag,
            "assume_visible": bool(args.assume_visible),
            "model_windows": int(np.sum([getattr(b, "windows_run", 0) for b in cots])),
            "predictor_inits": int(np.sum([getattr(b, "inits", 0) for b in cots])),
        }
        if device.type == "cuda":
            out["cuda_max_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            out["gpu"] = torch.cuda.get_device_name(device)
        return out

    return report, guard


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench tracker", description=__doc__)
    ap.add_argument("--backend", choices=_BACKENDS, default="lk", help="tracker backend")
    ap.add_argument("--size", type=_size, default=(256, 256), help="N or WxH pixels")
    ap.add_argument("--frames", type=int_range(1, 1_000_000), default=300,
                    help="policy steps to run")
    ap.add_argument("--preset", choices=("paper", "authors"), default="paper",
                    help="tracker parameter preset")
    ap.add_argument("--camera-per-step", type=int_range(1, 100), default=1,
                    help="camera frames observed per policy step (6 = 30 Hz camera, 5 Hz policy)")
    ap.add_argument("--threads", type=int_range(-1, 1024), default=-1,
                    help="cv2.setNumThreads (-1 = leave OpenCV's default)")
    ap.add_argument("--checkpoint", default="", help="cotracker3 checkpoint path")
    ap.add_argument("--dense-backend", choices=("", *_BACKENDS), default="",
                    help="dense re-query backend ('' = --backend)")
    ap.add_argument("--sparse-backend", choices=("", *_BACKENDS), default="",
                    help="M-point backend ('' = --backend)")
    ap.add_argument("--device", default="cpu", help="cotracker3 torch device (cpu, cuda)")
    ap.add_argument("--window-len", type=int_range(2, 1024), default=16,
                    help="cotracker3 online window")
    ap.add_argument("--lag", choices=("provisional", "hold"), default="provisional",
                    help="cotracker3 lag mode")
    ap.add_argument("--autocast", default="none", choices=["none", "fp16", "bf16"],
                    help="cotracker3: torch.autocast dtype on the device")
    ap.add_argument("--compile", action="store_true", help="cotracker3: torch.compile model.fnet")
    ap.add_argument("--assume-visible", action="store_true",
                    help="cotracker3: treat every point as visible (random weights give no "
                    "visibility, so nothing is traced and no incremental step runs); cost only")
    ap.add_argument("--grid-size", type=int_range(-1, 1000), default=-1, help="K (-1 = preset)")
    ap.add_argument("--kappa", type=finite_float(ge=-1, le=1000), default=-1.0,
                    help="kappa_px (-1 = preset; 0 makes every kept track active)")
    ap.add_argument("--torch-threads", type=int_range(0, 1024), default=0,
                    help="torch.set_num_threads (0 = default)")
    ap.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0, help="stream seed")
    args = ap.parse_args(argv)
    if args.threads >= 0:
        cv2.setNumThreads(args.threads)
    width, height = args.size
    cfg = TrackerConfig(preset=args.preset, backend=args.backend, seed=args.seed,
                        cotracker_checkpoint=args.checkpoint, grid_size=args.grid_size,
                        kappa_px=args.kappa,
                        dense_backend=args.dense_backend, sparse_backend=args.sparse_backend,
                        cotracker_device=args.device, cotracker_window_len=args.window_len,
                        cotracker_lag=args.lag)
    scene = SyntheticScene.default(width, height, seed=args.seed)
    tracker = IncrementalTracker(cfg)
    torch_info, guard = _torch_setup(tracker, args)
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
        with guard():
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
        "backend": tracker.tracker_name,
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
        **torch_info(),
        "config": dict(cfg.as_dict()),
    }
