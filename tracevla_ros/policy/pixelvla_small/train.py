"""Training of the small PixelVLA (no rclpy); the CLI is ``tracevla-train-pixelvla-small``.

Data: ``tracevla-collect --masks`` episodes (the target's and the gripper's segmentation
masks per step: the automatic annotation). Every step is one sample: the frame, a prompt
sampled from the target mask of that step, the instruction, the joint positions, and the
next ``chunk`` expert actions as the label (``transforms.chunk_labels``). The image,
instruction, proprio and action statistics are the local policy's transforms.

Recipe:

* per sample and epoch, one prompt kind drawn uniformly from ``prompt_kinds`` (point,
  line, box, mask; ``prompt_sampling.sample_prompt`` on the mask resized to the model
  size), or no prompt with probability ``prompt_dropout`` (0.3): one network runs with
  and without prompts (the "no prompt" ablation is this network with an empty channel);
* loss: ``continuous``: L1 between the tanh output and the actions normalised to [-1, 1]
  (the local policy's q01/q99 ranges), mean over the chunk's 8 x 7 values; ``discrete``:
  the local policy's soft cross-entropy over 256 bins, summed over 7 dims, mean over the
  chunk steps; same backbone either way;
* AdamW (lr 1e-3, weight decay 1e-4), 1 epoch warm-up then cosine, batch 64, gradient
  norm clip 1.0 (the training core ``tracetrain.loop``), +-4 px shift of frame and prompt
  together; 5 % of the episodes held out (validation L1 with the mask prompt and with none);
* deterministic per seed: numpy generators seeded with (seed, epoch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from tracetrain.loop import SaveContext

from tracevla_ros.policy.local.train import EpochTask, _shift, loss_fn, train_epochs
from tracevla_ros.policy.local.transforms import (
    TransformConfig,
    action_stats,
    action_to_bins,
    build_vocab,
    encode_instruction,
    normalize_action,
    normalize_proprio,
    proprio_stats,
    resize_image,
)
from tracevla_ros.policy.pixelvla_small.checkpoint import save_checkpoint
from tracevla_ros.policy.pixelvla_small.model import PixelModelConfig, PixelVLANet
from tracevla_ros.policy.pixelvla_small.transforms import (
    PixelConfig,
    chunk_labels,
    mask_to_size,
    rasterize_prompt,
)
from tracevla_ros.policy.prompt_sampling import sample_prompt
from tracevla_ros.sim.dataset import list_episodes, load_episode, load_info

__all__ = ["PixelTrainConfig", "PixelData", "load_pixel_data", "train"]


@dataclass(frozen=True)
class PixelTrainConfig:
    data: tuple[str, ...]
    out: str
    decoder: str = "continuous"  # continuous | discrete
    chunk: int = 8
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    prompt_dropout: float = 0.3  # probability of the no-prompt form per sample and epoch
    image_size: int = 96
    max_words: int = 12
    shift_px: int = 4
    label_sigma_bins: float = 1.5  # discrete only
    val_fraction: float = 0.05
    device: str = "auto"
    max_steps: int = 0  # 0 = no limit (tests use a few)
    resume: bool = False
    log_every: int = 10
    model: dict[str, Any] = field(default_factory=dict)  # PixelModelConfig overrides

    def __post_init__(self) -> None:
        if self.decoder not in ("continuous", "discrete"):
            raise ValueError(f"decoder must be continuous or discrete, got {self.decoder!r}")
        if not 0.0 <= self.prompt_dropout <= 1.0:
            raise ValueError(f"prompt_dropout must be in [0, 1], got {self.prompt_dropout}")
        if self.chunk < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("chunk, epochs and batch_size must be >= 1")


@dataclass
class PixelData:
    images: np.ndarray  # (N, S, S, 3) uint8
    masks: np.ndarray  # (N, S, S) bool target mask at the model size
    words: np.ndarray  # (N, L) int64
    proprio: np.ndarray  # (N, P) float32 standardised
    labels: np.ndarray  # (N, H, 7) float32 in [-1, 1] (continuous) or int64 bins (discrete)
    episode: np.ndarray  # (N,) int32
    transforms: TransformConfig
    info: dict[str, Any]


def load_pixel_data(dirs: list[str] | tuple[str, ...], cfg: PixelTrainConfig,
                    pcfg: PixelConfig) -> PixelData:
    """Read every episode of ``dirs`` (collected with ``--masks``) and transform it; frames
    and masks are resized to the model size as each episode is read (memory: the small
    arrays only)."""
    s = cfg.image_size
    eps: list[dict[str, Any]] = []
    size: tuple[int, int] | None = None
    for d in dirs:
        load_info(d)
        for p in list_episodes(d):
            ep = load_episode(p)
            if ep.target_mask is None:
                raise ValueError(f"{p}: no target masks; collect with tracevla-collect --masks")
            here = (ep.rgb.shape[2], ep.rgb.shape[1])
            if size is not None and here != size:
                raise ValueError(f"episodes have different frame sizes {size}, {here}")
            size = here
            eps.append({"task": ep.task, "seed": int(ep.seed), "instruction": ep.instruction,
                        "actions": ep.actions, "joints": ep.joint_positions,
                        "images": np.stack([resize_image(f, s) for f in ep.rgb]),
                        "masks": np.stack([mask_to_size(m, s) for m in ep.target_mask])})
            del ep
    if not eps or size is None:
        raise ValueError(f"no episodes under {list(dirs)}")
    actions = np.concatenate([e["actions"] for e in eps])
    low, high = action_stats(actions)
    mean, std = proprio_stats(np.concatenate([e["joints"] for e in eps]))
    instructions = sorted({e["instruction"] for e in eps})
    tcfg = TransformConfig(source_size=size, image_size=s, vocab=build_vocab(instructions),
                           max_words=cfg.max_words, proprio_mean=mean, proprio_std=std,
                           action_low=low, action_high=high, use_trace=False)
    images = np.concatenate([e.pop("images") for e in eps])
    masks = np.concatenate([e.pop("masks") for e in eps])
    n = int(actions.shape[0])
    words = np.empty((n, cfg.max_words), np.int64)
    episode = np.empty(n, np.int32)
    chunks = []
    seeds: dict[str, list[int]] = {}
    i = 0
    for k, e in enumerate(eps):
        seeds.setdefault(e["task"], []).append(e["seed"])
        t = len(e["actions"])
        words[i:i + t] = encode_instruction(e["instruction"], tcfg)
        episode[i:i + t] = k
        chunks.append(chunk_labels(e["actions"], pcfg.chunk))
        i += t
    proprio = np.stack([normalize_proprio(q, tcfg)
                        for q in np.concatenate([e["joints"] for e in eps])])
    episodes = eps
    lab = np.concatenate(chunks)
    labels = (action_to_bins(lab, tcfg) if pcfg.decoder == "discrete"
              else normalize_action(lab, tcfg).astype(np.float32))
    info = {"data": [str(d) for d in dirs], "episodes": len(episodes), "samples": n,
            "instructions": instructions,
            "episode_seeds": {t: sorted(v) for t, v in sorted(seeds.items())},
            "tasks": {t: len(v) for t, v in sorted(seeds.items())},
            "empty_mask_samples": int((~masks.any(axis=(1, 2))).sum())}
    return PixelData(images, masks, words, proprio, labels, episode, tcfg, info)


def pixel_loss(out: torch.Tensor, labels: torch.Tensor, decoder: str, sigma: float) -> torch.Tensor:
    """Continuous: mean L1; discrete: soft CE summed over 7 dims, mean over chunk steps."""
    if decoder == "discrete":
        b, h, d, nb = out.shape
        return loss_fn(out.reshape(b * h, d, nb), labels.reshape(b * h, d), sigma)
    return (out - labels).abs().mean()


@dataclass
class _Plan:
    idx: np.ndarray  # (B,) sample indices
    kinds: np.ndarray  # (B,) index into prompt_kinds, -1 = no prompt
    seeds: np.ndarray  # (B,) prompt draw seeds
    offsets: np.ndarray | None  # (B, 2)

    def __len__(self) -> int:
        return int(self.idx.size)


def _prompts(data: PixelData, idx: np.ndarray, kinds: np.ndarray, seeds: np.ndarray,
             pcfg: PixelConfig) -> np.ndarray:
    s = data.images.shape[1]
    out = np.zeros((idx.size, s, s), np.uint8)
    for j, (i, k, sd) in enumerate(zip(idx, kinds, seeds)):
        if k >= 0:
            p = sample_prompt(data.masks[i], pcfg.prompt_kinds[k], np.random.default_rng(sd))
            out[j] = rasterize_prompt(p, s, pcfg)
    return out


def _batch(data: PixelData, idx: np.ndarray, kinds: np.ndarray, seeds: np.ndarray,
           offsets: np.ndarray | None, shift_px: int, pcfg: PixelConfig,
           device: torch.device) -> tuple[torch.Tensor, ...]:
    images = data.images[idx]
    prompt = _prompts(data, idx, kinds, seeds, pcfg)
    if offsets is not None:
        both = np.concatenate([images, prompt[..., None]], axis=-1)[:, None]
        both = _shift(both, offsets, shift_px)[:, 0]
        images, prompt = both[..., :3], both[..., 3]
    return (torch.from_numpy(np.ascontiguousarray(images)).to(device),
            torch.from_numpy(np.ascontiguousarray(prompt)).to(device),
            torch.from_numpy(data.words[idx]).to(device),
            torch.from_numpy(data.proprio[idx]).to(device),
            torch.from_numpy(data.labels[idx]).to(device))


@torch.no_grad()
def evaluate(model: PixelVLANet, data: PixelData, idx: np.ndarray, cfg: PixelTrainConfig,
             pcfg: PixelConfig, device: torch.device) -> dict[str, float]:
    """Validation loss and L1 (normalised action units) with the mask prompt and with none."""
    if idx.size == 0:
        return {}
    model.eval()
    res: dict[str, float] = {}
    mask_kind = pcfg.prompt_kinds.index("mask") if "mask" in pcfg.prompt_kinds else 0
    for name, kind in (("prompt", mask_kind), ("noprompt", -1)):
        total = l1 = 0.0
        for start in range(0, idx.size, 256):
            part = idx[start:start + 256]
            kinds = np.full(part.size, kind)
            images, prompt, words, proprio, labels = _batch(
                data, part, kinds, part, None, 0, pcfg, device)
            out = model(images, prompt, words, proprio)
            total += float(pixel_loss(out, labels, cfg.decoder, cfg.label_sigma_bins)) * part.size
            if cfg.decoder == "discrete":
                nb = out.shape[-1]
                pred = -1.0 + (out.argmax(-1).float() + 0.5) * (2.0 / nb)
                true = -1.0 + (labels.float() + 0.5) * (2.0 / nb)
                l1 += float((pred - true).abs().mean()) * part.size
            else:
                l1 += float((out - labels).abs().mean()) * part.size
        res[f"val_loss_{name}"] = total / idx.size
        res[f"val_l1_{name}"] = l1 / idx.size
    model.train()
    return res


class _PixelTask(EpochTask):
    """The small PixelVLA's part of the training core (``tracetrain.loop.TrainTask``); per
    batch, after the epoch's permutation: prompt kinds (with dropout), prompt seeds, shifts."""

    def __init__(self, cfg: PixelTrainConfig, pcfg: PixelConfig, data: PixelData,
                 train_idx: np.ndarray, val_idx: np.ndarray, per_epoch: int,
                 device: torch.device, load_s: float) -> None:
        super().__init__(cfg, data, train_idx, val_idx, per_epoch, device, load_s)
        self.cfg, self.pcfg, self.data = cfg, pcfg, data

    def plan(self, step: int) -> _Plan:
        idx = self.step_indices(step)
        kinds = self.rng.integers(0, len(self.pcfg.prompt_kinds), idx.size)
        kinds[self.rng.random(idx.size) < self.cfg.prompt_dropout] = -1
        seeds = self.rng.integers(0, 2**31 - 1, idx.size)
        pad = self.cfg.shift_px
        off = self.rng.integers(0, 2 * pad + 1, size=(idx.size, 2)) if pad > 0 else None
        return _Plan(idx, kinds, seeds, off)

    def batch(self, plan: _Plan, rows: slice) -> tuple[torch.Tensor, ...]:
        off = plan.offsets[rows] if plan.offsets is not None else None
        return _batch(self.data, plan.idx[rows], plan.kinds[rows], plan.seeds[rows], off,
                      self.cfg.shift_px, self.pcfg, self.device)

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        images, prompt, words, proprio, labels = batch
        return pixel_loss(model(images, prompt, words, proprio), labels, self.cfg.decoder,
                          self.cfg.label_sigma_bins)

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        assert isinstance(ctx.model, PixelVLANet)
        val = evaluate(ctx.model, self.data, self.val_idx, self.cfg, self.pcfg, self.device)
        history = self.record(ctx, val)
        save_checkpoint(self.cfg.out, ctx.model, self.data.transforms, self.pcfg,
                        self.run_info(history, ctx.elapsed_s))
        return {k: v for k, v in val.items() if k.startswith("val_")}


def train(cfg: PixelTrainConfig, progress: bool = True,
          stop: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Train and write the checkpoint to ``cfg.out``; returns the training summary."""
    pcfg = PixelConfig(chunk=cfg.chunk, decoder=cfg.decoder)
    t0 = time.perf_counter()
    data = load_pixel_data(cfg.data, cfg, pcfg)
    load_s = time.perf_counter() - t0

    def make(train_idx: np.ndarray, val_idx: np.ndarray, per_epoch: int,
             device: torch.device) -> tuple[EpochTask, torch.nn.Module]:
        tc = data.transforms
        mcfg = PixelModelConfig(**{**dict(image_size=cfg.image_size, vocab_size=len(tc.vocab),
                                          max_words=cfg.max_words, proprio_dim=tc.proprio_dim,
                                          chunk=cfg.chunk, decoder=cfg.decoder,
                                          action_bins=tc.action_bins), **cfg.model})
        return (_PixelTask(cfg, pcfg, data, train_idx, val_idx, per_epoch, device, load_s),
                PixelVLANet(mcfg).to(device))

    return train_epochs(cfg, data, load_s, make, progress, stop,
                        desc=f"train pixelvla ({cfg.decoder})",
                        loss_label="L1 (normalised)" if cfg.decoder == "continuous" else "soft CE")
