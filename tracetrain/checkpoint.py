"""Checkpoints: ``model.safetensors`` + ``config.json`` in one directory, never pickle.

``config.json`` starts with ``"format": "<name>/v<version>"``; the sections
after it belong to the model family (each parses its own with
:func:`tracetrain.config.from_dict`). What this module checks, for every
family, raising ``CheckpointError`` (or the family's subclass, ``error=``)
with the file and the key:

* the path: a pickle file (``.pt`` ...) is refused, a directory must hold both
  files (a path to one of them means its directory);
* ``config.json``: valid JSON, the family's format name and a version this code
  reads (older: "retrain or migrate"; newer: "update the code");
* ``model.safetensors``: readable by safetensors (never ``torch.load``), the
  tensors the network expects (missing / unexpected / wrong shape) and no
  NaN/inf in the tensors named as statistics (normalisation statistics that
  would make every step fail).

Writes go to a temporary name first, then a rename: a killed process never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from tracetrain.errors import CheckpointError

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "PICKLE_SUFFIXES", "format_tag", "checkpoint_dir",
           "read_config", "save_checkpoint", "load_tensors", "check_tensors", "check_finite",
           "write_atomic", "write_json"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


def format_tag(name: str, version: int) -> str:
    return f"{name}/v{version}"


def write_atomic(path: Path, data: bytes | str) -> None:
    """``data`` to ``path`` via a temporary sibling and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    """Strict JSON (NaN is refused: it is not JSON) written atomically."""
    write_atomic(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def _expected(writer: str) -> str:
    return f"expected a directory with {CONFIG_FILE} and {WEIGHTS_FILE} written by {writer}"


def checkpoint_dir(path: str | Path, writer: str,
                   error: type[CheckpointError] = CheckpointError) -> Path:
    """The checkpoint directory of ``path`` (a directory, or its config.json /
    model.safetensors); refuses pickle files and incomplete directories."""
    p = Path(path).expanduser()
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise error(f"checkpoint {p}: pickle files ({p.suffix}) are refused (unpickling runs "
                    f"arbitrary code); {_expected(writer)}")
    if p.is_file() and p.name in (CONFIG_FILE, WEIGHTS_FILE):
        p = p.parent
    if not p.is_dir():
        raise error(f"checkpoint {p} not found or not a directory; {_expected(writer)}")
    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE) if not (p / n).is_file()]
    if missing:
        raise error(f"checkpoint {p}: missing {missing}; {_expected(writer)}")
    return p


def read_config(directory: Path, name: str, version: int, sections: Iterable[str],
                writer: str, error: type[CheckpointError] = CheckpointError) -> dict[str, Any]:
    """The parsed ``config.json`` of ``directory``: format name and version checked, each of
    ``sections`` present as a JSON object."""
    f = Path(directory) / CONFIG_FILE
    try:
        body = json.loads(f.read_text())
    except OSError as exc:
        raise error(f"{f}: cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{f}: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise error(f"{f}: expected a JSON object, got {type(body).__name__}")
    tag = format_tag(name, version)
    got = body.get("format")
    got_name, _, got_ver = str(got).rpartition("/v")
    if got_name != name or not got_ver.isdigit():
        raise error(f"{f}: format {got!r}, this code reads {tag!r}; {_expected(writer)}")
    if int(got_ver) != version:
        hint = ("written by newer code; update this code" if int(got_ver) > version
                else f"written by older code; retrain with this version's {writer}")
        raise error(f"{f}: format {got!r} is version {got_ver}, this code reads version "
                    f"{version} ({tag!r}); {hint}")
    for key in sections:
        if not isinstance(body.get(key), dict):
            raise error(f"{f}: missing the '{key}' section (a JSON object)")
    return body


def save_checkpoint(directory: str | Path, tensors: Mapping[str, torch.Tensor],
                    config: Mapping[str, Any], name: str, version: int) -> Path:
    """Write ``model.safetensors`` (``tensors``, contiguous CPU copies) and ``config.json``
    (``{"format": ..., **config}``) atomically; returns the directory."""
    from safetensors.torch import save

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tag = format_tag(name, version)
    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(out / WEIGHTS_FILE, save(flat, metadata={"format": tag}))
    write_json(out / CONFIG_FILE, {"format": tag, **config})
    return out


def load_tensors(file: Path, error: type[CheckpointError] = CheckpointError
                 ) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (CPU); never unpickles."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"checkpoint {file}: not a readable safetensors file ({exc})") from None


def _head(items: list[str], n: int = 6) -> str:
    return "[" + ", ".join(items[:n]) + (f", +{len(items) - n} more" if len(items) > n else "") + "]"


def check_tensors(file: Path, got: Mapping[str, torch.Tensor],
                  expected: Mapping[str, torch.Tensor], described_by: Path,
                  error: type[CheckpointError] = CheckpointError) -> None:
    """The stored tensors are exactly the ones the network expects (names and shapes)."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shape = sorted(f"{k}: file {tuple(got[k].shape)} vs code {tuple(expected[k].shape)}"
                   for k in set(expected) & set(got)
                   if tuple(got[k].shape) != tuple(expected[k].shape))
    if missing or extra or shape:
        raise error(f"checkpoint {file} does not match the network {described_by} describes: "
                    f"missing {_head(missing)}, unexpected {_head(extra)}, wrong shape "
                    f"{_head(shape)}")


def check_finite(file: Path | str, tensors: Mapping[str, torch.Tensor], names: Iterable[str],
                 error: type[CheckpointError] = CheckpointError) -> None:
    """No NaN/inf in the tensors ``names`` (stored statistics); names absent are skipped."""
    for k in names:
        t = tensors.get(k)
        if t is None or not t.is_floating_point():
            continue
        bad = int((~torch.isfinite(t.float())).sum())
        if bad:
            raise error(f"checkpoint {file}: statistics tensor '{k}' holds {bad} NaN/inf "
                        f"value(s) of {t.numel()}; the data statistics are broken (retrain)")


def check_finite_values(where: str, key: str, values: Iterable[float],
                        error: type[CheckpointError] = CheckpointError) -> None:
    """No NaN/inf in a stored list of statistics (JSON)."""
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise error(f"{where}: key '{key}[{i}]' is {v}; the data statistics are broken "
                        "(retrain)")
