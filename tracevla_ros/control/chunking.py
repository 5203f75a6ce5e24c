"""Executing action chunks: the first k steps then re-plan, or temporal ensembling (no rclpy).

A chunked policy returns H actions per observation. :class:`ChunkExecutor` turns the
chunks into one action per control step, in one of two ways (``ChunkConfig.mode``):

* ``first_k``: execute the first ``k`` actions of a chunk open loop, then ask for a new
  chunk (k = 1: re-plan every step and use only the first action; k = H: the whole chunk);
* ``ensemble``: ACT's temporal ensembling: a new chunk every step; the action at step t
  is the weighted mean of every stored chunk's prediction for t, weight
  ``exp(-m * i)`` with i = 0 for the oldest prediction (ACT, Zhao et al. 2023), so the
  older plans smooth the new one; predictions older than H steps are gone.

The bench (``tracevla_ros.bench.policy``) drives it per control step::

    ex = ChunkExecutor(ChunkConfig(mode="first_k", k=4))
    if ex.needs_chunk():
        ex.add(policy.infer(obs).values)       # (H, 7)
    action = ex.next_action()                  # (7,)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChunkConfig", "ChunkExecutor", "CHUNK_MODES"]

CHUNK_MODES = ("first_k", "ensemble")


@dataclass(frozen=True)
class ChunkConfig:
    mode: str = "first_k"  # first_k | ensemble
    k: int = 1  # first_k: actions executed from each chunk before the next one
    ensemble_m: float = 0.1  # ensemble: weight exp(-m * i), i = 0 the oldest prediction

    def __post_init__(self) -> None:
        if self.mode not in CHUNK_MODES:
            raise ValueError(f"chunk execution mode must be one of {CHUNK_MODES}, got {self.mode!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1 (actions per chunk), got {self.k}")
        if not (self.ensemble_m >= 0.0 and np.isfinite(self.ensemble_m)):
            raise ValueError(f"ensemble_m must be a finite value >= 0, got {self.ensemble_m}")

    def label(self) -> str:
        return f"first_{self.k}" if self.mode == "first_k" else f"ensemble_m{self.ensemble_m:g}"


class ChunkExecutor:
    """One action per control step from (H, D) chunks; see the module docstring."""

    def __init__(self, cfg: ChunkConfig) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        """Forget every stored chunk (new episode or instruction)."""
        self._queue: list[np.ndarray] = []  # first_k: the actions still to execute
        self._chunks: list[tuple[int, np.ndarray]] = []  # ensemble: (step planned, chunk)
        self._step = 0

    def needs_chunk(self) -> bool:
        """Whether the next action needs a new chunk first."""
        return self.cfg.mode == "ensemble" or not self._queue

    def has_action(self) -> bool:
        """Whether an action can be produced now without a new chunk (the controller, where
        chunks arrive on their own clock)."""
        if self.cfg.mode == "first_k":
            return bool(self._queue)
        return any(self._step - t0 < c.shape[0] for t0, c in self._chunks)

    @property
    def pending(self) -> int:
        """first_k: actions still queued; ensemble: steps the stored chunks still cover."""
        if self.cfg.mode == "first_k":
            return len(self._queue)
        return max((t0 + c.shape[0] - self._step for t0, c in self._chunks), default=0)

    def add(self, chunk: np.ndarray) -> None:
        """A chunk planned from the observation of the current step: (H, D) or (D,)."""
        c = np.asarray(chunk, np.float64)
        if c.ndim == 1:
            c = c[None]
        if c.ndim != 2 or c.shape[0] < 1:
            raise ValueError(f"a chunk is (H >= 1, D), got shape {c.shape}")
        if self.cfg.mode == "first_k":
            self._queue = list(c[: self.cfg.k])
        else:
            self._chunks.append((self._step, c))

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble: (the stored predictions for this step (n, D), their weights (n,)),
        oldest first; the weights sum to 1."""
        preds = [c[self._step - t0] for t0, c in self._chunks if self._step - t0 < c.shape[0]]
        if not preds:
            raise ValueError("no chunk covers this step: add one first")
        w = np.exp(-self.cfg.ensemble_m * np.arange(len(preds)))
        return np.stack(preds), w / w.sum()

    def next_action(self) -> np.ndarray:
        """(D,) float64 action for this control step; advances one step."""
        if self.cfg.mode == "first_k":
            if not self._queue:
                raise ValueError("no action queued: add a chunk first")
            a = self._queue.pop(0)
        else:
            preds, w = self.weights()
            a = (w[:, None] * preds).sum(axis=0)
            self._chunks = [(t0, c) for t0, c in self._chunks if self._step + 1 - t0 < c.shape[0]]
        self._step += 1
        return np.asarray(a, np.float64)
