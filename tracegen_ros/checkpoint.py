"""TraceGen checkpoints: ``model.safetensors`` + ``config.json`` in one directory.

Only safetensors is ever read (no ``torch.load``, no pickle): a path to a
``.pt``/``.pth``/``.ckpt``/``.bin``/``.pkl`` file is refused. ``config.json``::

    {"format": "tracegen_ros/checkpoint/v1",
     "config": {...TraceGenConfig fields...},
     "meta": {...free-form facts: data, steps, held-out episodes...}}

The weights of pretrained (frozen) encoders are not stored; they load from
the local directories named in the config (override with ``encoder_paths``).
Loading checks the config against the code (unknown or invalid fields) and
the stored tensors against the model built from it (missing, unexpected,
wrong shape) and raises ``CheckpointError`` naming the differences.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tracevla_ros.config import ConfigError

from tracegen_ros.model.config import TraceGenConfig
from tracegen_ros.model.tracegen import TraceGenModel

__all__ = ["CheckpointError", "FORMAT", "save_checkpoint", "load_checkpoint", "read_config",
           "export_checkpoint",
           "resolve_checkpoint_dir", "MODEL_FILE", "CONFIG_FILE"]

log = logging.getLogger(__name__)

FORMAT = "tracegen_ros/checkpoint/v1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


class CheckpointError(ValueError):
    """A checkpoint is missing, unsafe (pickle), or does not match the code."""


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory for a directory, its model.safetensors or its config.json."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"refusing to load '{p}': pickle-based checkpoints ({', '.join(PICKLE_SUFFIXES)}) can "
            "run arbitrary code; TraceGen loads only a directory with model.safetensors + config.json")
    if p.is_file() and p.name in (MODEL_FILE, CONFIG_FILE):
        p = p.parent
    if not p.is_dir():
        raise CheckpointError(f"TraceGen checkpoint not found: '{p}' is not a directory "
                              f"(expected {MODEL_FILE} + {CONFIG_FILE} inside)")
    for name in (MODEL_FILE, CONFIG_FILE):
        if not (p / name).is_file():
            raise CheckpointError(f"TraceGen checkpoint '{p}' has no {name}")
    return p


def read_config(path: str | Path) -> tuple[TraceGenConfig, dict[str, Any]]:
    """(config, meta) of a checkpoint directory; CheckpointError if it does not fit the code."""
    d = resolve_checkpoint_dir(path)
    try:
        data = json.loads((d / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {d / CONFIG_FILE}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{d / CONFIG_FILE}: format '{got}' is not '{FORMAT}'; "
                              "this checkpoint was not written by this version of tracegen_ros")
    body = data.get("config")
    if not isinstance(body, dict):
        raise CheckpointError(f"{d / CONFIG_FILE}: no 'config' mapping")
    missing = sorted({f.name for f in dataclasses.fields(TraceGenConfig)} - set(body))
    if missing:
        raise CheckpointError(f"checkpoint config does not match the code: {d / CONFIG_FILE} lacks "
                              f"{missing} (written by older code; retrain or add them explicitly)")
    try:
        cfg = TraceGenConfig.from_dict(body, where=str(d / CONFIG_FILE))
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint config does not match the code: {exc}") from None
    meta = data.get("meta", {})
    return cfg, meta if isinstance(meta, dict) else {}


def save_checkpoint(model: TraceGenModel, out_dir: str | Path,
                    meta: Mapping[str, Any] | None = None,
                    state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``model.safetensors`` (``state`` or the model's own state) and ``config.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in (state or model.own_state_dict()).items()}
    tmp = out / (MODEL_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT})
    tmp.replace(out / MODEL_FILE)
    body = {"format": FORMAT, "config": model.cfg.to_dict(), "meta": dict(meta or {})}
    tmpc = out / (CONFIG_FILE + ".tmp")
    tmpc.write_text(json.dumps(body, indent=1))
    tmpc.replace(out / CONFIG_FILE)
    return out


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = True,
                      config_updates: Mapping[str, Any] | None = None,
                      meta_updates: Mapping[str, Any] | None = None) -> Path:
    """Copy a checkpoint for shipping: weights as float16 (``half``; the increment
    statistics stay float32), inference-time config fields updated (checked)."""
    model, meta = load_checkpoint(src)
    if config_updates:
        cfg = TraceGenConfig.from_dict(dict(model.cfg.to_dict(), **config_updates))
        changed = {k for k in config_updates if getattr(cfg, k) != getattr(model.cfg, k)}
        fresh = TraceGenModel(cfg)
        if {k: v.shape for k, v in fresh.own_state_dict().items()} != \
                {k: v.shape for k, v in model.own_state_dict().items()}:
            raise CheckpointError(f"config_updates {sorted(changed)} change the architecture")
        fresh.load_state_dict(model.own_state_dict(), strict=False)
        model = fresh
    state = model.own_state_dict()
    if half:
        state = {k: (v.half() if v.is_floating_point() and not k.startswith("inc_") else v)
                 for k, v in state.items()}
    return save_checkpoint(model, dst, dict(meta, **(meta_updates or {})), state=state)


def _apply_encoder_paths(cfg: TraceGenConfig, paths: Mapping[str, str]) -> TraceGenConfig:
    """Replace local encoder directories by kind ('dinov3', 'siglip', 't5')."""
    rgb = tuple(paths.get(k, p) for k, p in zip(cfg.rgb_encoders, cfg.rgb_encoder_paths))
    dep = tuple(paths.get(k, p) for k, p in zip(cfg.depth_encoders, cfg.depth_encoder_paths))
    txt = paths.get(cfg.text_encoder, cfg.text_encoder_path)
    return cfg.replace(rgb_encoder_paths=rgb, depth_encoder_paths=dep, text_encoder_path=txt)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    encoder_paths: Mapping[str, str] | None = None
                    ) -> tuple[TraceGenModel, dict[str, Any]]:
    """(model in eval mode on ``device``, meta). Raises CheckpointError on any mismatch,
    EncoderUnavailableError when a pretrained encoder's local weights are missing."""
    d = resolve_checkpoint_dir(path)
    cfg, meta = read_config(d)
    if encoder_paths:
        cfg = _apply_encoder_paths(cfg, encoder_paths)
    try:
        tensors = load_file(str(d / MODEL_FILE), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{d / MODEL_FILE} is not a readable safetensors file: {exc}") from None
    model = TraceGenModel(cfg)
    expected = model.own_state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(f"{k}: file {tuple(tensors[k].shape)} vs code {tuple(expected[k].shape)}"
                    for k in set(expected) & set(tensors)
                    if tuple(tensors[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or shapes:
        def head(items: list[str]) -> str:
            return ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {head(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s): {head(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {head(shapes)}")
        raise CheckpointError(f"checkpoint '{d}' does not match the model its config describes "
                              f"(written by different code?): {'; '.join(parts)}")
    model.load_state_dict(tensors, strict=False)
    return model.to(device).eval(), meta
