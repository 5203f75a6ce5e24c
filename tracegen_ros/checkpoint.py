"""TraceGen checkpoints: ``model.safetensors`` + ``config.json`` in one directory.

Only safetensors is ever read (no ``torch.load``, no pickle): a path to a
``.pt``/``.pth``/``.ckpt``/``.bin``/``.pkl`` file is refused. ``config.json``::

    {"format": "tracegen_ros/checkpoint/v1",
     "config": {...TraceGenConfig fields...},
     "meta": {...free-form facts: data, steps, held-out episodes...}}

The weights of pretrained (frozen) encoders are not stored; they load from
the local directories named in the config (override with ``encoder_paths``).
Saving and the checks on loading are the training core's
(``tracetrain.checkpoint``, ``tracetrain.config.from_dict``): the config against
the code (unknown, missing or mistyped keys, format version), the stored tensors
against the model built from it (missing, unexpected, wrong shape) and the
normalisation statistics (no NaN/inf); ``CheckpointError`` names the file and key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

import tracetrain.checkpoint as core
from tracetrain.errors import CheckpointError as CoreCheckpointError

from tracevla_ros.config import ConfigError

from tracegen_ros.model.config import TraceGenConfig
from tracegen_ros.model.tracegen import TraceGenModel

__all__ = ["CheckpointError", "FORMAT", "save_checkpoint", "load_checkpoint", "read_config",
           "export_checkpoint",
           "resolve_checkpoint_dir", "MODEL_FILE", "CONFIG_FILE"]

log = logging.getLogger(__name__)

FORMAT_NAME, FORMAT_VERSION = "tracegen_ros/checkpoint", 1
FORMAT = core.format_tag(FORMAT_NAME, FORMAT_VERSION)
MODEL_FILE = core.WEIGHTS_FILE
CONFIG_FILE = core.CONFIG_FILE


class CheckpointError(CoreCheckpointError):
    """A checkpoint is missing, unsafe (pickle), or does not match the code."""


WRITER = "tracegen-train"
STATS = ("inc_mean", "inc_std")  # normalisation statistics: NaN/inf in them is refused


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory for a directory, its model.safetensors or its config.json."""
    return core.checkpoint_dir(path, WRITER, CheckpointError)


def read_config(path: str | Path) -> tuple[TraceGenConfig, dict[str, Any]]:
    """(config, meta) of a checkpoint directory; CheckpointError if it does not fit the code
    (every key present, known and of its type: ``tracetrain.config.from_dict``)."""
    d = resolve_checkpoint_dir(path)
    data = core.read_config(d, FORMAT_NAME, FORMAT_VERSION, ("config",), WRITER, CheckpointError)
    try:
        cfg = TraceGenConfig.from_dict(data["config"], where=f"{d / CONFIG_FILE}: config",
                                       require_all=True)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint config does not match the code: {exc}") from None
    meta = data.get("meta", {})
    return cfg, meta if isinstance(meta, dict) else {}


def save_checkpoint(model: TraceGenModel, out_dir: str | Path,
                    meta: Mapping[str, Any] | None = None,
                    state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write ``model.safetensors`` (``state`` or the model's own state) and ``config.json``."""
    return core.save_checkpoint(out_dir, state or model.own_state_dict(),
                                {"config": model.cfg.to_dict(), "meta": dict(meta or {})},
                                FORMAT_NAME, FORMAT_VERSION)


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
    tensors = core.load_tensors(d / MODEL_FILE, CheckpointError)
    model = TraceGenModel(cfg)
    core.check_tensors(d / MODEL_FILE, tensors, model.own_state_dict(), d / CONFIG_FILE,
                       CheckpointError)
    core.check_finite(d / MODEL_FILE, tensors, STATS, CheckpointError)
    model.load_state_dict(tensors, strict=False)
    return model.to(device).eval(), meta
