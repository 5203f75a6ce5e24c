"""PixelVLA's two training stages on the training core (``tracetrain``); no rclpy.

The CLI is ``tracevla-train-pixelvla``. The loop, AdamW, the schedule, bf16
autocast, DDP under ``torchrun`` (one process per GPU), stopping and the
resumable state are the core's; this module holds the data, the prompts, the
loss and the checkpoint.

Stages (``--stage``):

1. the continuous action head (with its action queries) on robot data, no
   prompts; everything else frozen.
2. the prompt encoder, the pixel encoder, the head and LoRA (rank 32, alpha
   ``min(r, 16)``, every linear layer of the LLM) on data with prompts;
   ``--init`` takes the head, the architecture and the action statistics of a
   stage-1 output (else they start fresh).

Data: ``tracevla-collect`` directories. Sample = one step ``t`` of an
episode: the frame and the instruction (the OpenVLA prompt and 224 px image,
``InputBuilder``), the target chunk = the ``ee_delta_7d`` actions t .. t+7,
normalised with the data's q01/q99 on the motion dimensions (gripper as is;
``stats.compute_norm_stats``, ``actions.normalize``), steps past the episode's
end masked out of the L1 loss.

Prompts (stage 2): ``DIR/episode_*/prompts.npz`` next to ``data.npz``, all
keys optional but at least one, T = the episode's steps::

    mask    (T, H, W) bool     the target's mask at each step (any H, W; normalized
                               coordinates follow from it)
    points  (T, P, 2) float32  normalized (x, y); rows of NaN = absent
    lines   (T, L, 4) float32  normalized (x0, y0, x1, y1); NaN rows = absent
    boxes   (T, B, 4) float32  normalized (x_min, y_min, x_max, y_max); NaN rows = absent

Each training sample draws one prompt kind among those available at its step
(``sample_prompt``): with probability ``no_prompt_fraction`` none; else a
point (one given point, or a random pixel of the mask), a line (one given, or
between two random mask pixels), a box (one given, or the mask's bounding
box) or the mask itself. The draw is seeded by the step's plan (same on
every rank, resumable). Episodes without ``prompts.npz`` train without
prompts; data with no ``prompts.npz`` at all is refused for stage 2.

Output (``OUT/``): ``model.safetensors`` + ``config.json`` (the parts,
``model.save_parts``), ``dataset_statistics.json`` (under ``unnorm_key``),
stage 2 also ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT),
and from the core ``metrics.jsonl``, ``loss.png`` and, until the run ends,
``train_state.safetensors`` (trainable tensors, optimizer, RNG only).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from tracetrain.checkpoint import write_json
from tracetrain.device import autocast, autocast_dtype
from tracetrain.errors import SettingsError
from tracetrain.loop import SaveContext, Trainer, TrainSettings, distributed
from tracetrain.seed import seed_everything

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import Observation
from tracevla_ros.policy.pixelvla.action_head import action_l1_loss
from tracevla_ros.policy.pixelvla.model import (
    STAGE2_FILES,
    InputBuilder,
    PixelBatch,
    PixelVLA,
    add_llm_lora,
    load_parts,
    missing_parts_files,
    save_parts,
)
from tracevla_ros.policy.prompt import VisualPrompt
from tracevla_ros.policy.vla.actions import normalize
from tracevla_ros.policy.vla.checkpoint import resolve_checkpoint, validate_checkpoint
from tracevla_ros.policy.vla.finetune import (
    AdapterTask,
    VLASamples,
    adapter_train_settings,
    load_base,
    load_samples,
    write_adapter_files,
)
from tracevla_ros.policy.vla.stats import (
    STATS_FILE,
    compute_norm_stats,
    load_norm_stats,
    select_action_stats,
)
from tracevla_ros.sim.dataset import DatasetError, list_episodes

__all__ = ["PixelTrainConfig", "PROMPTS_FILE", "EpisodePrompts", "load_prompts", "sample_prompt",
           "chunk_targets", "PixelVLATask", "save_outputs", "check_inputs", "build",
           "train_settings", "train_pixelvla"]

_log = logging.getLogger(__name__)

PROMPTS_FILE = "prompts.npz"
PROMPT_KEYS = {"points": 2, "lines": 4, "boxes": 4}


@dataclass(frozen=True)
class PixelTrainConfig:
    base: str  # OpenVLA checkpoint: local directory or HF repo id in the local cache
    data: tuple[str, ...]  # tracevla-collect directories
    out: str  # output directory (parts, statistics, adapter)
    stage: int  # 1: head only; 2: prompt + pixel encoders, head, LoRA on the LLM
    init: str = ""  # a stage-1 output to start stage 2 from ("" = fresh parts)
    lora_rank: int = 32
    lora_alpha: int = 0  # 0 = min(lora_rank, 16)
    steps: int = 5000
    batch_size: int = 16  # global batch
    lr: float = 5e-4  # constant AdamW learning rate
    grad_accum: int = 1
    grad_clip: float = 1.0
    precision: str = "auto"  # auto = bf16 on a GPU that has it
    device: str = "auto"
    seed: int = 0
    unnorm_key: str = "pixelvla"  # name of the statistics in dataset_statistics.json
    save_every: int = 500
    log_every: int = 10
    val_fraction: float = 0.05
    eval_samples: int = 64
    no_prompt_fraction: float = 0.1  # stage 2: samples drawn without a prompt
    resume: bool = False
    arch: dict[str, Any] = field(default_factory=dict)  # PixelVLAConfig overrides (fresh parts)

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise SettingsError(f"PixelVLA setting '{key}' {what}, got {getattr(self, key)!r}")

        need(self.stage in (1, 2), "stage", "must be 1 or 2")
        need(bool(self.data), "data", "must name at least one dataset directory")
        need(1 <= self.lora_rank <= 4096, "lora_rank", "must be in [1, 4096]")
        need(0 <= self.lora_alpha <= 65536, "lora_alpha", "must be in [0, 65536]")
        need(self.steps >= 1, "steps", "must be >= 1")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "must be a finite number > 0")
        need(bool(self.unnorm_key.strip()), "unnorm_key", "must be a non-empty name")
        need(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        need(0 <= self.no_prompt_fraction < 1, "no_prompt_fraction", "must be in [0, 1)")
        need(not (self.init and self.stage == 1), "init", "is for stage 2 only")

    @property
    def alpha(self) -> int:
        return self.lora_alpha or min(self.lora_rank, 16)


# --- prompts --------------------------------------------------------------------------------


@dataclass
class EpisodePrompts:
    """One episode's prompt sources (see the module docstring); None = not given."""

    mask: np.ndarray | None = None  # (T, H, W) bool
    points: np.ndarray | None = None  # (T, P, 2)
    lines: np.ndarray | None = None  # (T, L, 4)
    boxes: np.ndarray | None = None  # (T, B, 4)


def load_prompts(episode: Path, steps: int) -> EpisodePrompts | None:
    """``episode/prompts.npz`` checked against the format, or None when absent."""
    f = Path(episode) / PROMPTS_FILE
    if not f.is_file():
        return None
    try:
        with np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{f}: not a readable npz file ({exc})") from None
    unknown = sorted(set(arrays) - {"mask", *PROMPT_KEYS})
    if unknown or not arrays:
        raise ConfigError(f"{f}: keys {sorted(arrays)}; expected one or more of mask, points, "
                          "lines, boxes (tracevla_ros/policy/pixelvla/train.py)")
    out = EpisodePrompts()
    if "mask" in arrays:
        m = arrays["mask"]
        if m.ndim != 3 or m.shape[0] != steps:
            raise ConfigError(f"{f}: mask must be (T={steps}, H, W), got {m.shape}")
        out.mask = m.astype(bool)
    for k, w in PROMPT_KEYS.items():
        if k not in arrays:
            continue
        a = np.asarray(arrays[k], np.float32)
        if a.ndim != 3 or a.shape[0] != steps or a.shape[2] != w:
            raise ConfigError(f"{f}: {k} must be (T={steps}, N, {w}), got {a.shape}")
        ok = np.isfinite(a)
        if np.any(ok & ((a < 0) | (a > 1))) or np.any(ok.any(-1) != ok.all(-1)):
            raise ConfigError(f"{f}: {k} must be normalized to [0, 1], absent rows all NaN")
        setattr(out, k, a)
    return out


def _mask_pixel(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    i = int(rng.integers(len(ys)))
    h, w = mask.shape
    return np.array([(xs[i] + 0.5) / w, (ys[i] + 0.5) / h], np.float32)


def sample_prompt(src: EpisodePrompts | None, t: int, seed: int,
                  no_prompt_fraction: float) -> VisualPrompt | None:
    """The training prompt of step ``t`` for the plan's ``seed`` (module docstring)."""
    if src is None:
        return None
    rng = np.random.default_rng(seed)
    mask = src.mask[t] if src.mask is not None and src.mask[t].any() else None
    given = {k: (a[t][np.isfinite(a[t]).all(-1)] if a is not None else np.zeros((0, w)))
             for k, w, a in (("points", 2, src.points), ("lines", 4, src.lines),
                             ("boxes", 4, src.boxes))}
    kinds = [k for k in ("points", "lines", "boxes") if len(given[k]) or mask is not None]
    kinds += ["mask"] if mask is not None else []
    if not kinds or rng.random() < no_prompt_fraction:
        return None
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "mask":
        return VisualPrompt(mask=mask)
    if len(given[kind]):
        return VisualPrompt(**{kind: given[kind][int(rng.integers(len(given[kind])))][None]})
    assert mask is not None
    if kind == "points":
        return VisualPrompt(points=_mask_pixel(mask, rng)[None])
    if kind == "lines":
        return VisualPrompt(lines=np.concatenate([_mask_pixel(mask, rng),
                                                  _mask_pixel(mask, rng)])[None])
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return VisualPrompt(boxes=np.array([[xs.min() / w, ys.min() / h, (xs.max() + 1) / w,
                                         (ys.max() + 1) / h]], np.float32))


# --- targets ------------------------------------------------------------------------------------


def chunk_targets(samples: VLASamples, normalized: Sequence[np.ndarray], chunk: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """((N, chunk, 7) float32 targets, (N, chunk) bool valid): the actions t .. t+chunk-1 of
    each sample's episode (``normalized`` per episode); past the end: the last action, invalid."""
    n = len(samples)
    tgt = np.zeros((n, chunk, normalized[0].shape[1]), np.float32)
    ok = np.zeros((n, chunk), bool)
    for i, (e, t) in enumerate(samples.index):
        a = normalized[int(e)]
        k = min(chunk, len(a) - int(t))
        tgt[i, :k] = a[t:t + k]
        tgt[i, k:] = a[-1]
        ok[i, :k] = True
    return tgt, ok


# --- the task -----------------------------------------------------------------------------------


class PixelVLATask(AdapterTask):
    """PixelVLA's part of the training core (``tracetrain.loop.TrainTask``). The plan of a
    step: (sample index, prompt seed) per row, from ``default_rng([seed, epoch])`` order."""

    what = "PixelVLA"
    hint = "same --stage, --lora-rank and base?"

    def __init__(self, cfg: PixelTrainConfig, samples: VLASamples,
                 prompts: list[EpisodePrompts | None], builder: InputBuilder,
                 targets: tuple[np.ndarray, np.ndarray], norm_stats: dict[str, Any],
                 device: torch.device, info: dict[str, Any]) -> None:
        self.cfg, self.samples, self.prompts, self.builder = cfg, samples, prompts, builder
        self.targets, self.valid = targets
        self.norm_stats, self.device, self.info = norm_stats, device, info
        self._init_order(samples, cfg.val_fraction, cfg.seed, cfg.batch_size)

    def plan(self, step: int) -> np.ndarray:
        idx = self.step_indices(step)
        seeds = np.random.default_rng([self.cfg.seed, 1, step]).integers(0, 2**31, idx.size)
        return np.stack([idx, seeds], axis=1)

    def observation(self, i: int, seed: int) -> Observation:
        obs = self.samples.observation(i)
        if self.cfg.stage == 1:
            return obs
        e, t = (int(v) for v in self.samples.index[i])
        p = sample_prompt(self.prompts[e], t, seed, self.cfg.no_prompt_fraction)
        return replace(obs, prompt=p)

    def rows(self, plan: np.ndarray) -> PixelBatch:
        idx = plan[:, 0]
        obs = [self.observation(int(i), int(s)) for i, s in plan]
        return self.builder.batch(obs, torch.from_numpy(self.targets[idx]),
                                  torch.from_numpy(self.valid[idx])).to(self.device)

    def loss(self, model: nn.Module, batch: PixelBatch) -> torch.Tensor:
        assert batch.target is not None and batch.target_valid is not None
        return action_l1_loss(model(batch), batch.target, batch.target_valid)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, idx: np.ndarray) -> dict[str, float]:
        """Mean L1 (normalised units) on the samples ``idx`` (prompt seed = sample index)."""
        if idx.size == 0:
            return {}
        was = model.training
        model.eval()
        dtype = autocast_dtype(self.device, self.cfg.precision)
        total = n = 0.0
        for s in range(0, idx.size, self.cfg.batch_size):
            part = idx[s:s + self.cfg.batch_size]
            batch = self.rows(np.stack([part, part], axis=1))
            with autocast(self.device, dtype):
                pred = model(batch)
            assert batch.target is not None and batch.target_valid is not None
            k = float(batch.target_valid.sum())
            total += float(action_l1_loss(pred, batch.target, batch.target_valid)) * k
            n += k
        model.train(was)
        return {"val_l1": total / max(n, 1.0)}

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        idx = self.val_idx[:self.cfg.eval_samples]
        rec: dict[str, Any] = {"step": ctx.step, "train_loss": ctx.train_loss,
                               "seconds": round(ctx.elapsed_s, 1),
                               **self.evaluate(ctx.model, idx)}
        history = self.history + [rec]
        if not ctx.stopped:
            self.history = history
        _log.info("step %d: %s", ctx.step, rec)
        save_outputs(Path(self.cfg.out), ctx.model, self.norm_stats, self._info(history))
        return {k: v for k, v in rec.items() if k.startswith("val_")}

    def _info(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        c = asdict(self.cfg)
        for k in ("out", "resume", "arch"):
            c.pop(k)
        return {"stage": self.cfg.stage, "unnorm_key": self.cfg.unnorm_key,
                "lora": ({"rank": self.cfg.lora_rank, "alpha": self.cfg.alpha}
                         if self.cfg.stage == 2 else None),
                "base": self.info, "training": {**self.samples.info, "config": c,
                                                "history": history}}


def save_outputs(out: Path, model: nn.Module, norm_stats: dict[str, Any],
                 info: dict[str, Any]) -> None:
    """The parts (+ config.json), the statistics and, in stage 2, the LoRA adapter."""
    assert isinstance(model, PixelVLA)
    if model.peft is not None:
        write_adapter_files(out, model.peft)
    write_json(out / STATS_FILE, norm_stats)
    save_parts(out, model, info)


# --- building ---------------------------------------------------------------------------------


def check_inputs(cfg: PixelTrainConfig) -> Path:
    """Cheap checks before anything is loaded: --base complete, --data datasets with
    episodes (stage 2: with prompts), --init a complete stage-1 output. Returns the base dir."""
    try:
        base = validate_checkpoint(resolve_checkpoint(cfg.base))
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("parameter 'checkpoint'", "--base", 1)) from None
    if cfg.init:
        p = Path(cfg.init)
        missing = missing_parts_files(p, None) if p.is_dir() else ["the directory"]
        if missing:
            raise ConfigError(f"--init {p}: missing {', '.join(missing)} (a stage-1 output of "
                              "tracevla-train-pixelvla)")
        if any((p / n).is_file() for n in STAGE2_FILES):
            raise ConfigError(f"--init {p} is a stage-2 output (it has a LoRA adapter); start "
                              "stage 2 from a stage-1 output")
    with_prompts = 0
    for d in cfg.data:
        try:
            eps = list_episodes(d)
        except DatasetError as exc:
            raise ConfigError(f"--data {d}: {exc}") from None
        if not eps:
            raise ConfigError(f"--data {d}: no episodes (episode_*/data.npz); record some with "
                              "tracevla-collect")
        with_prompts += sum((p / PROMPTS_FILE).is_file() for p in eps)
    if cfg.stage == 2 and not with_prompts:
        raise ConfigError(f"--stage 2 trains on prompts, but no episode of --data "
                          f"{' '.join(cfg.data)} has {PROMPTS_FILE} (keys mask / points / lines "
                          "/ boxes per step; see tracevla_ros/policy/pixelvla/train.py)")
    return base


def build(cfg: PixelTrainConfig, device: torch.device) -> tuple[PixelVLATask, PixelVLA]:
    """The task and the model of ``cfg`` on ``device``."""
    base = check_inputs(cfg)
    samples = load_samples(cfg.data, use_trace=False)
    prompts: list[EpisodePrompts | None] = (
        [load_prompts(ep.path, len(ep)) for ep in samples.episodes] if cfg.stage == 2
        else [None] * len(samples.episodes))
    dtype = autocast_dtype(device, cfg.precision) or torch.float32
    seed_everything(cfg.seed)
    processor, vla = load_base(base, device, dtype)
    vla.eval()
    seed_everything(cfg.seed)  # the parts' initialisation: the same on every rank
    if cfg.init:
        model, body = load_parts(Path(cfg.init), vla)
        norm_stats = load_norm_stats(Path(cfg.init))
        key = str(body.get("unnorm_key") or next(iter(norm_stats)))
        norm_stats = {cfg.unnorm_key: norm_stats[key]}
    else:
        try:
            model = PixelVLA.for_base(vla, **cfg.arch)
        except TypeError as exc:
            raise SettingsError(f"PixelVLA setting 'arch': {exc}") from None
        norm_stats = {cfg.unnorm_key: compute_norm_stats(samples.actions, len(samples.episodes))}
    for m in model.parts().values():
        m.float().to(device)
    if cfg.stage == 2:
        seed_everything(cfg.seed)
        add_llm_lora(model, cfg.lora_rank, cfg.alpha)
    model.set_stage(cfg.stage)
    stats = select_action_stats(norm_stats, cfg.unnorm_key, "the training data")
    per_episode = [normalize(ep.actions, stats).astype(np.float32) for ep in samples.episodes]
    targets = chunk_targets(samples, per_episode, model.cfg.chunk)
    builder = InputBuilder(processor, model.cfg.mask_size, dtype)
    n_prompted = sum(p is not None for p in prompts)
    if cfg.stage == 2 and n_prompted < len(prompts):
        _log.warning("%d of %d episodes have no %s; they train without prompts",
                     len(prompts) - n_prompted, len(prompts), PROMPTS_FILE)
    info = {"path": str(base), "weights_dtype": str(dtype), "init": cfg.init,
            "episodes_with_prompts": n_prompted}
    return PixelVLATask(cfg, samples, prompts, builder, targets, norm_stats, device, info), model


def train_settings(cfg: PixelTrainConfig, progress: bool = True) -> TrainSettings:
    """The core's settings (:func:`~tracevla_ros.policy.vla.finetune.adapter_train_settings`)."""
    return adapter_train_settings(cfg.out, cfg.steps, cfg.lr, cfg.grad_clip, cfg.grad_accum,
                                  cfg.precision, cfg.log_every, cfg.save_every, cfg.resume,
                                  progress, f"pixelvla stage {cfg.stage}",
                                  "action L1 (normalised)")


def train_pixelvla(cfg: PixelTrainConfig, progress: bool = True,
                   stop: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Train stage ``cfg.stage`` and write ``cfg.out``; returns the summary."""
    t0 = time.perf_counter()
    with distributed(cfg.device) as (dist, device):
        task, model = build(cfg, device)
        load_s = time.perf_counter() - t0
        result = Trainer(train_settings(cfg, progress), task, model, dist, device).run(stop)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    summary = {**task.samples.info, "stage": cfg.stage, "step": result.step,
               "history": task.history, "trainable_parameters": int(sum(trainable.values())),
               "device": str(device), "load_seconds": round(load_s, 1),
               "train_seconds": round(result.elapsed_s, 1), "losses": result.losses}
    if result.stopped:
        summary["stopped"] = result.stopped
    return summary

