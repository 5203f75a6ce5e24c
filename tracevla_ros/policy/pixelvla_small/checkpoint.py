"""Checkpoints of the small PixelVLA: ``model.safetensors`` + ``config.json`` (never pickle).

``config.json``: ``{"format": "tracevla_pixelvla_small/v1", "model": PixelModelConfig,
"transforms": TransformConfig (the local policy's), "pixel": PixelConfig, "training": {...}}``.
Saving and the checks on loading are the training core's (``tracetrain.checkpoint``), as
for the local policy. A bare name resolves to ``tracevla_ros/policy/checkpoints/<name>``;
``""`` is ``DEFAULT_CHECKPOINT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tracetrain.checkpoint as core
from tracetrain.errors import FieldError

import tracevla_ros.policy.local.checkpoint as local_ckpt
from tracevla_ros.policy.local.checkpoint import CheckpointError
from tracevla_ros.policy.local.transforms import TransformConfig
from tracevla_ros.policy.pixelvla_small.transforms import PixelConfig

__all__ = ["DEFAULT_CHECKPOINT", "PixelCheckpoint", "load_checkpoint", "read_configs",
           "resolve_checkpoint", "save_checkpoint"]

FORMAT_NAME, FORMAT_VERSION = "tracevla_pixelvla_small", 1
DEFAULT_CHECKPOINT = "widowx_pixelvla"
WRITER = "tracevla-train-pixelvla-small"


@dataclass
class PixelCheckpoint:
    path: Path
    model: Any  # PixelVLANet in eval mode
    model_config: Any  # PixelModelConfig
    transforms: TransformConfig
    pixel: PixelConfig
    training: dict[str, Any] = field(default_factory=dict)


def resolve_checkpoint(path: str | Path) -> Path:
    """``""`` -> the shipped ``widowx_pixelvla``; a shipped name -> its directory; else a
    path (the local policy's resolver, with this default)."""
    return local_ckpt.resolve_checkpoint(path, DEFAULT_CHECKPOINT)


def save_checkpoint(path: str | Path, model: Any, transforms: TransformConfig,
                    pixel: PixelConfig, training: dict[str, Any] | None = None) -> Path:
    return core.save_checkpoint(path, model.state_dict(),
                                {"model": model.cfg.to_dict(), "transforms": transforms.to_dict(),
                                 "pixel": pixel.to_dict(), "training": training or {}},
                                FORMAT_NAME, FORMAT_VERSION)


def read_configs(path: str | Path) -> tuple[Path, Any, TransformConfig, PixelConfig, dict[str, Any]]:
    from tracevla_ros.policy.pixelvla_small.model import PixelModelConfig

    p = core.checkpoint_dir(resolve_checkpoint(path), WRITER, CheckpointError)
    cfg = core.read_config(p, FORMAT_NAME, FORMAT_VERSION, ("model", "transforms", "pixel"),
                           WRITER, CheckpointError)
    where = p / core.CONFIG_FILE
    try:
        mcfg = PixelModelConfig.from_dict(cfg["model"], where=f"{where}: model")
        tcfg = TransformConfig.from_dict(cfg["transforms"], where=f"{where}: transforms")
        pcfg = PixelConfig.from_dict(cfg["pixel"], where=f"{where}: pixel")
    except (FieldError, ValueError) as exc:
        raise CheckpointError(str(exc)) from None
    if (mcfg.image_size != tcfg.image_size or mcfg.max_words != tcfg.max_words
            or mcfg.vocab_size != len(tcfg.vocab) or mcfg.proprio_dim != tcfg.proprio_dim
            or mcfg.chunk != pcfg.chunk or mcfg.decoder != pcfg.decoder
            or mcfg.action_bins != tcfg.action_bins):
        raise CheckpointError(f"checkpoint {where}: 'model', 'transforms' and 'pixel' disagree "
                              "(image size, words, vocabulary, proprio, chunk, decoder or bins)")
    training = cfg.get("training", {})
    return p, mcfg, tcfg, pcfg, dict(training) if isinstance(training, dict) else {}


def load_checkpoint(path: str | Path, device: str = "cpu") -> PixelCheckpoint:
    import torch

    from tracevla_ros.policy.pixelvla_small.model import PixelVLANet

    p, mcfg, tcfg, pcfg, training = read_configs(path)
    state = core.load_tensors(p / core.WEIGHTS_FILE, CheckpointError)
    model = PixelVLANet(mcfg)
    core.check_tensors(p / core.WEIGHTS_FILE, state, model.state_dict(), p / core.CONFIG_FILE,
                       CheckpointError)
    core.check_finite(p / core.WEIGHTS_FILE, state, state.keys(), CheckpointError)
    model.load_state_dict(state)
    model.to(torch.device(device)).eval()
    return PixelCheckpoint(p, model, mcfg, tcfg, pcfg, training)
