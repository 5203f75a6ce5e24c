"""One interface for every affordance model (no rclpy), like the policies'.

    backend = make_backend(cfg)                      # AffordanceNodeConfig
    result = backend.predict(image, "point to free space left of the red cube")
    result.points      # (P, 2) float32, normalized (x = column / width, y = row / height)
    result.reasoning   # the text before "Final Answer:" (TRACE's chain of reasoning)

Every backend answers with text (RoboPoint/TRACE format) and the points come out
of ``answer.parse_answer``, so the node treats all of them alike: a failure of
the model is an ``AffordanceError`` (the node publishes nothing and logs it),
unparsable text is a result with no points and a warning.

Backends by name (``BACKENDS``, imported on first use): ``robopoint-hf`` (a
LLaVA-1.5 model in HF-llava format, local weights), ``remote`` (tracevla-serve
on a GPU machine), ``small`` (the small model trained on sim scenes here).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, cast

import numpy as np

from tracevla_ros.affordance.answer import parse_answer
from tracevla_ros.config import ConfigError

__all__ = ["AffordanceResult", "AffordanceBackend", "AffordanceError", "result_from_text",
           "BACKENDS", "make_backend", "check_image"]


class AffordanceError(RuntimeError):
    """The model gave no answer (not loaded, timed out, failed); the message says why."""


@dataclass
class AffordanceResult:
    """What one prediction gives: the reasoning text, (P, 2) normalized points, (P,) scores
    in [0, 1] (empty = none), the model's raw text, and warnings about the answer."""

    reasoning: str
    points: np.ndarray
    scores: np.ndarray
    raw_text: str
    warnings: list[str] = field(default_factory=list)


class AffordanceBackend(Protocol):
    name: str

    def predict(self, image: np.ndarray, instruction: str) -> AffordanceResult:
        """image: (H, W, 3) uint8 RGB; instruction: non-empty text."""
        ...


def check_image(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 1:
        raise AffordanceError(f"expected an (H, W, 3) uint8 RGB image, got {arr.dtype} "
                              f"{tuple(arr.shape)}")
    return arr


def result_from_text(text: str, scores: np.ndarray | None = None) -> AffordanceResult:
    """Read a text answer (reasoning + points) into a result; ``scores`` per point if known."""
    parsed = parse_answer(text)
    pts = np.asarray(parsed.points, np.float32).reshape(-1, 2)
    sc = np.zeros(0, np.float32)
    if scores is not None and len(scores) == len(pts):
        sc = np.clip(np.asarray(scores, np.float32), 0.0, 1.0)
    return AffordanceResult(parsed.reasoning, pts, sc, text, list(parsed.warnings))


# name -> "module:factory(cfg) -> AffordanceBackend"
BACKENDS: dict[str, str] = {
    "small": "tracevla_ros.affordance.small:make",
    "robopoint-hf": "tracevla_ros.affordance.robopoint:make",
    "remote": "tracevla_ros.affordance.remote:make",
}


def make_backend(cfg: Any) -> AffordanceBackend:
    """The backend ``cfg.backend`` names (registered, or ``package.module:function``)."""
    spec = BACKENDS.get(cfg.backend, cfg.backend)
    if ":" not in spec:
        raise ConfigError(f"parameter 'backend': unknown affordance backend '{cfg.backend}' "
                          f"(known: {sorted(BACKENDS)})")
    module, _, func = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"parameter 'backend': cannot load '{spec}': {exc}") from exc
    return cast(Callable[[Any], AffordanceBackend], factory)(cfg)
