"""Backend ``pixelvla-7b``: an OpenVLA checkpoint plus the PixelVLA parts (no rclpy).

Parameters (``PolicyNodeConfig``): ``checkpoint`` = the OpenVLA base (local
directory or HF repo id in the local cache; '' = ``openvla/openvla-7b`` from
the cache), ``pixelvla_parts`` = a ``tracevla-train-pixelvla`` output
(``config.json``, ``model.safetensors``, ``dataset_statistics.json``; stage 2
also ``adapter_model.safetensors`` + ``adapter_config.json``), ``adapter`` =
another directory holding that LoRA adapter ('' = the parts directory's
own), ``merge_adapter``, ``unnorm_key`` (the parts' statistics; their only
entry when the key is not there), ``device``. Every missing file is named in
one ConfigError before any weights are read.

``infer(obs)`` uses ``obs.prompt`` (None = no prompt tokens, no pixel tokens)
and returns the whole chunk: ``ActionChunk`` of (8, 7) ``ee_delta_7d``
actions, the motion dimensions clipped to [-1, 1] in the normalised space and
unnormalised with the parts' statistics, the gripper (sigmoid) in [0, 1].
Parts trained in stage 1 never saw a prompt: a prompt given to them is
dropped (logged once).

Example (GPU machine)::

    tracevla-serve --backend pixelvla-7b --checkpoint openvla/openvla-7b \\
        --pixelvla-parts runs/pixelvla_stage2
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import ActionChunk, Observation, PolicyError, validate_chunk
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.vla.actions import GRIPPER_DIM, unnormalize
from tracevla_ros.policy.vla.checkpoint import resolve_checkpoint, validate_checkpoint
from tracevla_ros.policy.vla.stats import load_norm_stats, select_action_stats

__all__ = ["PixelVLAPolicy", "make_pixelvla_7b", "DEFAULT_BASE"]

log = logging.getLogger(__name__)
DEFAULT_BASE = "openvla/openvla-7b"


def _parts_dirs(cfg: PolicyNodeConfig) -> tuple[Path, Path | None, dict[str, Any]]:
    """(parts dir, adapter dir or None, parts config.json) after the file checks."""
    from tracevla_ros.policy.pixelvla.model import (
        PARTS_FILES,
        STAGE2_FILES,
        missing_parts_files,
        read_parts_config,
    )

    spec = cfg.pixelvla_parts.strip()
    if not spec:
        raise ConfigError("parameter 'pixelvla_parts': empty; backend pixelvla-7b needs the "
                          f"directory written by tracevla-train-pixelvla ({', '.join(PARTS_FILES)})")
    parts = Path(spec).expanduser()
    if not parts.is_dir():
        raise ConfigError(f"parameter 'pixelvla_parts': {parts} is not a directory (expected "
                          f"{', '.join(PARTS_FILES)} from tracevla-train-pixelvla)")
    missing = missing_parts_files(parts, None)
    if missing:
        raise ConfigError(f"parameter 'pixelvla_parts': {parts} is incomplete; missing: "
                          f"{', '.join(missing)} (tracevla-train-pixelvla writes "
                          f"{', '.join(PARTS_FILES)}, stage 2 also {', '.join(STAGE2_FILES)})")
    body = read_parts_config(parts)
    stage = int(body.get("stage", 1))
    adapter: Path | None = None
    if stage == 2:
        adapter = Path(cfg.adapter).expanduser() if cfg.adapter.strip() else parts
        missing = missing_parts_files(parts, adapter)
        if missing:
            raise ConfigError(f"parameter '{'adapter' if cfg.adapter.strip() else 'pixelvla_parts'}"
                              f"': stage-2 parts {parts} need their LoRA adapter; missing: "
                              f"{', '.join(missing)}")
    elif cfg.adapter.strip():
        raise ConfigError(f"parameter 'adapter': {parts} holds stage-1 parts (no LoRA was "
                          "trained); leave 'adapter' empty")
    return parts.resolve(), adapter, body


class PixelVLAPolicy:
    """PixelVLA behind the Policy interface (an 8-step chunk per call)."""

    name = "pixelvla-7b"

    def __init__(self, cfg: PolicyNodeConfig) -> None:
        ckpt = validate_checkpoint(resolve_checkpoint(cfg.checkpoint, DEFAULT_BASE))
        parts, adapter, body = _parts_dirs(cfg)
        norm_stats = load_norm_stats(parts)
        key = cfg.unnorm_key
        if key not in norm_stats and len(norm_stats) == 1:
            key = next(iter(norm_stats))
            log.info("%s: using the parts' statistics '%s'", self.name, key)
        self.stats = select_action_stats(norm_stats, key, str(parts))
        self.stage = int(body.get("stage", 1))
        from tracevla_ros.policy.vla.hf import import_hf_stack, resolve_device

        torch, _ = import_hf_stack(self.name)
        self._torch = torch
        self.device = resolve_device(cfg.device, torch)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        t0 = time.monotonic()
        from tracevla_ros.policy.pixelvla.model import InputBuilder, load_llm_adapter, load_parts
        from tracevla_ros.policy.vla.finetune import load_base

        processor, vla = load_base(ckpt, torch.device(self.device), dtype)
        self.model, _ = load_parts(parts, vla)
        if adapter is not None:
            load_llm_adapter(self.model, adapter, cfg.merge_adapter)
        for m in self.model.parts().values():
            m.to(self.device, dtype)
        self.model.eval()
        self.builder = InputBuilder(processor, self.model.cfg.mask_size, dtype)
        self._warned = False
        log.info("%s: loaded %s + parts %s (stage %d%s) in %.1f s on %s (%s)", self.name, ckpt,
                 parts, self.stage, f", adapter {adapter}" if adapter else "",
                 time.monotonic() - t0, self.device, dtype)

    def predict_normalized(self, obs: Observation) -> np.ndarray:
        """(chunk, 7) actions in the normalised space, straight from the head."""
        if obs.prompt is not None and self.stage == 1:
            if not self._warned:
                log.warning("%s: stage-1 parts were trained without prompts; ignoring the "
                            "visual prompt", self.name)
                self._warned = True
            obs = replace(obs, prompt=None)
        batch = self.builder.batch([obs]).to(self.device)
        try:
            with self._torch.inference_mode():
                out = self.model(batch)
        except (RuntimeError, ValueError) as exc:
            raise PolicyError(f"{self.name} inference failed: {type(exc).__name__}: {exc}") from exc
        return out[0].float().cpu().numpy().astype(np.float64)

    def infer(self, obs: Observation) -> ActionChunk:
        raw = self.predict_normalized(obs)
        if not np.all(np.isfinite(raw)):
            raise PolicyError(f"{self.name}: the model output is not finite; no action is sent")
        motion = np.clip(raw, -1.0, 1.0)
        values = np.stack([unnormalize(r, self.stats) for r in motion])
        values[:, GRIPPER_DIM] = np.clip(raw[:, GRIPPER_DIM], 0.0, 1.0)
        return validate_chunk(ActionChunk(values=values.astype(np.float32)))

    def reset(self) -> None:
        """Stateless per step."""


def make_pixelvla_7b(cfg: PolicyNodeConfig) -> PixelVLAPolicy:
    return PixelVLAPolicy(cfg)
