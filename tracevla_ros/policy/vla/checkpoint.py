"""Find a checkpoint on disk (never download) and check that it is complete.

``checkpoint`` is a local directory, or a Hugging Face repo id
(``furonghuang-lab/tracevla_7b``) looked up in the local HF cache
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
``models--<org>--<name>/snapshots/<commit of refs/main>/``. Files there are
symlinks into ``blobs/``; an interrupted download leaves them dangling, which
the completeness check reports as missing.

A complete checkpoint has ``config.json``; its weights (``model.safetensors``
or ``pytorch_model.bin``, or an index ``*.index.json`` plus every shard it
names); the tokenizer (``tokenizer_config.json`` and ``tokenizer.json`` or
``tokenizer.model``); the image processor (``preprocessor_config.json``); and
every ``trust_remote_code`` module named in ``config.json``'s ``auto_map``.

A LoRA adapter (``tracevla-finetune-vla``) is a directory with the PEFT files
``adapter_config.json`` + ``adapter_model.safetensors`` and the action
statistics of its training data, ``dataset_statistics.json``
(``validate_adapter``); pickle weights (``adapter_model.bin``) are refused.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from tracevla_ros.config import ConfigError

__all__ = ["hf_cache_dir", "resolve_checkpoint", "missing_files", "validate_checkpoint",
           "EXPECTED_FILES", "ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "ADAPTER_FILES",
           "validate_adapter"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
EXPECTED_FILES = ("config.json", "model.safetensors | pytorch_model.bin | *.index.json + shards",
                  "tokenizer_config.json", "tokenizer.json | tokenizer.model",
                  "preprocessor_config.json", "the auto_map modules (*.py)")
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's names (PeftModel.save_pretrained)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "dataset_statistics.json")


def hf_cache_dir() -> Path:
    """The local Hugging Face hub cache, following the HF environment variables."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface"
    return base / "hub"


def _looks_local(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or Path(spec).expanduser().exists() \
        or not _REPO_ID.match(spec)


def resolve_checkpoint(spec: str, default_repo: str = "") -> Path:
    """The checkpoint directory for a local path or a repo id in the HF cache (offline).

    ``spec`` empty -> ``default_repo``. ConfigError says where it looked.
    """
    spec = spec.strip() or default_repo
    if not spec:
        raise ConfigError("parameter 'checkpoint': empty; give a local checkpoint directory or a "
                          "Hugging Face repo id present in the local cache")
    if _looks_local(spec):
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise ConfigError(f"parameter 'checkpoint': {path} is not a directory (expected a "
                              f"checkpoint folder with {', '.join(EXPECTED_FILES)})")
        return path.resolve()
    org, name = spec.split("/")
    repo = hf_cache_dir() / f"models--{org}--{name}"
    hint = (f"fetch it once on a machine with network access (e.g. `huggingface-cli download "
            f"{spec}`) and copy the cache, or pass a local directory; nothing is downloaded at run time")
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        raise ConfigError(f"parameter 'checkpoint': '{spec}' is not in the local Hugging Face cache "
                          f"(no {snapshots}); {hint}")
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = snapshots / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(snaps) == 1:
        return snaps[0]
    raise ConfigError(f"parameter 'checkpoint': cannot pick a snapshot of '{spec}' in {snapshots} "
                      f"(refs/main missing or stale, {len(snaps)} snapshots); pass the snapshot "
                      "directory itself")


def _present(path: Path) -> bool:
    """True for a non-empty file (a dangling HF-cache symlink is not present)."""
    return path.is_file() and path.stat().st_size > 0


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"checkpoint file {path} is unreadable: {exc}") from exc


def missing_files(ckpt: Path, need_processor: bool = True) -> list[str]:
    """Names of the files a complete checkpoint needs that ``ckpt`` lacks (empty = complete)."""
    missing: list[str] = []
    cfg_path = ckpt / "config.json"
    cfg = _read_json(cfg_path) if _present(cfg_path) else None
    if cfg is None:
        missing.append("config.json")
    if not any(_present(ckpt / w) for w in WEIGHT_FILES):
        index = next((ckpt / i for i in WEIGHT_INDEXES if _present(ckpt / i)), None)
        if index is None:
            missing.append(" or ".join(WEIGHT_FILES + WEIGHT_INDEXES))
        else:
            weight_map = _read_json(index).get("weight_map", {})
            shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
            if not shards:
                missing.append(f"the shards of {index.name} (its weight_map is empty)")
            missing += [s for s in shards if not _present(ckpt / s)]
    if need_processor:
        if not _present(ckpt / "tokenizer_config.json"):
            missing.append("tokenizer_config.json")
        if not (_present(ckpt / "tokenizer.json") or _present(ckpt / "tokenizer.model")):
            missing.append("tokenizer.json or tokenizer.model")
        if not _present(ckpt / "preprocessor_config.json"):
            missing.append("preprocessor_config.json")
    auto_map = cfg.get("auto_map", {}) if isinstance(cfg, dict) else {}
    refs: list[str] = []
    for value in (auto_map.values() if isinstance(auto_map, dict) else []):
        refs += value if isinstance(value, list) else [value]
    for ref in refs:
        if not isinstance(ref, str) or not ref:
            continue
        if "--" in ref:
            missing.append(f"{ref} (auto_map points into another repository; copy that code here)")
            continue
        module = ref.rsplit(".", 1)[0]
        if not _present(ckpt / f"{module}.py"):
            missing.append(f"{module}.py")
    return sorted(set(missing), key=missing.index)


def validate_checkpoint(ckpt: Path, need_processor: bool = True) -> Path:
    """``ckpt`` if complete, else one ConfigError naming the directory and every missing file."""
    missing = missing_files(ckpt, need_processor)
    if missing:
        raise ConfigError(f"parameter 'checkpoint': {ckpt} is incomplete; missing: "
                          f"{', '.join(missing)} (a checkpoint needs {', '.join(EXPECTED_FILES)})")
    return ckpt


def validate_adapter(spec: str, key: str = "adapter") -> Path:
    """The LoRA adapter directory ``spec`` if it holds ``ADAPTER_FILES``, else one ConfigError
    naming parameter ``key``, the directory and every missing file."""
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ConfigError(f"parameter '{key}': {path} is not a directory (expected a LoRA adapter "
                          f"written by tracevla-finetune-vla: {', '.join(ADAPTER_FILES)})")
    missing = [n for n in ADAPTER_FILES if not _present(path / n)]
    if missing:
        pickle = " (adapter_model.bin is a pickle file and is not loaded)" \
            if ADAPTER_WEIGHTS in missing and (path / "adapter_model.bin").exists() else ""
        raise ConfigError(f"parameter '{key}': {path} is incomplete; missing: {', '.join(missing)}"
                          f"{pickle} (an adapter written by tracevla-finetune-vla has "
                          f"{', '.join(ADAPTER_FILES)})")
    return path.resolve()
