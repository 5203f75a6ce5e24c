"""``tracevla-bench tracegen``: TraceGen sampling time, size, and held-out trace accuracy.

Reports, for one checkpoint: the configuration, parameter counts (and the
decoder size of the published configuration, built on the meta device),
wall time of one prediction (encode + ODE sampling + rebuild + depth
rescale) for each ``--steps`` value (100, 10, 25 by default; median of
``--repeats``), and the endpoint error (pixels and metres) of predicted traces
against held-out episodes next to the no-motion baseline
(``tracegen_ros.evaluate``).

Held-out samples: episodes named in the checkpoint meta (``heldout_episodes``)
found under ``--data``, else the data's "val" split.

Examples::

    tracevla-bench tracegen --data /work/data/traceforge/fr3 --max-samples 24
    tracevla-bench tracegen --checkpoint /work/data/tracegen/fr3_small --steps 100,10,25 \\
        --eval-steps 100 --threads 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from tracegen_ros.data import DataError, list_samples, load_info, load_sample
from tracegen_ros.evaluate import evaluate_samples
from tracegen_ros.model.config import TraceGenConfig
from tracegen_ros.model.decoder import TraceDecoder
from tracegen_ros.predict import TraceGenPredictor

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "fr3_small"
DEFAULT_DATA = Path("/work/data/traceforge/fr3")


def _heldout(data: Path, episodes: list[str], max_samples: int) -> list[Path]:
    paths = [p for p in list_samples(data) if p.parent.parent.name in set(episodes)]
    if not paths:
        splits = load_info(data).get("splits") or {}
        if splits.get("val"):
            paths = list_samples(data, split="val")
    if max_samples and len(paths) > max_samples:
        sel = np.unique(np.linspace(0, len(paths) - 1, max_samples).astype(int))
        paths = [paths[i] for i in sel]
    return paths


def _published_decoder_parameters() -> int:
    with torch.device("meta"):
        dec = TraceDecoder(TraceGenConfig.from_preset("published"))
    return sum(p.numel() for p in dec.parameters())


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser(prog="tracevla-bench tracegen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TraceForge dataset")
    ap.add_argument("--steps", default="100,10,25", help="ODE step counts to time")
    ap.add_argument("--repeats", type=int, default=3, help="timed predictions per step count")
    ap.add_argument("--eval-steps", type=int, default=100, help="ODE steps for the accuracy run")
    ap.add_argument("--max-samples", type=int, default=24, help="held-out samples (0 = all)")
    ap.add_argument("--guidance", type=float, default=None, help="CFG scale (default: checkpoint's)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="initial-noise scale (default: checkpoint's)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    pred = TraceGenPredictor.from_checkpoint(args.checkpoint, args.device)
    cfg = pred.cfg
    result: dict = {
        "checkpoint": str(args.checkpoint),
        "device": str(pred.device),
        "torch_threads": torch.get_num_threads(),
        "config": cfg.to_dict() | {"vocab": f"{len(cfg.vocab)} words"},
        "parameters": pred.model.parameter_counts(),
        "published_decoder_parameters": _published_decoder_parameters(),
        "train_meta": {k: v for k, v in pred.meta.items() if k != "heldout_episodes"},
    }
    paths: list[Path] = []
    note = ""
    try:
        paths = _heldout(args.data, list(pred.meta.get("heldout_episodes", [])), args.max_samples)
    except DataError as exc:
        note = str(exc)
    if paths:
        s = load_sample(paths[0])
        rgb, depth, K, text = s.rgb, s.depth_m, s.intrinsics, s.instructions[0]
    else:
        rng = np.random.default_rng(0)
        rgb = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
        depth = np.full((256, 256), 1.0, np.float32)
        K = np.array([[220.0, 0, 127.5], [0, 220.0, 127.5], [0, 0, 1]], np.float32)
        text = "push the block"
    timing: dict[str, dict[str, float]] = {}
    pred.predict(rgb, depth, K, text, steps=2, guidance=args.guidance)  # warm-up
    for steps in [int(v) for v in args.steps.split(",") if v.strip()]:
        wall, cpu = [], []
        for r in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            pred.predict(rgb, depth, K, text, steps=steps, guidance=args.guidance, seed=r)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        timing[str(steps)] = {"median_ms": float(np.median(wall)), "min_ms": float(np.min(wall)),
                              "cpu_ms_median": float(np.median(cpu))}
    result["prediction_time"] = timing
    result["guidance"] = cfg.default_guidance if args.guidance is None else args.guidance
    result["temperature"] = cfg.default_temperature if args.temperature is None else args.temperature
    result["load_average"] = list(os.getloadavg())
    if paths:
        t0 = time.perf_counter()
        acc = evaluate_samples(pred, paths, args.eval_steps, args.guidance, args.seed,
                               temperature=args.temperature)
        acc["eval_wall_s"] = time.perf_counter() - t0
        acc["data"] = str(args.data)
        result["accuracy"] = acc
    else:
        result["accuracy"] = {"samples": 0,
                              "note": note or f"no held-out samples under {args.data}"}
    return result
