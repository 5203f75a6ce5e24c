"""Checkpoints of the local policy: ``model.safetensors`` + ``config.json``, never pickle.

Layout of a checkpoint directory::

    CKPT/config.json         {"format": FORMAT, "model": ModelConfig, "transforms":
                              TransformConfig, "training": {...facts, not read back...}}
    CKPT/model.safetensors   the TracePolicyNet state dict (float32 tensors)

Loading reads the tensors with ``safetensors.torch.load_file`` only (no
``torch.load``, so no pickle is ever unpickled). A path that is a pickle file
(``.pt``, ``.pth``, ``.bin``, ``.pkl``, ``.ckpt``), a directory missing either
file, a config of another format, or tensors that do not match the network the
config describes all raise ``CheckpointError`` naming the path and what was
expected.

The shipped checkpoints live in ``tracevla_ros/policy/checkpoints/<name>/``;
``resolve_checkpoint("")`` is the default one (``DEFAULT_CHECKPOINT``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

FORMAT = "tracevla_local_policy/v1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_CHECKPOINT = "widowx_trace"  # the shipped trace-prompted WidowX policy
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


class CheckpointError(ConfigError):
    """A checkpoint path that cannot be loaded; the message names it and what is expected."""


@dataclass
class LocalCheckpoint:
    """A loaded checkpoint: the network in eval mode and its configs."""

    path: Path
    model: Any  # TracePolicyNet (typed Any: torch is imported lazily)
    model_config: Any  # ModelConfig
    transforms: TransformConfig
    training: dict[str, Any] = field(default_factory=dict)


def resolve_checkpoint(path: str | Path) -> Path:
    """``""`` -> the shipped default; a bare shipped name (``widowx_notrace``) -> its
    directory; anything else is taken as a path."""
    text = str(path)
    if not text:
        return CHECKPOINTS_DIR / DEFAULT_CHECKPOINT
    p = Path(text).expanduser()
    if not p.exists() and "/" not in text and (CHECKPOINTS_DIR / text).is_dir():
        return CHECKPOINTS_DIR / text
    return p


def _expected(path: Path) -> str:
    return (f"expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE} written by "
            f"tracevla-train (shipped: {sorted(p.name for p in CHECKPOINTS_DIR.glob('*') if p.is_dir())})")


def save_checkpoint(path: str | Path, model: Any, transforms: TransformConfig,
                    training: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a TracePolicyNet) and its configs to the directory ``path``."""
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    cfg = {"format": FORMAT, "model": model.cfg.to_dict(), "transforms": transforms.to_dict(),
           "training": training or {}}
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a checkpoint directory (checked: format, sections)."""
    p = resolve_checkpoint(path)
    if p.is_file() and p.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(f"checkpoint {p}: pickle files ({p.suffix}) are refused (unpickling "
                              f"runs arbitrary code); {_expected(p)}")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {p} not found or not a directory; {_expected(p)}")
    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE) if not (p / n).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {p}: missing {missing}; {_expected(p)}")
    try:
        cfg = json.loads((p / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {p / CONFIG_FILE}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise CheckpointError(f"checkpoint {p / CONFIG_FILE}: format {got!r}, this code reads "
                              f"{FORMAT!r}; retrain with this version's tracevla-train")
    for key in ("model", "transforms"):
        if not isinstance(cfg.get(key), dict):
            raise CheckpointError(f"checkpoint {p / CONFIG_FILE}: missing the '{key}' section")
    return cfg


def load_checkpoint(path: str | Path, device: str = "cpu") -> LocalCheckpoint:
    """Load a checkpoint directory (safetensors only); raises CheckpointError."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tracevla_ros.policy.local.model import ModelConfig, TracePolicyNet

    p = resolve_checkpoint(path)
    cfg = read_config(p)
    try:
        mcfg = ModelConfig.from_dict(cfg["model"])
        tcfg = TransformConfig.from_dict(cfg["transforms"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {p / CONFIG_FILE} does not match this code's "
                              f"configuration: {exc}") from None
    if (mcfg.image_size != tcfg.image_size or mcfg.max_words != tcfg.max_words
            or mcfg.vocab_size != len(tcfg.vocab) or mcfg.proprio_dim != tcfg.proprio_dim
            or mcfg.action_bins != tcfg.action_bins):
        raise CheckpointError(f"checkpoint {p / CONFIG_FILE}: 'model' and 'transforms' disagree "
                              f"(image size, words, vocabulary, proprio or bins)")
    try:
        state = load_file(str(p / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint {p / WEIGHTS_FILE}: not a readable safetensors file "
                              f"({exc})") from None
    model = TracePolicyNet(mcfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        shape = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])[:5]
        raise CheckpointError(f"checkpoint {p / WEIGHTS_FILE} does not match the network "
                              f"{p / CONFIG_FILE} describes: missing {missing}, unexpected "
                              f"{extra}, wrong shape {shape}")
    model.load_state_dict(state)
    model.to(torch.device(device))
    model.eval()
    return LocalCheckpoint(path=p, model=model, model_config=mcfg, transforms=tcfg,
                           training=dict(cfg.get("training", {})))
