"""The ``local`` policy backend: the small trace-prompted network trained by ``tracevla-train``.

``make(cfg)`` is registered in ``tracevla_ros.policy.registry.BACKENDS`` as
``"local"``. ``cfg.checkpoint`` is a checkpoint directory (config.json +
model.safetensors), a shipped name (``widowx_trace``, ``widowx_notrace``) or
``""`` = the shipped default ``widowx_trace``.

Per step (``infer``): the observation goes through ``transforms.observation_to_inputs``
(the trainer's own transforms), one forward pass, ``transforms.decode_logits``
(256-bin arg-max -> ee_delta_7d) and ``validate_chunk``. Bad input raises
``PolicyError`` and no action is produced: an empty or unknown-word
instruction, a frame of another size than the training frames, a non-uint8 or
non-RGB frame, proprio of the wrong length, NaN/inf in the model output.

Example::

    from tracevla_ros.policy.local.backend import LocalPolicy
    policy = LocalPolicy("")                       # the shipped default
    chunk = policy.infer(Observation(image, overlay, "pick up the red cube", proprio))
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from tracetrain.device import resolve_device
from tracetrain.errors import SettingsError

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import EE_DELTA_7D, ActionChunk, Observation, PolicyError, validate_chunk
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.local.checkpoint import LocalCheckpoint, load_checkpoint
from tracevla_ros.policy.local.transforms import (
    ModelInputs,
    decode_logits,
    observation_to_inputs,
    tokenize,
)

__all__ = ["LocalPolicy", "make"]

_log = logging.getLogger(__name__)


def inference_device(device: str, num_threads: int) -> torch.device:
    """The torch device of a small policy (``ConfigError`` naming ``device`` when it is
    unknown or absent); ``num_threads`` > 0 sets torch's intra-op threads for the process."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    try:
        return resolve_device(device)
    except SettingsError as exc:
        raise ConfigError(f"parameter 'device': {exc}") from None


def check_instruction(text: str, known_words: set[str], instructions: list[str]) -> None:
    """PolicyError when none of the words of ``text`` was in the training instructions (the
    network never saw such an instruction; its output would mean nothing)."""
    words = tokenize(text)
    if words and not any(w in known_words for w in words):
        raise PolicyError(f"none of the words of the instruction {text!r} were in this "
                          f"checkpoint's training instructions {instructions}")


class LocalPolicy:
    """``Policy`` over a ``TracePolicyNet`` checkpoint (stateless between steps).

    ``num_threads`` sets torch's intra-op threads for the whole process
    (``torch.set_num_threads``): 1 by default, the fastest for batch-1 inference
    of this small network and it leaves the other cores to the tracker and sim;
    0 keeps torch's default.
    """

    name = "local"

    def __init__(self, checkpoint: str | Path = "", device: str = "auto",
                 num_threads: int = 1) -> None:
        self.device = inference_device(device, num_threads)
        self.checkpoint: LocalCheckpoint = load_checkpoint(checkpoint, device=str(self.device))
        self.transforms = self.checkpoint.transforms
        known = set(self.transforms.vocab[2:])
        self._known_words = known
        self._instructions = list(self.checkpoint.training.get("instructions", []))
        _log.info("local policy %s (%s, trace %s) on %s", self.checkpoint.path,
                  f"{sum(p.numel() for p in self.checkpoint.model.parameters())} parameters",
                  "on" if self.transforms.use_trace else "off (baseline)", self.device)

    @property
    def use_trace(self) -> bool:
        return self.transforms.use_trace

    def inputs(self, obs: Observation) -> ModelInputs:
        """The model inputs for ``obs`` (validated); PolicyError on bad input."""
        check_instruction(obs.instruction, self._known_words, self._instructions)
        return observation_to_inputs(obs.image, obs.overlay, obs.instruction, obs.proprio,
                                     self.transforms)

    @torch.inference_mode()
    def logits(self, x: ModelInputs) -> np.ndarray:
        """(7, action_bins) logits for one sample."""
        dev = self.device
        images = torch.from_numpy(x.images).unsqueeze(0).to(dev)
        words = torch.from_numpy(x.words).unsqueeze(0).to(dev)
        proprio = torch.from_numpy(x.proprio).unsqueeze(0).to(dev)
        out: np.ndarray = self.checkpoint.model(images, words, proprio)[0].float().cpu().numpy()
        return out

    def infer(self, obs: Observation) -> ActionChunk:
        x = self.inputs(obs)
        action = decode_logits(self.logits(x), self.transforms)
        used = bool(self.transforms.use_trace and obs.overlay is not None)
        return validate_chunk(ActionChunk(values=action, action_space=EE_DELTA_7D, trace_used=used))

    def reset(self) -> None:
        """Nothing to forget: one action per observation, no recurrent state."""


def make(cfg: PolicyNodeConfig) -> LocalPolicy:
    """Factory for ``policy_node`` (registry entry ``local``)."""
    return LocalPolicy(cfg.checkpoint, cfg.device)
