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

from tracegen_ros.checkpoint import CheckpointError
from tracegen_ros.data import DataError, list_samples, load_info, load_sample
from tracegen_ros.evaluate import evaluate_samples
from tracegen_ros.model.config import TraceGenConfig
from tracegen_ros.model.decoder import TraceDecoder
from tracegen_ros.model.encoders import EncoderUnavailableError
from tracegen_ros.predict import TraceGenPredictor
from tracevla_ros.cli import ArgParser, UsageError, existing_dir, finite_float, int_range

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


def _step_list(text: str) -> list[int]:
    """'100,10,25' -> [100, 10, 25] (each >= 1)."""
    try:
        steps = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        steps = []
    if not steps or min(steps) < 1 or max(steps) > 10_000:
        raise argparse.ArgumentTypeError(f"'{text}': give a comma list of step counts in "
                                         "[1, 10000], e.g. 100,10,25")
    return steps


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench tracegen", description=__doc__)
    ap.add_argument("--checkpoint", type=existing_dir, default=DEFAULT_CHECKPOINT,
                    help="TraceGen checkpoint directory")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="TraceForge dataset (held-out samples for the accuracy run)")
    ap.add_argument("--steps", type=_step_list, default=[100, 10, 25],
                    help="comma list of ODE step counts to time")
    ap.add_argument("--repeats", type=int_range(1, 10_000), default=3,
                    help="timed predictions per step count")
    ap.add_argument("--eval-steps", type=int_range(1, 10_000), default=100,
                    help="ODE steps for the accuracy run")
    ap.add_argument("--max-samples", type=int_range(0, 1_000_000), default=24,
                    help="held-out samples (0 = all)")
    ap.add_argument("--guidance", type=finite_float(ge=0, le=100), default=None,
                    help="CFG scale (default: the checkpoint's)")
    ap.add_argument("--temperature", type=finite_float(ge=0, le=100), default=None,
                    help="initial-noise scale (default: the checkpoint's)")
    ap.add_argument("--threads", type=int_range(0, 1024), default=0,
                    help="torch threads (0 = default)")
    ap.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    ap.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0, help="sampling seed")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        pred = TraceGenPredictor.from_checkpoint(args.checkpoint, args.device)
    except (CheckpointError, EncoderUnavailableError) as exc:
        raise UsageError(f"--checkpoint {args.checkpoint}: {exc}") from None
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
    for steps in args.steps:
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
