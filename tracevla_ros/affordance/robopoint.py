"""Backend ``robopoint-hf``: RoboPoint/TRACE-format models through transformers (no rclpy).

RoboPoint is LLaVA-1.5 (CLIP ViT-L/14-336 penultimate features, a 2-layer MLP
projector, Vicuna-v1.5). This backend loads the **HF-llava format**
(``LlavaForConditionalGeneration`` + its processor: ``config.json`` with
``model_type: llava``, weights, tokenizer, ``preprocessor_config.json``) from a
local directory, never downloading. The released RoboPoint checkpoints are in
the original LLaVA repository's format (``LlavaLlamaForCausalLM`` with
``mm_projector`` weights and ``mm_vision_tower`` naming a CLIP checkpoint);
they must be converted to HF-llava first (transformers'
``convert_llava_weights_to_hf`` script does it for LLaVA-1.5), and loading one
unconverted says so rather than failing deep inside transformers.

The query is RoboPoint's: the ``llava_v1`` conversation template, the image
token then the instruction followed by ``SUFFIX``; sampling at temperature 0.2
(seeded per request), ``max_new_tokens`` tokens at most.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.affordance.backend import AffordanceError, AffordanceResult, check_image, \
    result_from_text
from tracevla_ros.config import ConfigError

__all__ = ["SUFFIX", "SYSTEM", "build_prompt", "checkpoint_format", "RoboPointHF", "make",
           "TEMPERATURE"]

SUFFIX = (" Your answer should be formatted as a list of tuples, i.e. [(x1, y1), (x2, y2), ...],"
          " where each tuple contains the x and y coordinates of a point satisfying the conditions"
          " above. The coordinates should be between 0 and 1, indicating the normalized pixel"
          " locations of the points in the image.")
# llava_v1 (conv_vicuna_v1): system prompt, roles USER / ASSISTANT, separators " " and "</s>"
SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the human's questions.")
IMAGE_TOKEN = "<image>"
TEMPERATURE = 0.2


def build_prompt(instruction: str, image_token: str = IMAGE_TOKEN) -> str:
    """The llava_v1 prompt of one question: ``SYSTEM USER: <image>\\nQ+SUFFIX ASSISTANT:``."""
    question = instruction.strip() + SUFFIX
    return f"{SYSTEM} USER: {image_token}\n{question} ASSISTANT:"


def checkpoint_format(path: Path) -> str:
    """``hf-llava`` when ``path`` holds an HF-llava checkpoint; AffordanceError naming what is
    missing (or that it is in the original LLaVA format) otherwise."""
    cfg_file = path / "config.json"
    if not path.is_dir() or not cfg_file.is_file():
        raise AffordanceError(f"RoboPoint checkpoint {path}: no config.json there; give a local "
                              "directory with an HF-llava checkpoint (weights are never downloaded)")
    cfg = json.loads(cfg_file.read_text())
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") == "llava" and "LlavaForConditionalGeneration" in archs:
        missing = [n for n in ("preprocessor_config.json", "tokenizer_config.json")
                   if not (path / n).is_file()]
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            missing.append("model weights (*.safetensors)")
        if missing:
            raise AffordanceError(f"RoboPoint checkpoint {path} (HF-llava format) lacks {missing}")
        return "hf-llava"
    if "LlavaLlamaForCausalLM" in archs or "mm_projector_type" in cfg or "mm_vision_tower" in cfg:
        raise AffordanceError(
            f"RoboPoint checkpoint {path} is in the original LLaVA repository format "
            f"(architectures {archs}, mm_projector / mm_vision_tower '{cfg.get('mm_vision_tower')}'); "
            "this backend loads the HF-llava format (LlavaForConditionalGeneration): convert it "
            "with transformers' convert_llava_weights_to_hf first")
    raise AffordanceError(f"RoboPoint checkpoint {path}: model_type {cfg.get('model_type')!r}, "
                          f"architectures {archs}; expected an HF-llava LlavaForConditionalGeneration")


class RoboPointHF:
    """A local HF-llava RoboPoint-style model answering one question at a time."""

    def __init__(self, path: str | Path, device: str = "cpu", max_new_tokens: int = 256,
                 temperature: float = TEMPERATURE, seed: int = 0) -> None:
        import torch
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        p = Path(path).expanduser()
        self.format = checkpoint_format(p)
        self.processor = AutoProcessor.from_pretrained(str(p), local_files_only=True)
        dtype = torch.float32 if device == "cpu" else torch.float16
        self.model = LlavaForConditionalGeneration.from_pretrained(
            str(p), local_files_only=True, torch_dtype=dtype).to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens
        self.temperature, self.seed = temperature, seed
        self.name = f"robopoint-hf:{p.name}"

    def generate_text(self, image: np.ndarray, instruction: str) -> str:
        import torch
        from PIL import Image

        prompt = build_prompt(instruction)
        inputs = self.processor(text=prompt, images=Image.fromarray(image), return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        torch.manual_seed(self.seed)
        sample = self.temperature > 0
        with torch.no_grad():
            out = self.model.generate(**inputs, do_sample=sample, max_new_tokens=self.max_new_tokens,
                                      **({"temperature": self.temperature} if sample else {}))
        new = out[0, inputs["input_ids"].shape[1]:]
        return str(self.processor.tokenizer.decode(new, skip_special_tokens=True)).strip()

    def predict(self, image: np.ndarray, instruction: str) -> AffordanceResult:
        if not instruction.strip():
            raise AffordanceError("empty instruction")
        return result_from_text(self.generate_text(check_image(image), instruction))


def make(cfg: Any) -> RoboPointHF:
    if not cfg.checkpoint:
        raise ConfigError("parameter 'checkpoint': backend robopoint-hf needs a local HF-llava "
                          "checkpoint directory (e.g. a converted wentao-yuan/robopoint-v1-vicuna-"
                          "v1.5-13b); nothing is downloaded")
    try:
        import torch

        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        return RoboPointHF(cfg.checkpoint, device, cfg.max_new_tokens, cfg.temperature, cfg.seed)
    except AffordanceError as exc:
        raise ConfigError(f"parameter 'checkpoint': {exc}") from None
