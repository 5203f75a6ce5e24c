"""``tracegen-train``: train TraceGen (flow matching on trace increments) on TraceForge data.

Writes into ``--out`` (a directory):

* ``model.safetensors`` + ``config.json`` -- the checkpoint (EMA weights), what
  ``tracegen-predict`` and ``TraceGenPredictor.from_checkpoint`` load;
* ``train_state.safetensors`` -- raw weights, optimizer, EMA, generators and
  step, for resuming: running the same command again continues exactly from the
  last save up to ``--steps`` (``--restart`` starts over); Ctrl-C / SIGTERM
  saves it after the current step;
* ``metrics.jsonl`` (step, train loss, lr, elapsed; val loss at saves) and ``loss.png``.

The loop (AdamW, torch's LR schedulers, swa_utils EMA, several processes under
``torchrun``) is the training core's, ``tracetrain.loop``.

Held-out data: the "val" split of the dataset's info.json (by episode) when
present, else the last ``--val-fraction`` of episodes; the names are stored in
the checkpoint meta (``heldout_episodes``) for ``tracevla-bench tracegen``.
Runs on the CPU, or on a GPU when one is present (``--device auto``).

Examples::

    tracegen-train --data /work/data/traceforge/fr3 --out /work/data/tracegen/fr3_small \\
        --steps 3000 --batch-size 16 --threads 2
    tracegen-train --data DIR --out OUT --preset small --set d_model=96 --set num_layers=3
    torchrun --standalone --nproc_per_node=4 -m tracegen_ros.train --data DIR --out OUT
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from tracetrain.device import PRECISIONS, resolve_device
from tracetrain.loop import STATE_FILE, SaveContext, Trainer, TrainSettings, distributed
from tracetrain.seed import generator_state, seed_everything, set_generator_state

from tracevla_ros.cli import (
    ArgParser,
    UsageError,
    existing_dir,
    finite_float,
    int_range,
    output_dir,
    run_main,
)
from tracevla_ros.config import ConfigError

from tracegen_ros.checkpoint import CheckpointError, read_config, save_checkpoint
from tracegen_ros.data import DataError, list_episodes, list_samples, load_info, load_sample
from tracegen_ros.evaluate import on_gripper
from tracegen_ros.flow import data_to_velocity, flow_matching_loss, interpolant, masked_mse, sample_tau
from tracegen_ros.model.config import TraceGenConfig
from tracegen_ros.model.encoders import build_vocab
from tracegen_ros.model.tracegen import TraceGenModel
from tracegen_ros.transforms import increment_stats, resize_depth, resize_rgb, trace_to_increments

__all__ = ["TrainArrays", "load_arrays", "split_episodes", "train", "main", "TrainOptions"]

log = logging.getLogger("tracegen.train")

LOSSES = ("velocity", "data")


@dataclass
class TrainArrays:
    """Samples held in memory, resized to the model's image size."""

    rgb: np.ndarray  # (N, S, S, 3) uint8
    depth: np.ndarray  # (N, S, S) float32 metres, 0 = missing
    inc: np.ndarray  # (N, K, L, 3) float32 raw increments (tracegen_ros.transforms)
    mask: np.ndarray  # (N, K, L) bool loss mask
    weight: np.ndarray  # (N, K) float32 per-keypoint loss weight (1 = plain MSE)
    instructions: list[list[str]]  # per sample, 1..3 phrasings
    episodes: list[str]  # per sample

    def __len__(self) -> int:
        return int(self.rgb.shape[0])


def split_episodes(root: Path, val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, held-out) episode names: info.json splits when given, else the last fraction."""
    info = load_info(root)
    names = [p.name for p in list_episodes(root)]
    splits = info.get("splits") or {}
    if "val" in splits and splits["val"]:
        held = [n for n in names if n in set(splits["val"])]
        return [n for n in names if n not in set(held)], held
    n_val = int(round(len(names) * val_fraction)) if len(names) > 1 else 0
    n_val = min(max(n_val, 1 if val_fraction > 0 and len(names) > 1 else 0), len(names) - 1)
    return names[: len(names) - n_val], names[len(names) - n_val:]


MOVING_SCALE_PX = 20.0  # a keypoint that moves this far gets the whole --moving-weight


def starts_on_gripper(smp: Any) -> np.ndarray | None:
    """(K,) bool: the sample's keypoints on the gripper at step 0 (:func:`on_gripper` against
    ``ee_uvz[0]``; a keypoint unknown at step 0 is not on it), or None when the sample has no
    known end effector (real videos)."""
    ee = smp.ee_uvz
    if ee is None or not np.isfinite(ee[0]).all():
        return None
    return on_gripper(np.where(smp.valid_steps[:, :1], smp.traj[:, 0], np.nan), ee[0])


def keypoint_weights(smp: Any, moving_weight: float, gripper_weight: float) -> np.ndarray:
    """(K,) loss weights: 1 + moving_weight * min(motion / 20 px, 1) + gripper_weight where
    the keypoint starts on the gripper (needs the sample's ``ee_uvz``; real videos have none).

    Most of the 20x20 grid is static background; what the robot executes is the motion of the
    one to three keypoints on its gripper, so weighting them keeps the few samples of that
    motion from being averaged away by the static majority."""
    valid = smp.valid_steps
    w = np.ones(valid.shape[0], np.float32)
    uv = np.where(valid[..., None], smp.traj[..., :2], np.nan)
    if moving_weight > 0:
        with np.errstate(invalid="ignore"):
            disp = np.linalg.norm(uv - uv[:, :1], axis=-1)
        motion = np.nan_to_num(np.nanmax(np.where(np.isfinite(disp), disp, -1.0), axis=1), nan=0.0)
        w += moving_weight * np.clip(motion / MOVING_SCALE_PX, 0.0, 1.0).astype(np.float32)
    on_hand = starts_on_gripper(smp) if gripper_weight > 0 else None
    if on_hand is not None:
        w[on_hand] += gripper_weight
    return w


def fill_gripper_tracks(smp: Any) -> tuple[np.ndarray, np.ndarray]:
    """(traj, valid_steps) with the lost steps of the keypoints on the gripper filled from the
    end effector's own trace ``ee_uvz`` (sim samples; others are returned unchanged).

    The tracker loses the hand's keypoints when the fingers turn or pass over the object
    (about half of the sim samples lose them before the last step); the loss then says
    nothing about where the gripper goes next, and that is the part the robot executes. A
    lost step continues the keypoint from its previous step by the end effector's increment
    (pixels and depth), so the filled track is continuous and moves with the hand."""
    traj, valid = smp.traj, smp.valid_steps
    ee = smp.ee_uvz
    on_hand = starts_on_gripper(smp)
    if on_hand is None or not np.isfinite(ee).all():  # every step of ee_uvz is needed
        return traj, valid
    rows = np.flatnonzero(on_hand & ~valid.all(axis=1))
    if rows.size == 0:
        return traj, valid
    traj, valid = traj.copy(), valid.copy()
    step = np.diff(ee, axis=0).astype(traj.dtype)  # (L-1, 3)
    for k in rows:
        for t in range(1, traj.shape[1]):
            if not valid[k, t]:
                traj[k, t] = traj[k, t - 1] + step[t - 1]
                valid[k, t] = True
    return traj, valid


def load_arrays(paths: Sequence[Path], cfg: TraceGenConfig, progress: bool = True,
                moving_weight: float = 0.0, gripper_weight: float = 0.0,
                fill_gripper: bool = False) -> TrainArrays:
    """Read samples, resize images, convert traces to increments; DataError on bad files.

    ``moving_weight`` / ``gripper_weight``: see :func:`keypoint_weights`;
    ``fill_gripper``: see :func:`fill_gripper_tracks`."""
    n = len(paths)
    s, k, length = cfg.image_size, cfg.num_keypoints, cfg.horizon
    rgb = np.zeros((n, s, s, 3), np.uint8)
    depth = np.zeros((n, s, s), np.float32)
    inc = np.zeros((n, k, length, 3), np.float32)
    mask = np.zeros((n, k, length), bool)
    weight = np.ones((n, k), np.float32)
    instr: list[list[str]] = []
    eps: list[str] = []
    for i, p in enumerate(tqdm(paths, desc="loading samples", disable=not progress, unit="sample")):
        smp = load_sample(p)
        if smp.traj.shape[:2] != (k, length):
            raise DataError(f"{p}: traj {smp.traj.shape} does not fit the config "
                            f"(grid {cfg.grid_size}^2 = {k} keypoints, horizon {length})")
        h, w = smp.rgb.shape[:2]
        rgb[i] = resize_rgb(smp.rgb, s)
        depth[i] = resize_depth(smp.depth_m, s)
        traj, valid = fill_gripper_tracks(smp) if fill_gripper else (smp.traj, smp.valid_steps)
        inc[i], mask[i] = trace_to_increments(traj, valid, smp.keypoints, w, h)
        weight[i] = keypoint_weights(smp, moving_weight, gripper_weight)
        instr.append(list(smp.instructions))
        eps.append(smp.episode)
    return TrainArrays(rgb, depth, inc, mask, weight, instr, eps)


@dataclass
class TrainOptions:
    data: list[Path]
    out: Path
    preset: str = "small"
    overrides: tuple[str, ...] = ()
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    grad_clip: float = 1.0
    ema: float = 0.999
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    log_every: int = 10
    save_every: int = 200
    val_fraction: float = 0.1
    val_samples: int = 32
    max_samples: int = 0
    color_jitter: float = 0.1
    loss: str = "velocity"  # velocity MSE, or "data": MSE on the decoder's X1 estimate
    moving_weight: float = 0.0
    gripper_weight: float = 0.0
    fill_gripper: bool = False  # fill the gripper keypoints' lost steps from ee_uvz (sim)
    stats_moving_min: float = 0.02  # increment std over keypoints moving this far (0 = all)
    restart: bool = False
    progress: bool = True
    grad_accum: int = 1  # micro-batches per optimizer step (same result, less memory)
    precision: str = "fp32"  # autocast: auto | fp32 | bf16 | fp16 (tracetrain.device)


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out


@dataclass
class _Plan:
    """One step's global batch: sample indices and every random draw, in the order the
    trainer has always drawn them (numpy: indices, colour gain and bias, phrasing; torch
    generator: text dropout, noise X0, tau)."""

    idx: np.ndarray  # (B,)
    gain: np.ndarray | None  # (B, 1, 1, 1) colour jitter gain
    bias: np.ndarray | None  # (B, 1, 1, 1) colour jitter bias
    texts: list[str]  # (B,) the phrasing drawn per sample
    drop: torch.Tensor | None  # (B,) bool: instruction replaced by the null text
    x0: torch.Tensor  # (B, K, L, 3) noise
    tau: torch.Tensor  # (B,) flow times

    def __len__(self) -> int:
        return int(self.idx.size)


def _draw(arrays: TrainArrays, idx: np.ndarray, rng: np.random.Generator, gen: torch.Generator,
          jitter: float, drop_p: float, cfg: TraceGenConfig) -> _Plan:
    b = len(idx)
    gain = bias = None
    if jitter > 0:
        gain = rng.uniform(1 - jitter, 1 + jitter, (b, 1, 1, 1))
        bias = rng.uniform(-jitter / 2, jitter / 2, (b, 1, 1, 1))
    texts = [arrays.instructions[i][int(rng.integers(len(arrays.instructions[i])))] for i in idx]
    drop = torch.rand(b, generator=gen, device="cpu") < drop_p if drop_p > 0 else None
    x0 = torch.randn((b, *arrays.inc.shape[1:]), generator=gen, device="cpu")
    tau = sample_tau(b, gen, cfg.tau_sampling, mean=cfg.tau_mean, std=cfg.tau_std)
    return _Plan(idx, gain, bias, texts, drop, x0, tau)


_Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str],
               torch.Tensor | None, torch.Tensor, torch.Tensor]


def _batch(arrays: TrainArrays, plan: _Plan, rows: slice, device: torch.device) -> _Batch:
    idx = plan.idx[rows]
    rgb = torch.from_numpy(arrays.rgb[idx]).to(device).permute(0, 3, 1, 2).float() / 255.0
    if plan.gain is not None and plan.bias is not None:
        gain = torch.from_numpy(plan.gain[rows]).float().to(device)
        bias = torch.from_numpy(plan.bias[rows]).float().to(device)
        rgb = (rgb * gain + bias).clamp(0.0, 1.0)
    depth = torch.from_numpy(arrays.depth[idx]).to(device)[:, None]
    inc = torch.from_numpy(arrays.inc[idx]).to(device)
    mask = torch.from_numpy(arrays.mask[idx]).to(device).float() \
        * torch.from_numpy(arrays.weight[idx]).to(device)[:, :, None]
    drop = plan.drop[rows].to(device) if plan.drop is not None else None
    return (rgb, depth, inc, mask, plan.texts[rows], drop, plan.x0[rows].to(device),
            plan.tau[rows].to(device))


def _loss(model: TraceGenModel, batch: _Batch, space: str = "velocity") -> torch.Tensor:
    """Flow-matching loss; ``space`` "data" (``prediction`` "data" only): the decoder's X1
    estimate against X1 -- the velocity error times (1 - tau), i.e. the same objective without
    the 1 / (1 - tau)^2 weight that makes the nearly clean end dominate."""
    rgb, depth, inc, mask, texts, drop, x0, tau = batch
    cfg = model.cfg
    cond = model.encode(rgb, depth, model.tokenize(texts))
    if drop is not None:
        cond = cond.without_text(drop)
    x1 = model.normalise(inc)
    xt = interpolant(x0, x1, tau)
    if cfg.prediction == "data" and space == "data":
        return masked_mse(model.estimate_x1(xt, tau, cond), x1, mask[..., None])
    if cfg.prediction == "data":
        # the same clamped map on both sides: the target equals x1 - x0 for tau <= 1 - t_eps
        v = model.velocity(xt, tau, cond, cfg.t_eps)
        return masked_mse(v, data_to_velocity(x1, xt, tau, cfg.t_eps), mask[..., None])
    return flow_matching_loss(model.velocity(xt, tau, cond), x0, x1, mask[..., None])


@torch.no_grad()
def validation_loss(model: TraceGenModel, arrays: TrainArrays, device: torch.device,
                    n: int, batch_size: int, space: str = "velocity") -> float:
    """Flow-matching loss on up to ``n`` held-out samples with fixed noise (comparable across saves)."""
    if len(arrays) == 0:
        return float("nan")
    model.eval()
    idx_all = np.linspace(0, len(arrays) - 1, min(n, len(arrays))).astype(int)
    gen = torch.Generator().manual_seed(1234)
    rng = np.random.default_rng(1234)
    total, count = 0.0, 0
    for i in range(0, len(idx_all), batch_size):
        idx = idx_all[i: i + batch_size]
        plan = _draw(arrays, idx, rng, gen, 0.0, 0.0, model.cfg)
        total += float(_loss(model, _batch(arrays, plan, slice(None), device), space)) * len(idx)
        count += len(idx)
    model.train()
    return total / max(count, 1)


def _fresh_config(opts: TrainOptions, vocab: tuple[str, ...]) -> TraceGenConfig:
    over = _parse_overrides(opts.overrides)
    if "vocab" not in over:
        over["vocab"] = list(vocab)
    return TraceGenConfig.from_preset(opts.preset, **over)


def train(opts: TrainOptions, stop: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns a summary dict (``stopped`` names the reason when
    ``stop()`` ended the run early, its resumable state saved)."""
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    resolve_device(opts.device)  # an absent GPU fails before the data is read
    out = opts.out
    resume = (out / STATE_FILE).is_file() and not opts.restart

    # --- data ------------------------------------------------------------------------
    train_paths: list[Path] = []
    held_paths: list[Path] = []
    held_eps: list[str] = []
    for root in opts.data:
        tr, he = split_episodes(root, opts.val_fraction)
        held_eps += he
        for p in list_samples(root):
            (held_paths if p.parent.parent.name in set(he) else train_paths).append(p)
    if not train_paths:
        raise DataError(f"no training samples under {[str(d) for d in opts.data]}")
    if opts.max_samples and len(train_paths) > opts.max_samples:
        sel = np.linspace(0, len(train_paths) - 1, opts.max_samples).astype(int)
        train_paths = [train_paths[i] for i in sel]

    over = _parse_overrides(opts.overrides)
    prev_meta: dict[str, Any] = {}
    if resume:
        cfg, prev_meta = read_config(out)
        if over or opts.preset != prev_meta.get("preset", opts.preset):
            if _fresh_config(opts, cfg.vocab) != cfg:
                raise ConfigError(f"{out} holds a run with another config; resume without "
                                  "--preset/--set changes, or use --restart / another --out")
        layout = cfg
    else:
        layout = TraceGenConfig.from_preset(opts.preset,
                                            **{k: v for k, v in over.items() if k != "vocab"})
    log.info("train samples: %d, held-out samples: %d (episodes %s)", len(train_paths),
             len(held_paths), held_eps[:8])
    if opts.loss not in LOSSES:
        raise ConfigError(f"--loss must be one of {LOSSES}, got {opts.loss!r}")
    if opts.loss == "data" and layout.prediction != "data":
        raise ConfigError("--loss data needs a model with prediction = 'data' (the small preset); "
                          f"this one predicts {layout.prediction!r}")
    if opts.moving_weight < 0 or opts.gripper_weight < 0:
        raise ConfigError("--moving-weight and --gripper-weight must be >= 0")
    if opts.stats_moving_min < 0:
        raise ConfigError(f"--stats-moving-min must be >= 0 (0 = the whole grid), "
                          f"got {opts.stats_moving_min}")
    arrays = load_arrays(train_paths, layout, opts.progress, opts.moving_weight, opts.gripper_weight,
                         opts.fill_gripper)
    if held_paths and opts.val_samples > 0:
        sel = np.unique(np.linspace(0, len(held_paths) - 1, opts.val_samples).astype(int))
        held_paths_val = [held_paths[i] for i in sel]
    else:
        held_paths_val = []
    held = load_arrays(held_paths_val, layout, opts.progress)
    if not resume:
        cfg = _fresh_config(opts, build_vocab([t for ins in arrays.instructions for t in ins]))

    # --- model + the training core ---------------------------------------------------
    meta: dict[str, Any] = {"preset": opts.preset, "data": [str(d) for d in opts.data],
                            "heldout_episodes": held_eps, "train_samples": len(arrays),
                            "seed": opts.seed, "loss": opts.loss, "moving_weight": opts.moving_weight,
                            "gripper_weight": opts.gripper_weight,
                            "fill_gripper": opts.fill_gripper,
                            "stats_moving_min": opts.stats_moving_min}
    with distributed(opts.device) as (dist, device):
        seed_everything(opts.seed)
        model = TraceGenModel(cfg).to(device)
        if not resume:
            mean, std = increment_stats(list(arrays.inc), list(arrays.mask),
                                        moving_min=opts.stats_moving_min)
            model.set_normalisation(torch.from_numpy(mean), torch.from_numpy(std))
        counts = model.parameter_counts()
        log.info("model: %s parameters (%s trainable), device %s", counts["total"],
                 counts["trainable"], device)
        task = _TraceGenTask(opts, cfg, arrays, held, meta, device)
        settings = TrainSettings(
            out=out, steps=opts.steps, lr=opts.lr, weight_decay=opts.weight_decay,
            warmup_steps=opts.warmup, min_lr_ratio=0.1, grad_clip=opts.grad_clip,
            grad_accum=opts.grad_accum, ema_decay=opts.ema, ema_warmup=True,
            precision=opts.precision, log_every=opts.log_every, save_every=opts.save_every,
            resume="auto" if resume else "never", keep_state=True, progress=opts.progress,
            desc="tracegen-train", loss_label="flow-matching loss (standardised MSE)")
        result = Trainer(settings, task, model, dist, device).run(stop)
    if resume and result.start_step >= opts.steps:
        log.info("%s already trained for %d steps (--steps %d); nothing to do", out,
                 result.start_step, opts.steps)
    summary = {"out": str(out), "steps": opts.steps, "start_step": result.start_step,
               "step": result.step, "elapsed_s": result.elapsed_s, "val_loss": task.last_val,
               "parameters": counts, "train_samples": len(arrays),
               "heldout_samples": len(held_paths)}
    if result.stopped:
        summary["stopped"] = result.stopped
    return summary


class _TraceGenTask:
    """TraceGen's part of the training core (``tracetrain.loop.TrainTask``): samples drawn
    with replacement, colour jitter and phrasing from a numpy generator, text dropout, noise
    and tau from a torch generator (both seeded with ``--seed``; their states are the data
    position); evaluation and the checkpoint with the EMA weights."""

    def __init__(self, opts: TrainOptions, cfg: TraceGenConfig, arrays: TrainArrays,
                 held: TrainArrays, meta: dict[str, Any], device: torch.device) -> None:
        self.opts, self.cfg, self.arrays, self.held = opts, cfg, arrays, held
        self.meta, self.device = meta, device
        self.rng = np.random.default_rng(opts.seed)
        self.gen = torch.Generator().manual_seed(opts.seed)
        self.last_val = float("nan")

    def plan(self, step: int) -> _Plan:
        idx = self.rng.integers(0, len(self.arrays), self.opts.batch_size)
        return _draw(self.arrays, idx, self.rng, self.gen, self.opts.color_jitter,
                     self.cfg.cond_dropout, self.cfg)

    def batch(self, plan: _Plan, rows: slice) -> _Batch:
        return _batch(self.arrays, plan, rows, self.device)

    def loss(self, model: torch.nn.Module, batch: _Batch) -> torch.Tensor:
        assert isinstance(model, TraceGenModel)
        return _loss(model, batch, self.opts.loss)

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"rng": generator_state(self.rng)}, {"gen": self.gen.get_state()}

    def load_state(self, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        set_generator_state(self.rng, js["rng"])
        self.gen.set_state(tensors["gen"])

    def model_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        assert isinstance(model, TraceGenModel)
        return model.own_state_dict()  # not the pretrained encoders' weights

    def load_model_state(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        assert isinstance(model, TraceGenModel)
        expected = model.own_state_dict()
        if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in state):
            raise CheckpointError(f"{self.opts.out / STATE_FILE} does not match the model of "
                                  f"{self.opts.out}/config.json; use --restart or another --out")
        model.load_state_dict(state, strict=False)

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        model = ctx.ema_model if ctx.ema_model is not None else ctx.model
        assert isinstance(model, TraceGenModel)
        self.last_val = validation_loss(model, self.held, self.device, self.opts.val_samples,
                                        self.opts.batch_size, self.opts.loss)
        save_checkpoint(model, self.opts.out, dict(self.meta, step=ctx.step,
                                                   val_loss=self.last_val))
        return {"val_loss": self.last_val}
def build_parser() -> ArgParser:
    ap = ArgParser("tracegen-train", description=__doc__)
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="TraceForge dataset dir(s)")
    ap.add_argument("--out", type=output_dir, required=True, help="output checkpoint directory")
    ap.add_argument("--preset", default="small", help="model preset (small, published)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one TraceGenConfig field (JSON value), repeatable")
    d = TrainOptions(data=[], out=Path())
    ap.add_argument("--steps", type=int_range(1), default=d.steps, help="total optimizer steps")
    ap.add_argument("--batch-size", type=int_range(1, 1 << 20), default=d.batch_size,
                    help="global batch (split over the processes under torchrun)")
    ap.add_argument("--lr", type=finite_float(gt=0, le=10), default=d.lr,
                    help="peak AdamW learning rate")
    ap.add_argument("--weight-decay", type=finite_float(ge=0), default=d.weight_decay,
                    help="AdamW weight decay")
    ap.add_argument("--warmup", type=int_range(0), default=d.warmup, help="linear warm-up steps")
    ap.add_argument("--grad-clip", type=finite_float(ge=0), default=d.grad_clip,
                    help="max gradient norm (0 = off)")
    ap.add_argument("--grad-accum", type=int_range(1, 1024), default=d.grad_accum,
                    help="micro-batches per optimizer step (same result, less memory)")
    ap.add_argument("--precision", default=d.precision, choices=PRECISIONS,
                    help="autocast (auto: bf16 on a GPU that has it, else fp32)")
    ap.add_argument("--ema", type=finite_float(ge=0, lt=1), default=d.ema,
                    help="EMA decay of the saved weights (0 = none)")
    ap.add_argument("--seed", type=int_range(0, 2**31 - 1), default=d.seed,
                    help="model initialisation, data order and augmentation")
    ap.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ...")
    ap.add_argument("--threads", type=int_range(0, 1024), default=d.threads,
                    help="torch CPU threads (0 = default)")
    ap.add_argument("--log-every", type=int_range(1), default=d.log_every,
                    help="steps per metrics.jsonl line")
    ap.add_argument("--save-every", type=int_range(1), default=d.save_every,
                    help="steps per validation + checkpoint + resumable state")
    ap.add_argument("--val-fraction", type=finite_float(ge=0, lt=1), default=d.val_fraction,
                    help="held-out episode fraction when info.json has no 'val' split")
    ap.add_argument("--val-samples", type=int_range(0), default=d.val_samples,
                    help="held-out samples for the validation loss")
    ap.add_argument("--max-samples", type=int_range(0), default=d.max_samples, help="0 = all")
    ap.add_argument("--color-jitter", type=finite_float(ge=0, le=1), default=d.color_jitter,
                    help="RGB augmentation: random gain 1 ± j and offset ± j/2 per sample")
    ap.add_argument("--loss", default=d.loss, choices=LOSSES,
                    help="velocity: MSE of the velocity (the method's objective); data: MSE of the "
                         "decoder's X1 estimate (prediction = 'data' models; no 1/(1-tau)^2 weight)")
    ap.add_argument("--moving-weight", type=finite_float(ge=0), default=d.moving_weight,
                    help="extra loss weight of keypoints that move (full at >= 20 px)")
    ap.add_argument("--gripper-weight", type=finite_float(ge=0), default=d.gripper_weight,
                    help="extra loss weight of keypoints on the gripper (samples with ee_uvz)")
    ap.add_argument("--fill-gripper", action="store_true",
                    help="fill the lost steps of keypoints on the gripper from the end "
                         "effector's trace (sim samples with ee_uvz)")
    ap.add_argument("--stats-moving-min", type=finite_float(ge=0), default=d.stats_moving_min,
                    help="standardise increments with the std of the keypoints that move at "
                         "least this far (normalised image units; 0 = the whole grid)")
    ap.add_argument("--restart", action="store_true", help="ignore a previous run in --out")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from tracevla_ros.stopping import StopRequest, install_stop_signals

    opts = TrainOptions(
        data=list(args.data), out=args.out, preset=args.preset, overrides=tuple(args.overrides),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup=args.warmup, grad_clip=args.grad_clip, ema=args.ema, seed=args.seed,
        device=args.device, threads=args.threads, log_every=args.log_every,
        save_every=args.save_every, val_fraction=args.val_fraction, val_samples=args.val_samples,
        max_samples=args.max_samples, color_jitter=args.color_jitter, loss=args.loss,
        moving_weight=args.moving_weight, gripper_weight=args.gripper_weight,
        fill_gripper=args.fill_gripper, stats_moving_min=args.stats_moving_min,
        restart=args.restart, progress=not args.no_progress, grad_accum=args.grad_accum,
        precision=args.precision)
    stop = StopRequest()
    install_stop_signals(stop)
    try:
        summary = train(opts, stop=lambda: stop.reason)
    except DataError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(summary, indent=2))
    if summary.get("stopped"):
        print(f"tracegen-train: stopped ({summary['stopped']}) after step {summary['step']}; "
              "run the same command again to continue", file=sys.stderr)
        return stop.exit_code
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("tracegen-train", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
