"""``tracegen-train``: train TraceGen (flow matching on trace increments) on TraceForge data.

Writes into ``--out`` (a directory):

* ``model.safetensors`` + ``config.json`` -- the checkpoint (EMA weights), what
  ``tracegen-predict`` and ``TraceGenPredictor.from_checkpoint`` load;
* ``train_state.safetensors`` + ``train_state.json`` -- raw weights, optimizer
  and step, for resuming: running the same command again continues from the
  last save up to ``--steps`` (``--restart`` starts over);
* ``loss.csv`` (step, train loss, lr, elapsed, val loss) and ``loss.png``.

Held-out data: the "val" split of the dataset's info.json (by episode) when
present, else the last ``--val-fraction`` of episodes; the names are stored in
the checkpoint meta (``heldout_episodes``) for ``tracevla-bench tracegen``.
Runs on the CPU, or on a GPU when one is present (``--device auto``).

Examples::

    tracegen-train --data /work/data/traceforge/fr3 --out /work/data/tracegen/fr3_small \\
        --steps 3000 --batch-size 16 --threads 2
    tracegen-train --data DIR --out OUT --preset small --set d_model=96 --set num_layers=3
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

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

STATE_FILE = "train_state.safetensors"
STATE_JSON = "train_state.json"
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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available; use cpu or auto")
    return torch.device(name)


def _lr_at(step: int, opts: TrainOptions) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    frac = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))))


class Ema:
    """Exponential moving average of the trainable parameters."""

    def __init__(self, model: TraceGenModel, decay: float) -> None:
        self.decay = decay
        self.params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: TraceGenModel, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for n, p in model.named_parameters():
            if n in self.params:
                self.params[n].mul_(d).add_(p.detach(), alpha=1.0 - d)

    @contextmanager
    def swapped_in(self, model: TraceGenModel) -> Iterator[None]:
        saved = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.params}
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in self.params:
                    p.copy_(self.params[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in saved:
                        p.copy_(saved[n])


def _batch(arrays: TrainArrays, idx: np.ndarray, rng: np.random.Generator, device: torch.device,
           jitter: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    rgb = torch.from_numpy(arrays.rgb[idx]).to(device).permute(0, 3, 1, 2).float() / 255.0
    if jitter > 0:
        b = len(idx)
        gain = torch.from_numpy(rng.uniform(1 - jitter, 1 + jitter, (b, 1, 1, 1))).float().to(device)
        bias = torch.from_numpy(rng.uniform(-jitter / 2, jitter / 2, (b, 1, 1, 1))).float().to(device)
        rgb = (rgb * gain + bias).clamp(0.0, 1.0)
    depth = torch.from_numpy(arrays.depth[idx]).to(device)[:, None]
    inc = torch.from_numpy(arrays.inc[idx]).to(device)
    mask = torch.from_numpy(arrays.mask[idx]).to(device).float() \
        * torch.from_numpy(arrays.weight[idx]).to(device)[:, :, None]
    texts = [arrays.instructions[i][int(rng.integers(len(arrays.instructions[i])))] for i in idx]
    return rgb, depth, inc, mask, texts


def _loss(model: TraceGenModel, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                              list[str]],
          gen: torch.Generator, drop_p: float, space: str = "velocity") -> torch.Tensor:
    """Flow-matching loss; ``space`` "data" (``prediction`` "data" only): the decoder's X1
    estimate against X1 -- the velocity error times (1 - tau), i.e. the same objective without
    the 1 / (1 - tau)^2 weight that makes the nearly clean end dominate."""
    rgb, depth, inc, mask, texts = batch
    cfg = model.cfg
    b = rgb.shape[0]
    dev = rgb.device
    cond = model.encode(rgb, depth, model.tokenize(texts))
    if drop_p > 0:
        drop = torch.rand(b, generator=gen, device="cpu").to(dev) < drop_p
        cond = cond.without_text(drop)
    x1 = model.normalise(inc)
    x0 = torch.randn(x1.shape, generator=gen, device="cpu").to(dev)
    tau = sample_tau(b, gen, cfg.tau_sampling, mean=cfg.tau_mean, std=cfg.tau_std).to(dev)
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
        batch = _batch(arrays, idx, rng, device, 0.0)
        total += float(_loss(model, batch, gen, 0.0, space)) * len(idx)
        count += len(idx)
    model.train()
    return total / max(count, 1)


def _save_train_state(out: Path, model: TraceGenModel, opt: torch.optim.Optimizer, step: int,
                      extra: dict[str, Any]) -> None:
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.own_state_dict().items()}
    sd = opt.state_dict()
    for idx, st in sd["state"].items():
        for name, val in st.items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
            tensors[f"optim/{idx}/{name}"] = t.detach().cpu().contiguous()
    tmp = out / (STATE_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / STATE_FILE)
    body = dict(extra, step=step, param_groups=sd["param_groups"])
    (out / (STATE_JSON + ".tmp")).write_text(json.dumps(body, indent=1))
    (out / (STATE_JSON + ".tmp")).replace(out / STATE_JSON)


def _load_train_state(out: Path, model: TraceGenModel, opt: torch.optim.Optimizer) -> dict[str, Any]:
    try:
        body: dict[str, Any] = json.loads((out / STATE_JSON).read_text())
        tensors = load_file(str(out / STATE_FILE))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot resume from {out}: {exc}; use --restart") from None
    own = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    expected = model.own_state_dict()
    if set(own) != set(expected) or any(own[k].shape != expected[k].shape for k in own):
        raise CheckpointError(f"{out / STATE_FILE} does not match the model of {out}/config.json; "
                              "use --restart or another --out")
    model.load_state_dict(own, strict=False)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, idx, name = k.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": body["param_groups"]})
    return body


def _truncate_log(csv_path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (a run stopped between saves is resumed from ``step``)."""
    if not csv_path.is_file():
        return
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with csv_path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(keep)


def plot_losses(csv_path: Path, png_path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, loss, vsteps, vloss = [], [], [], []
    with csv_path.open() as f:
        for row in csv.DictReader(f):
            if row["loss"]:
                steps.append(int(row["step"]))
                loss.append(float(row["loss"]))
            if row.get("val_loss"):
                vsteps.append(int(row["step"]))
                vloss.append(float(row["val_loss"]))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, lw=1, label="train (mean over log interval)")
    if vloss:
        ax.plot(vsteps, vloss, "o-", ms=3, label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss (standardised MSE)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def _fresh_config(opts: TrainOptions, vocab: tuple[str, ...]) -> TraceGenConfig:
    over = _parse_overrides(opts.overrides)
    if "vocab" not in over:
        over["vocab"] = list(vocab)
    return TraceGenConfig.from_preset(opts.preset, **over)


def train(opts: TrainOptions) -> dict[str, Any]:
    """Run (or resume) training; returns a summary dict."""
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    device = pick_device(opts.device)
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    resume = (out / STATE_JSON).is_file() and not opts.restart

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

    # --- model ------------------------------------------------------------------------
    torch.manual_seed(opts.seed)
    model = TraceGenModel(cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    meta: dict[str, Any] = {"preset": opts.preset, "data": [str(d) for d in opts.data],
                            "heldout_episodes": held_eps, "train_samples": len(arrays),
                            "seed": opts.seed, "loss": opts.loss, "moving_weight": opts.moving_weight,
                            "gripper_weight": opts.gripper_weight,
                            "fill_gripper": opts.fill_gripper,
                            "stats_moving_min": opts.stats_moving_min}
    start_step, elapsed0 = 0, 0.0
    if resume:
        body = _load_train_state(out, model, opt)
        start_step, elapsed0 = int(body["step"]), float(body.get("elapsed_s", 0.0))
        log.info("resuming %s at step %d", out, start_step)
        _truncate_log(out / "loss.csv", start_step)
    else:
        mean, std = increment_stats(list(arrays.inc), list(arrays.mask),
                                    moving_min=opts.stats_moving_min)
        model.set_normalisation(torch.from_numpy(mean), torch.from_numpy(std))
        csv_path = out / "loss.csv"
        with csv_path.open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow(["step", "loss", "lr", "elapsed_s", "val_loss"])
    ema = Ema(model, opts.ema)
    if resume and (out / "model.safetensors").is_file():
        saved = load_file(str(out / "model.safetensors"))
        for n in ema.params:
            if n in saved:
                ema.params[n].copy_(saved[n])
    counts = model.parameter_counts()
    log.info("model: %s parameters (%s trainable), device %s", counts["total"], counts["trainable"],
             device)

    # --- loop -------------------------------------------------------------------------------
    rng = np.random.default_rng(opts.seed + 7919 * start_step)
    gen = torch.Generator().manual_seed(opts.seed + 104729 * start_step)
    model.train()
    t0 = time.perf_counter()
    window: list[float] = []
    last_val = float("nan")

    def save(step: int) -> None:
        nonlocal last_val
        with ema.swapped_in(model):
            last_val = validation_loss(model, held, device, opts.val_samples, opts.batch_size,
                                       opts.loss)
            save_checkpoint(model, out, dict(meta, step=step, val_loss=last_val))
        _save_train_state(out, model, opt, step,
                          {"elapsed_s": elapsed0 + time.perf_counter() - t0, "seed": opts.seed})

    bar = tqdm(range(start_step, opts.steps), initial=start_step, total=opts.steps,
               desc="tracegen-train", disable=not opts.progress, unit="step")
    step = start_step
    for step in bar:
        lr = _lr_at(step, opts)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = rng.integers(0, len(arrays), opts.batch_size)
        loss = _loss(model, _batch(arrays, idx, rng, device, opts.color_jitter), gen, cfg.cond_dropout,
                     opts.loss)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {float(loss)} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if opts.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
        opt.step()
        ema.update(model, step)
        window.append(loss.item())
        done = step + 1
        is_save = done % opts.save_every == 0 or done == opts.steps
        if done % opts.log_every == 0 or is_save:
            if is_save:
                save(done)
            with (out / "loss.csv").open("a", newline="") as f:
                csv.writer(f, lineterminator="\n").writerow([done, f"{np.mean(window):.6f}", f"{lr:.3g}",
                                        f"{elapsed0 + time.perf_counter() - t0:.1f}",
                                        f"{last_val:.6f}" if is_save else ""])
            bar.set_postfix(loss=f"{np.mean(window):.4f}", val=f"{last_val:.4f}")
            log.debug("step %d loss %.5f lr %.3g", done, np.mean(window), lr)
            window = []
            if is_save:
                plot_losses(out / "loss.csv", out / "loss.png")
    bar.close()
    if start_step >= opts.steps:
        log.info("%s already trained for %d steps (--steps %d); nothing to do", out, start_step,
                 opts.steps)
    return {"out": str(out), "steps": opts.steps, "start_step": start_step,
            "elapsed_s": elapsed0 + time.perf_counter() - t0, "val_loss": last_val,
            "parameters": counts, "train_samples": len(arrays), "heldout_samples": len(held_paths)}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tracegen-train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="TraceForge dataset dir(s)")
    ap.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    ap.add_argument("--preset", default="small", help="model preset (small, published)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one TraceGenConfig field (JSON value), repeatable")
    d = TrainOptions(data=[], out=Path())
    ap.add_argument("--steps", type=int, default=d.steps, help="total optimizer steps")
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate")
    ap.add_argument("--weight-decay", type=float, default=d.weight_decay)
    ap.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps")
    ap.add_argument("--grad-clip", type=float, default=d.grad_clip)
    ap.add_argument("--ema", type=float, default=d.ema, help="EMA decay of the saved weights")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ...")
    ap.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0 = default)")
    ap.add_argument("--log-every", type=int, default=d.log_every)
    ap.add_argument("--save-every", type=int, default=d.save_every)
    ap.add_argument("--val-fraction", type=float, default=d.val_fraction,
                    help="held-out episode fraction when info.json has no 'val' split")
    ap.add_argument("--val-samples", type=int, default=d.val_samples,
                    help="held-out samples for the validation loss")
    ap.add_argument("--max-samples", type=int, default=d.max_samples, help="0 = all")
    ap.add_argument("--color-jitter", type=float, default=d.color_jitter)
    ap.add_argument("--loss", default=d.loss, choices=LOSSES,
                    help="velocity: MSE of the velocity (the method's objective); data: MSE of the "
                         "decoder's X1 estimate (prediction = 'data' models; no 1/(1-tau)^2 weight)")
    ap.add_argument("--moving-weight", type=float, default=d.moving_weight,
                    help="extra loss weight of keypoints that move (full at >= 20 px)")
    ap.add_argument("--gripper-weight", type=float, default=d.gripper_weight,
                    help="extra loss weight of keypoints on the gripper (samples with ee_uvz)")
    ap.add_argument("--fill-gripper", action="store_true",
                    help="fill the lost steps of keypoints on the gripper from the end "
                         "effector's trace (sim samples with ee_uvz)")
    ap.add_argument("--stats-moving-min", type=float, default=d.stats_moving_min,
                    help="standardise increments with the std of the keypoints that move at "
                         "least this far (normalised image units; 0 = the whole grid)")
    ap.add_argument("--restart", action="store_true", help="ignore a previous run in --out")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    opts = TrainOptions(
        data=list(args.data), out=args.out, preset=args.preset, overrides=tuple(args.overrides),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        warmup=args.warmup, grad_clip=args.grad_clip, ema=args.ema, seed=args.seed,
        device=args.device, threads=args.threads, log_every=args.log_every,
        save_every=args.save_every, val_fraction=args.val_fraction, val_samples=args.val_samples,
        max_samples=args.max_samples, color_jitter=args.color_jitter, loss=args.loss,
        moving_weight=args.moving_weight, gripper_weight=args.gripper_weight,
        fill_gripper=args.fill_gripper, stats_moving_min=args.stats_moving_min,
        restart=args.restart,
        progress=not args.no_progress)
    try:
        summary = train(opts)
    except (DataError, ConfigError, CheckpointError) as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
