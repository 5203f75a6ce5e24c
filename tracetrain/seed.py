"""Seeding and the random-number state of a process (saved with a resumable run)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "rng_state", "set_rng_state", "generator_state",
           "set_generator_state"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON part, tensor part) of the global generators: Python, numpy, torch CPU and CUDA."""
    py = random.getstate()
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    js = {"python": [py[0], list(py[1]), py[2]],
          "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)]}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    return js, tensors


def set_rng_state(js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = js["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = js["numpy"]
    np.random.set_state((name, np.array(keys, np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(tensors["torch"].to(torch.uint8))
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def generator_state(gen: np.random.Generator) -> dict[str, Any]:
    """A numpy Generator's state as JSON (big integers stay exact in JSON)."""
    return dict(gen.bit_generator.state)


def set_generator_state(gen: np.random.Generator, state: dict[str, Any]) -> None:
    gen.bit_generator.state = state
