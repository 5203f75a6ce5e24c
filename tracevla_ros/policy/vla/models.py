"""What differs between the published checkpoints, as data plus pure functions.

``MODELS`` names each backend's default repo, model family, input sizes and
whether it takes the trace; ``prepare_inputs`` turns an Observation into the
prompt and images that checkpoint expects (no torch, no transformers), so the
exact values are unit-tested without weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracevla_ros.policy.base import Observation
from tracevla_ros.policy.vla import prompts
from tracevla_ros.policy.vla.images import TRACE_SIZE, prepare_pair, rlds_resize

__all__ = ["VLAModel", "MODELS", "PreparedInputs", "prepare_inputs", "PRISMATIC", "PHI3V"]

PRISMATIC = "prismatic"  # OpenVLA / TraceVLA-7B: AutoModelForVision2Seq, In:/Out: prompts
PHI3V = "phi3v"          # TraceVLA-Phi3V: AutoModelForCausalLM, chat template


@dataclass(frozen=True)
class VLAModel:
    """One published checkpoint family.

    name:         registry name of the backend.
    default_repo: Hugging Face repo id used when ``checkpoint`` is empty (local cache only).
    family:       PRISMATIC or PHI3V (loading code and prompt style).
    uses_trace:   two images (frame, overlay) and the trace prompt when a trace is valid.
    image_size:   px, side of the images handed to the processor.
    """

    name: str
    default_repo: str
    family: str
    uses_trace: bool
    image_size: int


MODELS: dict[str, VLAModel] = {
    "tracevla-7b": VLAModel("tracevla-7b", "furonghuang-lab/tracevla_7b", PRISMATIC, True, TRACE_SIZE),
    "tracevla-phi3": VLAModel("tracevla-phi3", "furonghuang-lab/tracevla_phi3v", PHI3V, True, 336),
    "openvla": VLAModel("openvla", "openvla/openvla-7b", PRISMATIC, False, 224),
}


@dataclass(frozen=True)
class PreparedInputs:
    """The model-side view of one observation.

    prompt:     the text for the processor (Phi3V: already rendered by the chat template).
    images:     list of (S, S, 3) uint8 RGB, S = the model's image_size; 1 or 2 images.
    trace_used: the trace form was used (overlay present and the model takes traces).
    """

    prompt: str
    images: list[np.ndarray]
    trace_used: bool


def prepare_inputs(model: VLAModel, obs: Observation,
                   tokenizer: prompts.ChatTokenizer | None = None) -> PreparedInputs:
    """Prompt and images for ``obs``; ``tokenizer`` (with a chat template) is needed for PHI3V."""
    if not model.uses_trace:
        return PreparedInputs(prompts.openvla_prompt(obs.instruction),
                              [rlds_resize(obs.image, model.image_size)], False)
    has_trace = obs.overlay is not None
    first, second = prepare_pair(obs.image, obs.overlay, TRACE_SIZE)
    if model.family == PHI3V:
        if tokenizer is None:
            raise ValueError("the Phi3V prompt needs the checkpoint's tokenizer (chat template)")
        first336 = rlds_resize(first, model.image_size)
        second336 = rlds_resize(second, model.image_size) if has_trace else first336
        return PreparedInputs(prompts.phi3_prompt(obs.instruction, has_trace, tokenizer),
                              [first336, second336], has_trace)
    return PreparedInputs(prompts.tracevla_prompt(obs.instruction, has_trace), [first, second],
                          has_trace)
