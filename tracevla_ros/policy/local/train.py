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

The loop, the schedule (torch's LinearLR + CosineAnnealingLR), checkpointing of
the resumable state, metrics and several processes (``torchrun``) are the
training core's (``tracetrain.loop``); this module holds the data, the loss and
the evaluation.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from tracetrain.loop import SaveContext, Trainer, TrainSettings, distributed
from tracetrain.seed import generator_state, seed_everything, set_generator_state

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

# CKPT/train_state.safetensors (tracetrain.loop.STATE_FILE): the state --resume continues
# from, removed when a run ends; CKPT/metrics.jsonl and CKPT/loss.png: the training log.


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
    resume: bool = False  # continue the interrupted run in ``out`` (its train state)
    log_every: int = 10  # optimizer steps per metrics.jsonl line
    grad_accum: int = 1  # micro-batches per optimizer step (same result, less memory)
    precision: str = "fp32"  # autocast: auto | fp32 | bf16 | fp16 (tracetrain.device)
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


def _shift(images: np.ndarray, off: np.ndarray, pad: int) -> np.ndarray:
    """Shift each sample by its drawn offset ``off`` (B, 2) in [0, 2 * pad] (edge padding),
    the same for both images."""
    b, _, s, _, _ = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(images)
    for j in range(b):
        y, x = off[j]
        out[j] = padded[j, :, y:y + s, x:x + s]
    return out


@dataclass
class _Plan:
    """One optimizer step's global batch: sorted sample indices and their random draws."""

    idx: np.ndarray  # (B,) sample indices
    drop: np.ndarray | None  # (B,) bool: trace dropout (traced samples take the no-trace form)
    offsets: np.ndarray | None  # (B, 2) shift offsets in [0, 2 * shift_px]

    def __len__(self) -> int:
        return int(self.idx.size)


def _batch(data: TrainingData, idx: np.ndarray, plan: _Plan | None, rows: slice,
           device: torch.device, shift_px: int) -> tuple[torch.Tensor, ...]:
    """The tensors of ``idx`` (= rows ``rows`` of ``plan``; no plan: evaluation, no draws)."""
    images = data.images[idx]
    if plan is not None:  # training: trace dropout, then the shift
        if plan.drop is not None:
            drop = plan.drop[rows]
            images[drop, 1] = images[drop, 0]
        if plan.offsets is not None:
            images = _shift(images, plan.offsets[rows], shift_px)
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
        images, words, proprio, bins = _batch(data, part, None, slice(None), device, 0)
        logits = model(images, words, proprio)
        total += float(loss_fn(logits, bins, cfg.label_sigma_bins)) * part.size
        close += float((logits.argmax(-1) - bins).abs().le(2).float().mean()) * part.size
    model.train()
    return {"val_loss": total / idx.size, "val_within2bins": close / idx.size}


class EpochTask:
    """The data position and history the small policies' tasks share (``_PolicyTask``
    here, the small PixelVLA's): epoch ``e`` uses ``numpy.random.default_rng([seed, e])``,
    first for the permutation of the training samples, then for the subclass's per-batch
    draws; the generator's state is the data position. ``cfg`` needs ``seed`` and
    ``batch_size``."""

    info_extra: dict[str, Any] = {}  # added to the run summary (run_info)

    def __init__(self, cfg: Any, data: Any, train_idx: np.ndarray, val_idx: np.ndarray,
                 per_epoch: int, device: torch.device, load_s: float) -> None:
        self.run_cfg, self.run_data = cfg, data
        self.device, self.load_s = device, load_s
        self.train_idx, self.val_idx, self.per_epoch = train_idx, val_idx, per_epoch
        self._seed, self._bs = cfg.seed, cfg.batch_size
        self.epoch = -1
        self.rng = np.random.default_rng([cfg.seed, 0])
        self.order = train_idx
        self.history: list[dict[str, Any]] = []

    def _start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.rng = np.random.default_rng([self._seed, epoch])
        self.order = self.rng.permutation(self.train_idx)

    # the subclass's part of tracetrain.loop.TrainTask
    def plan(self, step: int) -> Any:
        raise NotImplementedError

    def batch(self, plan: Any, rows: slice) -> Any:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        raise NotImplementedError

    def step_indices(self, step: int) -> np.ndarray:
        """The (sorted) training samples of ``step``; starts the epoch when it changes."""
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            self._start_epoch(epoch)
        return np.sort(self.order[b * self._bs:(b + 1) * self._bs])

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"epoch": self.epoch, "rng": generator_state(self.rng),
                "history": self.history}, {}

    def load_state(self, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        if int(js["epoch"]) >= 0:
            self._start_epoch(int(js["epoch"]))
            set_generator_state(self.rng, js["rng"])
        self.history = list(js["history"])

    def record(self, ctx: SaveContext, evaluation: dict[str, Any]) -> list[dict[str, Any]]:
        """The epoch's record (``evaluation`` merged in), logged; returns the history with
        it. A stopped epoch is not kept: it is recorded again when it finishes."""
        rec: dict[str, Any] = {"epoch": math.ceil(ctx.step / self.per_epoch), "step": ctx.step,
                               "train_loss": ctx.train_loss, "seconds": round(ctx.elapsed_s, 1),
                               **evaluation}
        history = self.history + [rec]
        if not ctx.stopped:
            self.history = history
        logging.getLogger(type(self).__module__).info("epoch %d: %s", rec["epoch"], rec)
        return history

    def run_info(self, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """The run summary stored with the checkpoint and returned by the trainer."""
        c = asdict(self.run_cfg)
        c.pop("out")
        c.pop("resume")
        return {**self.run_data.info, "config": c, "history": history,
                "device": str(self.device), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "train_seconds": round(seconds, 1),
                "load_seconds": round(self.load_s, 1), **self.info_extra}


def train_epochs(cfg: Any, data: Any, load_s: float,
                 make: Callable[[np.ndarray, np.ndarray, int, torch.device],
                                tuple[EpochTask, torch.nn.Module]],
                 progress: bool, stop: Callable[[], Any] | None, desc: str, loss_label: str,
                 grad_accum: int = 1, precision: str = "fp32") -> dict[str, Any]:
    """The run both small trainers share: episode split, ``cfg.epochs`` epochs (at most
    ``cfg.max_steps`` steps), one epoch of warm-up, a save per epoch, on the core's
    ``Trainer``; ``make(train_idx, val_idx, per_epoch, device)`` builds the task and the
    model after seeding. Returns the run summary (with ``step``, and ``stopped``)."""
    train_idx, val_idx = _split(data, cfg.val_fraction, cfg.seed)
    per_epoch = max(1, math.ceil(train_idx.size / cfg.batch_size))
    total = per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    with distributed(cfg.device) as (dist, device):
        seed_everything(cfg.seed)
        task, model = make(train_idx, val_idx, per_epoch, device)
        settings = TrainSettings(
            out=Path(cfg.out), steps=total, lr=cfg.lr, weight_decay=cfg.weight_decay,
            warmup_steps=per_epoch, grad_clip=1.0, grad_accum=grad_accum, precision=precision,
            log_every=cfg.log_every, save_every=per_epoch,
            resume="must" if cfg.resume else "never", keep_state=False, progress=progress,
            desc=desc, loss_label=loss_label)
        result = Trainer(settings, task, model, dist, device).run(stop)
    info = task.run_info(task.history, result.elapsed_s)
    if result.stopped:
        info["stopped"] = result.stopped
    info["step"] = result.step
    return info


class _PolicyTask(EpochTask):
    """The local policy's part of the training core (``tracetrain.loop.TrainTask``); per
    batch, after the epoch's permutation: the trace-dropout draws and the shift offsets
    (the recipe in the module docstring)."""

    info_extra = {"files": [CONFIG_FILE, WEIGHTS_FILE]}

    def __init__(self, cfg: TrainConfig, data: TrainingData, train_idx: np.ndarray,
                 val_idx: np.ndarray, per_epoch: int, device: torch.device,
                 load_s: float) -> None:
        super().__init__(cfg, data, train_idx, val_idx, per_epoch, device, load_s)
        self.cfg, self.data = cfg, data

    def plan(self, step: int) -> _Plan:
        idx = self.step_indices(step)
        drop = (trace_dropout_mask(len(idx), self.cfg.trace_dropout, self.rng)
                if self.data.transforms.use_trace and self.cfg.trace_dropout > 0 else None)
        pad = self.cfg.shift_px
        off = self.rng.integers(0, 2 * pad + 1, size=(len(idx), 2)) if pad > 0 else None
        return _Plan(idx, drop, off)

    def batch(self, plan: _Plan, rows: slice) -> tuple[torch.Tensor, ...]:
        return _batch(self.data, plan.idx[rows], plan, rows, self.device, self.cfg.shift_px)

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        images, words, proprio, bins = batch
        return loss_fn(model(images, words, proprio), bins, self.cfg.label_sigma_bins)

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        """Per epoch (and at the last step): validation, the checkpoint, the history."""
        assert isinstance(ctx.model, TracePolicyNet)
        val = evaluate(ctx.model, self.data, self.val_idx, self.cfg, self.device)
        history = self.record(ctx, val)
        save_checkpoint(self.cfg.out, ctx.model, self.data.transforms,
                        self.run_info(history, ctx.elapsed_s))
        return val


def train(cfg: TrainConfig, progress: bool = True,
          stop: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Train and write the checkpoint to ``cfg.out``; returns the training summary
    (``stopped`` names the reason when ``stop()`` ended the run early; the state to
    resume from is then in ``cfg.out``)."""
    t_load = time.perf_counter()
    data = load_training_data(cfg.data, cfg.image_size, cfg.max_words, use_trace=not cfg.no_trace)
    load_s = time.perf_counter() - t_load

    def make(train_idx: np.ndarray, val_idx: np.ndarray, per_epoch: int,
             device: torch.device) -> tuple[EpochTask, torch.nn.Module]:
        mcfg = ModelConfig(**{**dict(image_size=cfg.image_size,
                                     vocab_size=len(data.transforms.vocab),
                                     max_words=cfg.max_words,
                                     proprio_dim=data.transforms.proprio_dim,
                                     action_bins=data.transforms.action_bins), **cfg.model})
        return (_PolicyTask(cfg, data, train_idx, val_idx, per_epoch, device, load_s),
                TracePolicyNet(mcfg).to(device))

    return train_epochs(cfg, data, load_s, make, progress, stop,
                        desc="train" + (" (no trace)" if cfg.no_trace else ""),
                        loss_label="loss (soft CE, summed over 7 dims)",
                        grad_accum=cfg.grad_accum, precision=cfg.precision)
