"""The ``pixelvla`` policy backend: the small PixelVLA trained by ``tracevla-train-pixelvla-small``.

``make(cfg)`` is registered in ``tracevla_ros.policy.registry.BACKENDS`` as
``"pixelvla"``. ``cfg.checkpoint``: a checkpoint directory, a shipped name, or ``""`` =
the shipped ``widowx_pixelvla``.

Per step (``infer``): ``obs.prompt`` (a :class:`VisualPrompt` on the target, or None = the
no-prompt form) is rasterised into the prompt channel, the frame, instruction and proprio
go through the local policy's transforms, one forward pass gives a chunk of
``pixel.chunk`` (8) actions, decoded (continuous or 256-bin) and validated. The whole
chunk is returned (``ActionChunk`` (8, 7)); how many of its steps run is the executor's
choice (``tracevla_ros.control.chunking``). ``obs.overlay`` is ignored.

Example::

    policy = PixelVLAPolicy("")                   # the shipped default
    chunk = policy.infer(Observation(image, None, "pick up the cube", proprio, prompt=p))
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch


from tracevla_ros.policy.base import EE_DELTA_7D, ActionChunk, Observation, validate_chunk
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.local.backend import check_instruction, inference_device
from tracevla_ros.policy.pixelvla_small.checkpoint import PixelCheckpoint, load_checkpoint
from tracevla_ros.policy.pixelvla_small.transforms import (
    PixelInputs,
    decode_output,
    observation_to_inputs,
)

__all__ = ["PixelVLAPolicy", "make"]

_log = logging.getLogger(__name__)


class PixelVLAPolicy:
    """``Policy`` over a ``PixelVLANet`` checkpoint (stateless between steps)."""

    name = "pixelvla"

    def __init__(self, checkpoint: str | Path = "", device: str = "auto",
                 num_threads: int = 1) -> None:
        self.device = inference_device(device, num_threads)
        self.checkpoint: PixelCheckpoint = load_checkpoint(checkpoint, device=str(self.device))
        self.transforms = self.checkpoint.transforms
        self.pixel = self.checkpoint.pixel
        self._known = set(self.transforms.vocab[2:])
        self._instructions = list(self.checkpoint.training.get("instructions", []))
        _log.info("pixelvla policy %s (%s decoder, chunk %d) on %s", self.checkpoint.path,
                  self.pixel.decoder, self.pixel.chunk, self.device)

    def inputs(self, obs: Observation) -> PixelInputs:
        check_instruction(obs.instruction, self._known, self._instructions)
        return observation_to_inputs(obs.image, obs.prompt, obs.instruction, obs.proprio,
                                     self.transforms, self.pixel)

    @torch.inference_mode()
    def output(self, x: PixelInputs) -> np.ndarray:
        dev = self.device
        t = [torch.from_numpy(a).unsqueeze(0).to(dev) for a in (x.image, x.prompt, x.words,
                                                                  x.proprio)]
        out: np.ndarray = self.checkpoint.model(*t)[0].float().cpu().numpy()
        return out

    def infer(self, obs: Observation) -> ActionChunk:
        actions = decode_output(self.output(self.inputs(obs)), self.transforms, self.pixel)
        return validate_chunk(ActionChunk(values=actions, action_space=EE_DELTA_7D))

    def reset(self) -> None:
        """Nothing to forget (the chunk executor holds the chunks)."""


def make(cfg: PolicyNodeConfig) -> PixelVLAPolicy:
    """Factory for ``policy_node`` (registry entry ``pixelvla``)."""
    return PixelVLAPolicy(cfg.checkpoint, cfg.device)
