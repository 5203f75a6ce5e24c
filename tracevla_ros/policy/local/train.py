"""Training of the local trace-prompted policy (no rclpy); the CLI is ``tracevla-train``.

Data: episodes from ``tracevla-collect`` with traces from ``tracevla-annotate``.
Every recorded step is one sample: its frame, its offline overlay (where the
step is traced), the episode's instruction, ``observation.joint_positions`` as
proprio and the recorded expert ``action`` as the label. All of it goes through
``transforms.py``, the functions the backend uses at serve time.

Recipe (stated, fixed unless a flag changes it):

* trace dropout ``alpha`` = 0.25: each epoch, each traced sample takes the
  no-trace form (overlay slot = the original frame) with probability alpha;
  untraced steps are always in the no-trace form. ``--no-trace`` trains the
  same network on the same samples with the no-trace form always (baseline);
* loss: cross-entropy of the 256-bin logits against a Gaussian-smoothed target
  (sigma = 1.5 bins around the label's bin), summed over the 7 dimensions;
* AdamW (lr 1e-3, weight decay 1e-4), 1 epoch linear warm-up then cosine decay,
  batch 64, gradient norm clipped at 1.0;
* augmentation: one random shift of up to +-4 px (96 px images, edge padding)
  per sample, the same for both images; nothing else;
* 5 % of the episodes (at least 1 when there are 4 or more) are held out for
  the validation loss; every episode seed used is written to config.json
  (``training.episode_seeds``) so evaluation can use disjoint seeds;
* deterministic for a seed on one device and thread count: model init from
  ``torch.manual_seed(seed)``; shuffling, shifts and dropout from numpy
  generators seeded with (seed, epoch), so ``--resume`` replays the same stream.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tracevla_ros.policy.local.checkpoint import CONFIG_FILE, WEIGHTS_FILE, save_checkpoint
from tracevla_ros.policy.local.model import ModelConfig, TracePolicyNet
from tracevla_ros.policy.local.transforms import (
    TransformConfig,
    action_stats,
    action_to_bins,
    build_vocab,
    encode_instruction,
    normalize_proprio,
    proprio_stats,
    resize_image,
    trace_dropout_mask,
)
from tracevla_ros.sim.dataset import list_episodes, load_episode, load_info
from tracevla_ros.tracking.offline import load_traces

__all__ = ["TrainConfig", "TrainingData", "load_training_data", "train"]

_log = logging.getLogger(__name__)

RESUME_DIR = "resume"  # CKPT/resume/: optimizer state + progress, removed when training ends
LOG_FILE = "train_log.jsonl"
CURVE_FILE = "loss_curve.png"


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]
    out: str
    no_trace: bool = False
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    trace_dropout: float = 0.25
    image_size: int = 96
    max_words: int = 12
    shift_px: int = 4
    label_sigma_bins: float = 1.5
    val_fraction: float = 0.05
    device: str = "auto"
    max_steps: int = 0  # stop after this many optimizer steps (0 = no limit; for tests)
    resume: bool = False
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides


@dataclass
class TrainingData:
    """All samples in memory (uint8 images at the model size)."""

    images: np.ndarray  # (N, 2, S, S, 3) uint8: [frame, overlay-or-frame]
    has_trace: np.ndarray  # (N,) bool: the step has an offline trace
    words: np.ndarray  # (N, L) int64
    proprio: np.ndarray  # (N, P) float32 standardised
    bins: np.ndarray  # (N, 7) int64 action bins
    episode: np.ndarray  # (N,) int32 episode index
    transforms: TransformConfig
    info: dict[str, Any]


def load_training_data(dirs: list[str] | tuple[str, ...], image_size: int, max_words: int,
                       use_trace: bool) -> TrainingData:
    """Read every episode of ``dirs`` and transform it (``transforms.py``)."""
    episodes = []
    for d in dirs:
        load_info(d)
        for p in list_episodes(d):
            ep = load_episode(p)
            tr = load_traces(p)[0] if use_trace else None
            episodes.append((ep, tr))
    if not episodes:
        raise ValueError(f"no episodes under {list(dirs)}")
    sizes = {(e.rgb.shape[2], e.rgb.shape[1]) for e, _ in episodes}
    if len(sizes) != 1:
        raise ValueError(f"episodes have different frame sizes {sorted(sizes)}")
    dims = {e.joint_positions.shape[1] for e, _ in episodes}
    if len(dims) != 1:
        raise ValueError(f"episodes have different joint counts {sorted(dims)}")
    all_actions = np.concatenate([e.actions for e, _ in episodes])
    all_proprio = np.concatenate([e.joint_positions for e, _ in episodes])
    low, high = action_stats(all_actions)
    mean, std = proprio_stats(all_proprio)
    instructions = sorted({e.instruction for e, _ in episodes})
    tcfg = TransformConfig(source_size=next(iter(sizes)), image_size=image_size,
                           vocab=build_vocab(instructions), max_words=max_words,
                           proprio_mean=mean, proprio_std=std, action_low=low, action_high=high,
                           use_trace=use_trace)
    n = int(all_actions.shape[0])
    s = image_size
    images = np.empty((n, 2, s, s, 3), np.uint8)
    has_trace = np.zeros(n, bool)
    words = np.empty((n, max_words), np.int64)
    proprio = np.empty((n, tcfg.proprio_dim), np.float32)
    episode = np.empty(n, np.int32)
    seeds: dict[str, list[int]] = {}
    i = 0
    for k, (ep, tr) in enumerate(episodes):
        ids = encode_instruction(ep.instruction, tcfg)
        seeds.setdefault(ep.task, []).append(int(ep.seed))
        for t in range(len(ep)):
            images[i, 0] = resize_image(ep.rgb[t], s)
            if tr is not None and bool(tr.valid[t]):
                images[i, 1] = resize_image(tr.overlays[t], s)
                has_trace[i] = True
            else:
                images[i, 1] = images[i, 0]
            words[i] = ids
            proprio[i] = normalize_proprio(ep.joint_positions[t], tcfg)
            episode[i] = k
            i += 1
    bins = action_to_bins(all_actions, tcfg)
    info = {"data": [str(d) for d in dirs], "episodes": len(episodes), "samples": n,
            "traced_samples": int(has_trace.sum()), "instructions": instructions,
            "episode_seeds": {t: sorted(v) for t, v in sorted(seeds.items())},
            "tasks": {t: len(v) for t, v in sorted(seeds.items())}}
    return TrainingData(images, has_trace, words, proprio, bins, episode, tcfg, info)


def _soft_targets(bins: torch.Tensor, num_bins: int, sigma: float) -> torch.Tensor:
    """(B, D) int bins -> (B, D, num_bins) Gaussian-smoothed target distributions."""
    grid = torch.arange(num_bins, device=bins.device, dtype=torch.float32)
    d = grid.view(1, 1, -1) - bins.unsqueeze(-1).float()
    w = torch.exp(-0.5 * (d / sigma) ** 2) if sigma > 0 else (d == 0).float()
    return w / w.sum(-1, keepdim=True)


def loss_fn(logits: torch.Tensor, bins: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mean over the batch of the summed per-dimension soft cross-entropy."""
    target = _soft_targets(bins, logits.shape[-1], sigma)
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).sum(-1).mean()


def _shift(images: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """Random shift of up to +-pad px per sample (edge padding), same for both images."""
    if pad <= 0:
        return images
    b, _, s, _, _ = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    off = rng.integers(0, 2 * pad + 1, size=(b, 2))
    out = np.empty_like(images)
    for j in range(b):
        y, x = off[j]
        out[j] = padded[j, :, y:y + s, x:x + s]
    return out


def _batch(data: TrainingData, idx: np.ndarray, rng: np.random.Generator | None,
           cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, ...]:
    images = data.images[idx]
    if rng is not None:  # training: trace dropout, then the shift
        if data.transforms.use_trace and cfg.trace_dropout > 0:
            drop = trace_dropout_mask(len(idx), cfg.trace_dropout, rng)
            images[drop, 1] = images[drop, 0]
        images = _shift(images, rng, cfg.shift_px)
    return (torch.from_numpy(np.ascontiguousarray(images)).to(device),
            torch.from_numpy(data.words[idx]).to(device),
            torch.from_numpy(data.proprio[idx]).to(device),
            torch.from_numpy(data.bins[idx]).to(device))


def _split(data: TrainingData, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_ep = int(data.episode.max()) + 1
    n_val = max(1, int(round(frac * n_ep))) if (frac > 0 and n_ep >= 4) else 0
    val_eps = np.random.default_rng([seed, 7]).choice(n_ep, n_val, replace=False)
    is_val = np.isin(data.episode, val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@torch.no_grad()
def evaluate(model: TracePolicyNet, data: TrainingData, idx: np.ndarray, cfg: TrainConfig,
             device: torch.device) -> dict[str, float]:
    """Validation loss and the fraction of dims predicted within 2 bins of the label."""
    if idx.size == 0:
        return {}
    model.eval()
    total = close = 0.0
    for start in range(0, idx.size, 256):
        part = idx[start:start + 256]
        images, words, proprio, bins = _batch(data, part, None, cfg, device)
        logits = model(images, words, proprio)
        total += float(loss_fn(logits, bins, cfg.label_sigma_bins)) * part.size
        close += float((logits.argmax(-1) - bins).abs().le(2).float().mean()) * part.size
    model.train()
    return {"val_loss": total / idx.size, "val_within2bins": close / idx.size}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))


def _save_resume(out: Path, opt: torch.optim.Optimizer, epoch: int, step: int,
                 history: list[dict[str, Any]]) -> None:
    from safetensors.torch import save_file

    d = out / RESUME_DIR
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    save_file(tensors, str(d / "optimizer.safetensors"))
    (d / "progress.json").write_text(json.dumps({"epoch": epoch, "step": step, "history": history}))


def _load_resume(out: Path, model: TracePolicyNet, opt: torch.optim.Optimizer
                 ) -> tuple[int, int, list[dict[str, Any]]]:
    from safetensors.torch import load_file

    d = out / RESUME_DIR
    if not (d / "progress.json").is_file() or not (out / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"--resume: no {d}/progress.json or {out / WEIGHTS_FILE}; "
                                f"start without --resume")
    model.load_state_dict(load_file(str(out / WEIGHTS_FILE)))
    tensors = load_file(str(d / "optimizer.safetensors"))
    state = opt.state_dict()
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state["state"].setdefault(int(i), {})[k] = v
    opt.load_state_dict(state)
    prog = json.loads((d / "progress.json").read_text())
    return int(prog["epoch"]), int(prog["step"]), list(prog["history"])


def plot_curve(out: Path, history: list[dict[str, Any]], steps: list[tuple[int, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if steps:
        xs, ys = zip(*steps)
        ax.plot(xs, ys, lw=0.8, alpha=0.8, label="train (mean per 20 steps)")
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val), "o-", label="validation (per epoch)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (soft CE, summed over 7 dims)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if steps or val:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / CURVE_FILE)
    plt.close(fig)


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train and write the checkpoint to ``cfg.out``; returns the training summary."""
    from tqdm import tqdm

    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    t_load = time.perf_counter()
    data = load_training_data(cfg.data, cfg.image_size, cfg.max_words, use_trace=not cfg.no_trace)
    load_s = time.perf_counter() - t_load
    torch.manual_seed(cfg.seed)
    mcfg = ModelConfig(**{**dict(image_size=cfg.image_size, vocab_size=len(data.transforms.vocab),
                                 max_words=cfg.max_words, proprio_dim=data.transforms.proprio_dim,
                                 action_bins=data.transforms.action_bins), **cfg.model})
    model = TracePolicyNet(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_idx, val_idx = _split(data, cfg.val_fraction, cfg.seed)
    per_epoch = max(1, math.ceil(train_idx.size / cfg.batch_size))
    total = per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    start_epoch, step = 0, 0
    history: list[dict[str, Any]] = []
    out.mkdir(parents=True, exist_ok=True)
    if cfg.resume:
        start_epoch, step, history = _load_resume(out, model, opt)
    step_losses: list[tuple[int, float]] = [(h["step"], h["train_loss"]) for h in history]
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="train" + (" (no trace)" if cfg.no_trace else ""),
               unit="step", disable=not progress)
    acc: list[float] = []
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total:
            break
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(train_idx)
        losses = []
        for b in range(per_epoch):
            if step >= total:
                break
            idx = np.sort(order[b * cfg.batch_size:(b + 1) * cfg.batch_size])
            images, words, proprio, bins = _batch(data, idx, rng, cfg, device)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, per_epoch, cfg.lr)
            loss = loss_fn(model(images, words, proprio), bins, cfg.label_sigma_bins)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            lv = loss.item()
            losses.append(lv)
            acc.append(lv)
            if len(acc) == 20:
                step_losses.append((step, float(np.mean(acc))))
                acc = []
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{lv:.3f}")
        rec = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else None,
               "seconds": round(time.perf_counter() - t0, 1),
               **evaluate(model, data, val_idx, cfg, device)}
        history.append(rec)
        with open(out / LOG_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")
        _log.info("epoch %d: %s", epoch + 1, rec)
        _save_resume(out, opt, epoch + 1, step, history)
        save_checkpoint(out, model, data.transforms, _training_info(cfg, data, history, device,
                                                                   time.perf_counter() - t0, load_s))
    bar.close()
    seconds = time.perf_counter() - t0
    info = _training_info(cfg, data, history, device, seconds, load_s)
    save_checkpoint(out, model, data.transforms, info)
    plot_curve(out, history, step_losses)
    import shutil

    shutil.rmtree(out / RESUME_DIR, ignore_errors=True)
    return info


def _training_info(cfg: TrainConfig, data: TrainingData, history: list[dict[str, Any]],
                   device: torch.device, seconds: float, load_s: float) -> dict[str, Any]:
    c = asdict(cfg)
    c.pop("out")
    c.pop("resume")
    return {**data.info, "config": c, "history": history, "device": str(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "train_seconds": round(seconds, 1), "load_seconds": round(load_s, 1),
            "files": [CONFIG_FILE, WEIGHTS_FILE]}
