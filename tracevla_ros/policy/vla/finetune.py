"""LoRA fine-tuning of the OpenVLA-style VLAs (``openvla``, ``tracevla-7b``) on sim episodes.

No rclpy; the CLI is ``tracevla-finetune-vla``. The loop, the schedule, mixed
precision, DDP under ``torchrun``, stopping and the resumable state are the
training core's (``tracetrain.loop``); this module holds the data, the loss
and the adapter checkpoint.

Data: directories in the ``tracevla-collect`` layout (``tracevla-dataset``
writes it too). Every recorded step is one sample, built exactly as the
backend (``hf.py``) builds its inference input:

* the observation: the frame, for ``tracevla-7b`` also the offline trace
  overlay of that step (``tracevla-annotate``) when the step is traced, else
  the no-trace form; ``models.prepare_inputs`` picks the prompt
  (``prompts.py``) and prepares the images (``images.py``), and
  ``hf.processor_inputs`` runs the checkpoint's processor;
* the ids ``predict_action`` generates from: the prompt's ids plus what the
  checkpoint's ``predict_action`` appends before generating (OpenVLA appends
  the empty token 29871), read once at start-up by running it with a stub
  ``generate`` (``hf.stubbed_generate``), never assumed;
* the label: the step's ``ee_delta_7d`` action, normalised with the
  dataset's 1st/99th percentiles on the six motion dimensions (the gripper
  as is; ``stats.compute_norm_stats``, ``actions.normalize``) and mapped to
  the 7 action tokens the backend decodes (``actions.encode_actions``).

Loss: next-token cross-entropy on the 7 action tokens only; every other
position has label -100. The logits are aligned from the end of the
sequence, as the Prismatic models put their visual tokens before the text
(after BOS), so the last ``len(input_ids)`` positions are the text's.

Recipe (OpenVLA's LoRA fine-tuning): LoRA rank 32, alpha ``min(rank, 16)``,
dropout 0, ``target_modules="all-linear"`` (every linear layer but the output
head, vision backbone and projector included), Gaussian init (the adapter
starts as the identity); the base is frozen, embeddings included (action
tokens are existing vocabulary ids). AdamW lr 5e-4, constant (the core's
cosine with ``min_lr_ratio=1``), no weight decay, batch 16. Differences: the
gradient norm is clipped at 1.0 (the core's default), the stop token is not
trained (inference generates exactly 7 tokens), no image augmentation.
Precision: the base weights in the autocast dtype (bf16 on a GPU with
``--precision auto``), the LoRA weights and the optimizer in float32.

Output (``OUT/``): ``adapter_model.safetensors`` + ``adapter_config.json``
(``PeftModel.save_pretrained``; loaded by the backends' ``adapter``
parameter), ``dataset_statistics.json`` (the statistics the actions were
tokenised with, under ``unnorm_key``), ``finetune.json`` (format
``tracevla_vla_lora/v1``: base, model, LoRA settings, history), and from the
core ``metrics.jsonl``, ``loss.png`` and, until the run ends,
``train_state.safetensors`` (the LoRA weights, the optimizer, every RNG: only
the trainable tensors, never the 7B base).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tracetrain.checkpoint import format_tag, write_json
from tracetrain.device import autocast, autocast_dtype
from tracetrain.errors import SettingsError
from tracetrain.loop import SaveContext, Trainer, TrainSettings, distributed
from tracetrain.seed import seed_everything

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import Observation
from tracevla_ros.policy.vla.actions import (
    ACTION_DIM,
    decode_tokens,
    encode_actions,
    normalize,
    probe_token_ids,
)
from tracevla_ros.policy.vla.checkpoint import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    resolve_checkpoint,
    validate_checkpoint,
)
from tracevla_ros.policy.vla.models import MODELS, PRISMATIC, VLAModel, prepare_inputs
from tracevla_ros.policy.vla.stats import (
    STATS_FILE,
    compute_norm_stats,
    load_norm_stats,
    select_action_stats,
)
from tracevla_ros.sim.dataset import (
    DatasetError,
    Episode,
    list_episodes,
    load_episode,
    load_info,
)

__all__ = ["FinetuneConfig", "FINETUNE_MODELS", "IGNORE_INDEX", "INFO_FILE", "FORMAT_NAME",
           "VLASamples", "VLABatch", "SampleEncoder", "load_samples", "action_token_loss",
           "AdapterTask", "adapter_train_settings", "LoRATask", "load_base", "add_lora",
           "check_inputs", "save_adapter",
           "write_adapter_files", "trainable_state", "load_trainable_state", "build",
           "train_settings", "finetune"]

_log = logging.getLogger(__name__)

FINETUNE_MODELS = tuple(n for n, m in MODELS.items() if m.family == PRISMATIC)
IGNORE_INDEX = -100  # label of every position that is not an action token
INFO_FILE = "finetune.json"
FORMAT_NAME, FORMAT_VERSION = "tracevla_vla_lora", 1


@dataclass(frozen=True)
class FinetuneConfig:
    base: str  # base checkpoint: local directory or HF repo id in the local cache
    data: tuple[str, ...]  # tracevla-collect directories
    out: str  # adapter directory
    model: str = "tracevla-7b"  # backend whose inputs are built: tracevla-7b | openvla
    lora_rank: int = 32
    lora_alpha: int = 0  # 0 = min(lora_rank, 16) (OpenVLA)
    target_modules: str | tuple[str, ...] = "all-linear"  # PEFT target_modules
    steps: int = 5000  # optimizer steps
    batch_size: int = 16  # global batch (split over the processes under torchrun)
    lr: float = 5e-4  # constant AdamW learning rate
    grad_accum: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    precision: str = "auto"  # autocast: auto (bf16 on a GPU that has it) | fp32 | bf16 | fp16
    device: str = "auto"
    seed: int = 0
    unnorm_key: str = "tracevla_finetune"  # name of the statistics in dataset_statistics.json
    save_every: int = 500  # steps per adapter save + resumable state (0 = at the end)
    log_every: int = 10  # steps per metrics.jsonl line
    val_fraction: float = 0.05  # episodes held out for the evaluation (when >= 4 episodes)
    eval_samples: int = 64  # held-out samples evaluated at each save
    resume: bool = False  # continue the interrupted run in ``out``

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise SettingsError(f"fine-tuning setting '{key}' {what}, got "
                                    f"{getattr(self, key)!r}")

        need(self.model in FINETUNE_MODELS, "model", f"must be one of {FINETUNE_MODELS}")
        need(bool(self.data), "data", "must name at least one dataset directory")
        need(1 <= self.lora_rank <= 4096, "lora_rank", "must be in [1, 4096]")
        need(0 <= self.lora_alpha <= 65536, "lora_alpha", "must be in [0, 65536] (0 = min(r, 16))")
        need(self.steps >= 1, "steps", "must be >= 1")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "must be a finite number > 0")
        need(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        need(bool(self.unnorm_key.strip()), "unnorm_key", "must be a non-empty name")
        need(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        need(self.eval_samples >= 0, "eval_samples", "must be >= 0")

    @property
    def alpha(self) -> int:
        return self.lora_alpha or min(self.lora_rank, 16)


# --- data --------------------------------------------------------------------------------


@dataclass
class VLASamples:
    """Every step of the episodes (frames kept as recorded; prepared per batch)."""

    episodes: list[Episode]
    overlays: list[np.ndarray | None]  # per episode: (T, H, W, 3) uint8 overlays, or None
    traced: list[np.ndarray | None]  # per episode: (T,) bool, the step has a valid trace
    index: np.ndarray  # (N, 2) int: (episode, step) of each sample
    actions: np.ndarray  # (N, 7) float64 ee_delta_7d
    info: dict[str, Any]

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def observation(self, i: int) -> Observation:
        """Sample ``i`` as the policy node would hand it to the backend."""
        e, t = (int(v) for v in self.index[i])
        ep = self.episodes[e]
        ovl, ok = self.overlays[e], self.traced[e]
        overlay = ovl[t] if ovl is not None and ok is not None and bool(ok[t]) else None
        return Observation(image=ep.rgb[t], overlay=overlay, instruction=ep.instruction)


def load_samples(dirs: Sequence[str], use_trace: bool) -> VLASamples:
    """All episodes of ``dirs`` (with their offline traces when ``use_trace``)."""
    from tracevla_ros.tracking.offline import load_traces

    episodes: list[Episode] = []
    overlays: list[np.ndarray | None] = []
    traced: list[np.ndarray | None] = []
    for d in dirs:
        info = load_info(d)
        space = info.get("action_space", "ee_delta_7d")
        if space != "ee_delta_7d":
            raise ConfigError(f"dataset {d}: action_space '{space}'; the VLAs predict ee_delta_7d")
        for p in list_episodes(d):
            ep = load_episode(p)
            episodes.append(ep)
            if use_trace:
                tr = load_traces(p)[0]
                overlays.append(tr.overlays)
                traced.append(np.asarray(tr.valid, bool))
            else:
                overlays.append(None)
                traced.append(None)
    if not episodes:
        raise ConfigError(f"--data {' '.join(map(str, dirs))}: no episodes (episode_*/data.npz); "
                          "record some with tracevla-collect")
    index = np.array([(e, t) for e, ep in enumerate(episodes) for t in range(len(ep))], np.int64)
    actions = np.concatenate([ep.actions for ep in episodes]).astype(np.float64)
    n_traced = int(sum(int(v.sum()) for v in traced if v is not None))
    info = {"data": [str(d) for d in dirs], "episodes": len(episodes), "samples": len(index),
            "traced_samples": n_traced,
            "instructions": sorted({ep.instruction for ep in episodes})}
    return VLASamples(episodes, overlays, traced, index, actions, info)


@dataclass
class VLABatch:
    """One micro-batch, right-padded (B rows, L text positions)."""

    input_ids: torch.Tensor  # (B, L) int64: prompt ids + predict_action's suffix + 7 action ids
    attention_mask: torch.Tensor  # (B, L) int64: 0 on the padding
    pixel_values: torch.Tensor  # (B, ...) the processor's images, in the base weights' dtype
    labels: torch.Tensor  # (B, L) int64: the action ids at their positions, else IGNORE_INDEX

    def to(self, device: torch.device) -> VLABatch:
        return VLABatch(*(t.to(device) for t in (self.input_ids, self.attention_mask,
                                                  self.pixel_values, self.labels)))


class SampleEncoder:
    """Observation + action tokens -> the model's training input (what inference feeds it).

    ``suffix``: the ids ``predict_action`` appends to the processor's prompt before it
    generates (``read_suffix``)."""

    def __init__(self, model: VLAModel, processor: Any, suffix: Sequence[int],
                 dtype: torch.dtype, pad_id: int) -> None:
        self.model, self.processor, self.suffix = model, processor, [int(i) for i in suffix]
        self.dtype, self.pad_id = dtype, int(pad_id)

    def features(self, obs: Observation) -> Any:
        """The processor's tensors for ``obs`` (batch of one, CPU), as the backend builds them."""
        from tracevla_ros.policy.vla.hf import processor_inputs

        return processor_inputs(self.processor, prepare_inputs(self.model, obs))

    def encode(self, obs: Observation, action_ids: np.ndarray
               ) -> tuple[list[int], list[int], torch.Tensor]:
        """(input ids, labels, pixel values (1, ...)) of one sample."""
        feats = self.features(obs)
        prompt = [int(i) for i in feats["input_ids"][0].tolist()] + self.suffix
        act = [int(i) for i in np.asarray(action_ids).ravel()]
        if len(act) != ACTION_DIM:
            raise ValueError(f"expected {ACTION_DIM} action ids, got {len(act)}")
        return prompt + act, [IGNORE_INDEX] * len(prompt) + act, feats["pixel_values"]

    def collate(self, rows: list[tuple[list[int], list[int], torch.Tensor]]) -> VLABatch:
        n = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for j, (i, lab, _) in enumerate(rows):
            ids[j, :len(i)] = torch.tensor(i)
            labels[j, :len(lab)] = torch.tensor(lab)
            mask[j, :len(i)] = 1
        px = torch.cat([r[2] for r in rows], dim=0).to(self.dtype)
        return VLABatch(ids, mask, px, labels)


def read_suffix(vla: Any, feats: Any, vocab_size: int, unnorm_key: str | None) -> list[int]:
    """The ids ``vla.predict_action`` appends to the processor's ``input_ids`` before calling
    ``generate`` (run once with a stub generate; nothing is computed)."""
    from tracevla_ros.policy.vla.hf import stubbed_generate

    if not callable(getattr(vla, "predict_action", None)):
        raise ConfigError(f"{type(vla).__name__} has no predict_action; not an OpenVLA-style "
                          "checkpoint")
    seen: list[torch.Tensor] = []
    dev = next(vla.parameters()).device
    dtype = next(vla.parameters()).dtype
    inputs = {k: (v.to(dev, dtype) if v.is_floating_point() else v.to(dev))
              for k, v in feats.items()}
    with torch.inference_mode():
        stubbed_generate(vla, probe_token_ids(vocab_size),
                         lambda: vla.predict_action(**inputs, unnorm_key=unnorm_key,
                                                    do_sample=False), torch, seen=seen)
    got = seen[0][0].tolist()
    prompt = inputs["input_ids"][0].tolist()
    if got[:len(prompt)] != prompt:
        raise ConfigError("the checkpoint's predict_action does not generate from the processor's "
                          f"prompt (ids {prompt[:8]}... became {got[:8]}...); its training "
                          "sequences cannot be built from the inference prompt")
    return [int(i) for i in got[len(prompt):]]


# --- loss ---------------------------------------------------------------------------------


def _text_logits(model: nn.Module, batch: VLABatch) -> torch.Tensor:
    """(B, L, V) logits of the text positions (visual tokens precede the text)."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                pixel_values=batch.pixel_values, use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out[0]
    n = batch.input_ids.shape[1]
    if logits.shape[1] < n:
        raise ValueError(f"the model returned {logits.shape[1]} logits for {n} input ids")
    return logits[:, logits.shape[1] - n:]


def action_token_loss(model: nn.Module, batch: VLABatch) -> torch.Tensor:
    """Mean next-token cross-entropy over the action tokens (labels != IGNORE_INDEX)."""
    logits = _text_logits(model, batch)
    target = batch.labels[:, 1:]
    keep = target != IGNORE_INDEX
    return F.cross_entropy(logits[:, :-1][keep].float(), target[keep])


# --- the task ------------------------------------------------------------------------------


def _centres(token_ids: torch.Tensor, vocab_size: int) -> np.ndarray:
    """(B * 7,) action token ids -> (B, 7) normalised bin centres (the backend's decoding)."""
    ids = token_ids.cpu().numpy().reshape(-1, ACTION_DIM)
    return np.stack([decode_tokens(r, vocab_size) for r in ids])


def _split(samples: VLASamples, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_ep = len(samples.episodes)
    n_val = max(1, int(round(frac * n_ep))) if (frac > 0 and n_ep >= 4) else 0
    val_eps = np.random.default_rng([seed, 7]).choice(n_ep, n_val, replace=False)
    is_val = np.isin(samples.index[:, 0], val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class AdapterTask:
    """What the VLA tasks on the training core share (``LoRATask``, PixelVLA's task): the
    data order (epoch ``e`` visits the training samples in ``default_rng([seed, e])``
    permutation order, ``batch_size`` per step, the last batch of an epoch may be smaller;
    the plan of a step is a function of the step alone, so the data position needs no
    state) and a resumable state of the trainable tensors only, never the frozen base.
    A subclass sets ``what``/``hint`` (for a state that does not fit) and provides
    ``rows(plan)``, ``loss``, ``evaluate`` and ``on_save``."""

    what = "LoRA"
    hint = "same --lora-rank and base?"

    def _init_order(self, samples: "VLASamples", val_fraction: float, seed: int,
                    batch_size: int) -> None:
        self.train_idx, self.val_idx = _split(samples, val_fraction, seed)
        self._seed, self._bs = seed, batch_size
        self.per_epoch = max(1, math.ceil(self.train_idx.size / batch_size))
        self._epoch, self._order = -1, self.train_idx
        self.history: list[dict[str, Any]] = []

    def step_indices(self, step: int) -> np.ndarray:
        """The training sample indices of optimizer step ``step``."""
        epoch, b = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self._seed, epoch]).permutation(self.train_idx)
        return self._order[b * self._bs:(b + 1) * self._bs]

    def rows(self, plan: np.ndarray) -> Any:
        raise NotImplementedError

    def batch(self, plan: np.ndarray, rows: slice) -> Any:
        return self.rows(plan[rows])

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"epoch": self._epoch, "history": self.history}, {}

    def load_state(self, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.history = list(js.get("history", []))

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return trainable_state(model)

    def load_model_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        load_trainable_state(model, state, self.what, self.hint)


def adapter_train_settings(out: str, steps: int, lr: float, grad_clip: float, grad_accum: int,
                           precision: str, log_every: int, save_every: int, resume: bool,
                           progress: bool, desc: str, loss_label: str) -> TrainSettings:
    """The core's settings for an adapter run: constant lr (cosine with min_lr_ratio 1), no
    weight decay, no EMA (it would copy the base), only the trainable state kept."""
    return TrainSettings(
        out=Path(out), steps=steps, lr=lr, weight_decay=0.0, warmup_steps=0, min_lr_ratio=1.0,
        grad_clip=grad_clip, grad_accum=grad_accum, precision=precision, log_every=log_every,
        save_every=save_every, resume="must" if resume else "never", keep_state=False,
        progress=progress, desc=desc, loss_label=loss_label, find_unused_parameters=True)


class LoRATask(AdapterTask):
    """The VLA's part of the training core (``tracetrain.loop.TrainTask``).

    Epoch ``e`` visits the training samples in ``default_rng([seed, e]).permutation``
    order, ``batch_size`` per step (the last batch of an epoch may be smaller); the plan
    of a step is a function of the step alone, so the data position needs no state."""

    def __init__(self, cfg: FinetuneConfig, samples: VLASamples, encoder: SampleEncoder,
                 action_ids: np.ndarray, vocab_size: int, norm_stats: dict[str, Any],
                 device: torch.device, base_info: dict[str, Any]) -> None:
        self.cfg, self.samples, self.encoder, self.device = cfg, samples, encoder, device
        self.action_ids = action_ids  # (N, 7) int64
        self.vocab_size = vocab_size  # the action tokens are the last 256 ids below it
        self.norm_stats = norm_stats  # {unnorm_key: entry}
        self.base_info = base_info
        self._init_order(samples, cfg.val_fraction, cfg.seed, cfg.batch_size)

    # data
    def plan(self, step: int) -> np.ndarray:
        return self.step_indices(step)

    def rows(self, idx: np.ndarray) -> VLABatch:
        """The batch of samples ``idx`` on the device."""
        rows = [self.encoder.encode(self.samples.observation(int(i)), self.action_ids[int(i)])
                for i in idx]
        return self.encoder.collate(rows).to(self.device)

    def loss(self, model: nn.Module, batch: VLABatch) -> torch.Tensor:
        return action_token_loss(model, batch)

    # evaluation and the adapter checkpoint
    @torch.no_grad()
    def evaluate(self, model: nn.Module, idx: np.ndarray) -> dict[str, float]:
        """Teacher-forced action-token accuracy and the mean |error| of the decoded bins
        (normalised units, [-1, 1]) on the samples ``idx``."""
        if idx.size == 0:
            return {}
        was_training = model.training
        model.eval()
        vocab = self.vocab_size
        hit = err = n = 0.0
        dtype = autocast_dtype(self.device, self.cfg.precision)
        for start in range(0, idx.size, self.cfg.batch_size):
            batch = self.rows(idx[start:start + self.cfg.batch_size])
            with autocast(self.device, dtype):
                logits = _text_logits(model, batch)
            target = batch.labels[:, 1:]
            keep = target != IGNORE_INDEX
            pred = logits[:, :-1][keep].argmax(-1)
            tgt = target[keep]
            hit += float((pred == tgt).sum())
            err += float(np.abs(_centres(pred, vocab) - _centres(tgt, vocab)).sum())
            n += float(tgt.numel())
        model.train(was_training)
        return {"val_token_accuracy": hit / n, "val_l1_normalized": err / n}

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        idx = self.val_idx[:self.cfg.eval_samples]
        rec: dict[str, Any] = {"step": ctx.step, "train_loss": ctx.train_loss,
                               "seconds": round(ctx.elapsed_s, 1),
                               **self.evaluate(ctx.model, idx)}
        history = self.history + [rec]
        if not ctx.stopped:
            self.history = history
        _log.info("step %d: %s", ctx.step, rec)
        save_adapter(Path(self.cfg.out), ctx.model, self.norm_stats,
                     self._info(history, ctx.elapsed_s))
        return {k: v for k, v in rec.items() if k.startswith("val_")}

    def _info(self, history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        c = asdict(self.cfg)
        for k in ("out", "resume"):
            c.pop(k)
        c["target_modules"] = (c["target_modules"] if isinstance(c["target_modules"], str)
                               else list(c["target_modules"]))
        return {**self.samples.info, "config": c, "lora_alpha": self.cfg.alpha,
                "base": self.base_info, "unnorm_key": self.cfg.unnorm_key,
                "history": history, "train_seconds": round(seconds, 1),
                "torch": torch.__version__, "files": [ADAPTER_WEIGHTS, ADAPTER_CONFIG, STATS_FILE]}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors of ``model`` (what a resumable state keeps; never the base)."""
    return {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], what: str,
                         hint: str) -> None:
    """Copy ``state`` into the trainable tensors of ``model``: exactly the same names and
    shapes (KeyError / RuntimeError naming ``what`` and ``hint`` otherwise)."""
    own = dict(model.named_parameters())
    want = {k for k, p in own.items() if p.requires_grad}
    if set(state) != want:
        missing, extra = sorted(want - set(state)), sorted(set(state) - want)
        raise KeyError(f"the saved {what} tensors differ from this model's (missing "
                       f"{missing[:3]}, unexpected {extra[:3]}); {hint}")
    with torch.no_grad():
        for k, v in state.items():
            if own[k].shape != v.shape:
                raise RuntimeError(f"{what} tensor {k}: saved {tuple(v.shape)}, model "
                                   f"{tuple(own[k].shape)}")
            own[k].copy_(v)


def save_adapter(out: Path, model: nn.Module, norm_stats: dict[str, Any],
                 info: dict[str, Any]) -> None:
    """PEFT's adapter files, the statistics and ``finetune.json`` into ``out``; each file is
    written under a temporary name first, then renamed (a killed run leaves whole files)."""
    write_adapter_files(out, model)
    write_json(out / STATS_FILE, norm_stats)
    write_json(out / INFO_FILE, {"format": format_tag(FORMAT_NAME, FORMAT_VERSION), **info})


def write_adapter_files(out: Path, model: nn.Module) -> None:
    """PEFT's ``adapter_model.safetensors`` + ``adapter_config.json`` of the PeftModel
    ``model`` into ``out``, each renamed into place from a temporary directory."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".adapter.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # no embedding layers are trained (and "auto" would ask the hub about the base)
        model.save_pretrained(str(tmp), safe_serialization=True,  # type: ignore[operator]
                              save_embedding_layers=False)
        for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- model ----------------------------------------------------------------------------------


def load_base(path: Path, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """(processor, model) of a base checkpoint, loaded as the backend loads it (local files,
    trust_remote_code), weights in ``dtype``, on ``device``."""
    from tracevla_ros.policy.vla.hf import flash_attention_available, import_hf_stack, load_kwargs

    _, transformers = import_hf_stack("tracevla-finetune-vla")
    kw = load_kwargs(PRISMATIC, device.type == "cuda", flash_attention_available())
    kw["torch_dtype"] = dtype
    processor = transformers.AutoProcessor.from_pretrained(str(path), trust_remote_code=True,
                                                           local_files_only=True)
    vla = transformers.AutoModelForVision2Seq.from_pretrained(str(path), **kw).to(device)
    return processor, vla


def add_lora(vla: nn.Module, cfg: FinetuneConfig) -> nn.Module:
    """The PEFT model: LoRA on ``cfg.target_modules``, the base frozen, the LoRA weights in
    float32."""
    from tracevla_ros.policy.vla.hf import import_peft

    peft = import_peft("tracevla-finetune-vla")
    targets: Any = cfg.target_modules if isinstance(cfg.target_modules, str) \
        else list(cfg.target_modules)
    lcfg = peft.LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.alpha, lora_dropout=0.0,
                           target_modules=targets, init_lora_weights="gaussian")
    model = peft.get_peft_model(vla, lcfg)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def check_inputs(cfg: FinetuneConfig) -> Path:
    """Cheap checks before anything heavy: the base checkpoint is complete (the messages name
    --base and every missing file), every --data directory is a dataset with episodes and,
    for a trace model, trace annotations. Returns the base directory."""
    from tracevla_ros.tracking.offline import TRACE_JSON

    try:
        base = validate_checkpoint(resolve_checkpoint(cfg.base))
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("parameter 'checkpoint'", "--base", 1)) from None
    for d in cfg.data:
        try:
            eps = list_episodes(d)
        except DatasetError as exc:
            raise ConfigError(f"--data {d}: {exc}") from None
        if not eps:
            raise ConfigError(f"--data {d}: no episodes (episode_*/data.npz); record some with "
                              "tracevla-collect")
        if MODELS[cfg.model].uses_trace:
            bare = [p.name for p in eps if not (p / TRACE_JSON).is_file()]
            if bare:
                raise ConfigError(f"--data {d}: {len(bare)} episode(s) without traces (e.g. "
                                  f"{bare[0]}); run `tracevla-annotate --data {d}` first, or "
                                  "fine-tune --model openvla (no trace)")
    return base


def build(cfg: FinetuneConfig, device: torch.device) -> tuple[LoRATask, nn.Module]:
    """The task and the PEFT model of ``cfg`` on ``device`` (what ``finetune`` trains): the
    data, its statistics and action tokens, the base with LoRA, the inference prompt suffix."""
    vlam = MODELS[cfg.model]
    base = check_inputs(cfg)
    samples = load_samples(cfg.data, use_trace=vlam.uses_trace)
    norm_stats = {cfg.unnorm_key: compute_norm_stats(samples.actions, len(samples.episodes))}
    stats = select_action_stats(norm_stats, cfg.unnorm_key, "the fine-tuning data")
    try:
        base_key: str | None = next(iter(load_norm_stats(base)))
    except ConfigError:
        base_key = None  # a base without statistics: its predict_action takes no key
    dtype = autocast_dtype(device, cfg.precision) or torch.float32
    seed_everything(cfg.seed)
    processor, vla = load_base(base, device, dtype)
    from tracevla_ros.policy.vla.hf import prismatic_vocab_size

    vocab = prismatic_vocab_size(vla)
    vla.eval()
    suffix = read_suffix(vla, SampleEncoder(vlam, processor, [], dtype, 0).features(
        samples.observation(0)), vocab, base_key)
    pad = getattr(getattr(processor, "tokenizer", None), "pad_token_id", None)
    encoder = SampleEncoder(vlam, processor, suffix, dtype, pad if pad is not None else 0)
    action_ids = encode_actions(normalize(samples.actions, stats), vocab)
    seed_everything(cfg.seed)  # the LoRA initialisation: the same on every rank
    model = add_lora(vla, cfg)
    task = LoRATask(cfg, samples, encoder, action_ids, vocab, norm_stats, device,
                    {"path": str(base), "model": cfg.model, "vocab_size": vocab,
                     "prompt_suffix_ids": suffix, "weights_dtype": str(dtype)})
    return task, model


def train_settings(cfg: FinetuneConfig, progress: bool = True) -> TrainSettings:
    """The core's settings for ``cfg`` (:func:`adapter_train_settings`)."""
    return adapter_train_settings(cfg.out, cfg.steps, cfg.lr, cfg.grad_clip, cfg.grad_accum,
                                  cfg.precision, cfg.log_every, cfg.save_every, cfg.resume,
                                  progress, f"lora {cfg.model}", "action-token cross-entropy")


def finetune(cfg: FinetuneConfig, progress: bool = True,
             stop: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Fine-tune and write the adapter to ``cfg.out``; returns the summary (``stopped`` names
    the reason when ``stop()`` ended the run early: ``--resume`` continues it)."""
    t0 = time.perf_counter()
    with distributed(cfg.device) as (dist, device):
        task, model = build(cfg, device)
        load_s = time.perf_counter() - t0
        result = Trainer(train_settings(cfg, progress), task, model, dist, device).run(stop)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary = {**task.samples.info, "step": result.step, "history": task.history,
               "trainable_parameters": int(n_train), "device": str(device),
               "load_seconds": round(load_s, 1), "train_seconds": round(result.elapsed_s, 1),
               "losses": result.losses}
    if result.stopped:
        summary["stopped"] = result.stopped
    return summary
