"""Checkpoints of the local policy: ``model.safetensors`` + ``config.json``, never pickle.

Layout of a checkpoint directory::

    CKPT/config.json         {"format": FORMAT, "model": ModelConfig, "transforms":
                              TransformConfig, "training": {...facts, not read back...}}
    CKPT/model.safetensors   the TracePolicyNet state dict (float32 tensors)

Saving and the checks on loading are the training core's
(``tracetrain.checkpoint``, ``tracetrain.config.from_dict``): safetensors only
(no pickle is ever unpickled); a pickle file, a directory missing either file,
a config of another format or version, a key of a wrong type, unknown or
missing, non-finite statistics, or tensors that do not match the network the
config describes all raise ``CheckpointError`` naming the file and the key.

The shipped checkpoints live in ``tracevla_ros/policy/checkpoints/<name>/``;
``resolve_checkpoint("")`` is the default one (``DEFAULT_CHECKPOINT``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tracetrain.checkpoint as core
from tracetrain.errors import CheckpointError as CoreCheckpointError
from tracetrain.errors import FieldError

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.local.transforms import TransformConfig

__all__ = [
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "CheckpointError",
    "DEFAULT_CHECKPOINT",
    "FORMAT",
    "LocalCheckpoint",
    "WEIGHTS_FILE",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT_NAME, FORMAT_VERSION = "tracevla_local_policy", 1
FORMAT = core.format_tag(FORMAT_NAME, FORMAT_VERSION)
CONFIG_FILE = core.CONFIG_FILE
WEIGHTS_FILE = core.WEIGHTS_FILE
CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = "widowx_trace"  # the shipped trace-prompted WidowX policy


class CheckpointError(ConfigError, CoreCheckpointError):
    """A checkpoint path that cannot be loaded; the message names it and what is expected."""


@dataclass
class LocalCheckpoint:
    """A loaded checkpoint: the network in eval mode and its configs."""

    path: Path
    model: Any  # TracePolicyNet (typed Any: torch is imported lazily)
    model_config: Any  # ModelConfig
    transforms: TransformConfig
    training: dict[str, Any] = field(default_factory=dict)


def resolve_checkpoint(path: str | Path, default: str = DEFAULT_CHECKPOINT) -> Path:
    """``""`` -> the shipped ``default``; a bare shipped name (``widowx_notrace``) -> its
    directory; anything else is taken as a path."""
    text = str(path)
    if not text:
        return CHECKPOINTS_DIR / default
    p = Path(text).expanduser()
    if not p.exists() and "/" not in text and (CHECKPOINTS_DIR / text).is_dir():
        return CHECKPOINTS_DIR / text
    return p


WRITER = "tracevla-train"


def save_checkpoint(path: str | Path, model: Any, transforms: TransformConfig,
                    training: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a TracePolicyNet) and its configs to the directory ``path``."""
    return core.save_checkpoint(path, model.state_dict(),
                                {"model": model.cfg.to_dict(), "transforms": transforms.to_dict(),
                                 "training": training or {}}, FORMAT_NAME, FORMAT_VERSION)


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a checkpoint directory (checked: format, sections)."""
    p = core.checkpoint_dir(resolve_checkpoint(path), WRITER, CheckpointError)
    return core.read_config(p, FORMAT_NAME, FORMAT_VERSION, ("model", "transforms"), WRITER,
                            CheckpointError)


def read_configs(path: str | Path) -> tuple[Path, Any, TransformConfig, dict[str, Any]]:
    """(directory, ModelConfig, TransformConfig, training facts); every key and value checked
    (types, ranges, finite statistics), CheckpointError naming the file and the key."""
    from tracevla_ros.policy.local.model import ModelConfig

    p = core.checkpoint_dir(resolve_checkpoint(path), WRITER, CheckpointError)
    cfg = read_config(p)
    where = p / CONFIG_FILE
    try:
        mcfg = ModelConfig.from_dict(cfg["model"], where=f"{where}: model")
        tcfg = TransformConfig.from_dict(cfg["transforms"], where=f"{where}: transforms")
    except FieldError as exc:
        raise CheckpointError(str(exc)) from None
    if (mcfg.image_size != tcfg.image_size or mcfg.max_words != tcfg.max_words
            or mcfg.vocab_size != len(tcfg.vocab) or mcfg.proprio_dim != tcfg.proprio_dim
            or mcfg.action_bins != tcfg.action_bins):
        raise CheckpointError(f"checkpoint {where}: 'model' and 'transforms' disagree "
                              f"(image size, words, vocabulary, proprio or bins)")
    training = cfg.get("training", {})
    return p, mcfg, tcfg, dict(training) if isinstance(training, dict) else {}


def load_checkpoint(path: str | Path, device: str = "cpu") -> LocalCheckpoint:
    """Load a checkpoint directory (safetensors only); raises CheckpointError."""
    import torch

    from tracevla_ros.policy.local.model import TracePolicyNet

    p, mcfg, tcfg, training = read_configs(path)
    state = core.load_tensors(p / WEIGHTS_FILE, CheckpointError)
    model = TracePolicyNet(mcfg)
    core.check_tensors(p / WEIGHTS_FILE, state, model.state_dict(), p / CONFIG_FILE,
                       CheckpointError)
    core.check_finite(p / WEIGHTS_FILE, state, state.keys(), CheckpointError)
    model.load_state_dict(state)
    model.to(torch.device(device))
    model.eval()
    return LocalCheckpoint(path=p, model=model, model_config=mcfg, transforms=tcfg,
                           training=training)
