"""Split an episode into task-relevant spans and choose reference frames (no rclpy).

A frame *moves* when more than ``min_changed_frac`` of its pixels changed by more than
``pixel_threshold`` grey levels since the previous frame. Static frames at the start and
end are dropped, and a run of at least ``max_static_gap`` static frames splits the
episode, so a chunk is a span where something happens. Inside a chunk, reference frames
are taken every ``ref_stride`` frames while at least ``min_future`` frames follow; each
sample then covers its reference frame to the chunk's end (at most ``max_horizon`` frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

__all__ = ["ChunkOptions", "Chunk", "frame_motion", "find_chunks", "reference_frames"]


@dataclass(frozen=True)
class ChunkOptions:
    pixel_threshold: float = 8.0  # grey levels: a pixel changed
    min_changed_frac: float = 0.0005  # share of pixels that must change for a frame to move
    max_static_gap: int = 5  # frames: this many static frames in a row end a chunk
    min_chunk: int = 6  # frames: shorter chunks are dropped
    ref_stride: int = 4  # frames between reference frames of one chunk
    min_future: int = 6  # frames a reference frame needs after it (inclusive)
    max_horizon: int = 0  # frames per sample at most; 0 = to the chunk's end

    def __post_init__(self) -> None:
        if self.ref_stride < 1 or self.min_future < 2 or self.min_chunk < 2:
            raise ValueError("ref_stride must be >= 1, min_future and min_chunk >= 2")
        if self.max_horizon not in (0,) and self.max_horizon < self.min_future:
            raise ValueError(f"max_horizon must be 0 or >= min_future={self.min_future}")


@dataclass(frozen=True)
class Chunk:
    start: int  # first frame (inclusive)
    end: int  # last frame (exclusive)

    def __len__(self) -> int:
        return self.end - self.start


def frame_motion(rgb: Sequence[np.ndarray] | np.ndarray, pixel_threshold: float = 8.0) -> np.ndarray:
    """(T,) share of pixels that changed by more than ``pixel_threshold`` grey levels since the
    previous frame (frame 0: 0)."""
    out = np.zeros(len(rgb))
    prev = None
    for t, im in enumerate(rgb):
        g = cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2GRAY)
        if prev is not None:
            out[t] = float(np.mean(cv2.absdiff(g, prev) > pixel_threshold))
        prev = g
    return out


def find_chunks(motion: np.ndarray, opt: ChunkOptions = ChunkOptions()) -> list[Chunk]:
    """Task-relevant spans from per-frame motion (see the module doc).

    A chunk starts one frame before its first moving frame (the frame the motion starts
    from) and ends after its last moving frame.
    """
    moving = np.asarray(motion) > opt.min_changed_frac
    idx = np.flatnonzero(moving)
    if idx.size == 0:
        return []
    chunks: list[Chunk] = []
    start = last = int(idx[0])
    for t in idx[1:]:
        t = int(t)
        if t - last > opt.max_static_gap:
            chunks.append(Chunk(max(start - 1, 0), last + 1))
            start = t
        last = t
    chunks.append(Chunk(max(start - 1, 0), last + 1))
    return [c for c in chunks if len(c) >= opt.min_chunk]


def reference_frames(chunk: Chunk, opt: ChunkOptions = ChunkOptions()) -> list[tuple[int, int]]:
    """(reference frame, end exclusive) of every sample of ``chunk``."""
    out = []
    for ref in range(chunk.start, chunk.end, opt.ref_stride):
        end = chunk.end if opt.max_horizon == 0 else min(chunk.end, ref + opt.max_horizon)
        if end - ref >= opt.min_future:
            out.append((ref, end))
    return out
