"""TraceForge: episodes -> TraceGen samples in the ``tracegen_traceforge/v1`` layout (no rclpy).

Per episode: chunk into moving spans (:mod:`.chunking`), and for each reference frame place
the 20 x 20 keypoint grid, track it in 2D (:func:`.tracks.track_2d`), lift it to 3D in the
reference camera's frame (:func:`.tracks.lift_tracks`), speed-retarget every trace to L = 32
steps (:func:`.tracks.retarget`) and write the sample with the reference RGB-D frame and
three instruction phrasings (:mod:`tracegen_ros.data`).

Resumable: an episode is finished when ``OUT/<episode>/done.json`` exists; a rerun skips it
and redoes a half-written one. A corrupt episode (unreadable files, missing or all-zero
depth, RGB/depth size mismatch) is logged, listed in ``OUT/traceforge_report.json`` and
skipped; the others go on.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from tracegen_ros import data as D
from tracegen_ros.traceforge.chunking import ChunkOptions, find_chunks, frame_motion, reference_frames
from tracegen_ros.traceforge.geometry import GeometryError, invert_pose
from tracegen_ros.traceforge.instructions import phrasings
from tracegen_ros.traceforge.sources import EpisodeRef, RGBDEpisode, SourceError
from tracegen_ros.traceforge.tracks import (
    TrackOptions,
    ee_trace,
    lift_tracks,
    make_frames,
    retarget,
    track_2d,
)
from tracevla_ros.cli import write_json_atomic
from tracevla_ros.sim.dataset import DatasetError
from tracevla_ros.tracking.backend import make_backend

__all__ = ["ForgeOptions", "ForgeReport", "forge_episode", "trace_from_frames", "run", "EPISODE_ERRORS"]

log = logging.getLogger(__name__)

DONE = "done.json"
REPORT = "traceforge_report.json"
# What a bad episode may raise while it is loaded and processed: reported, then skipped.
EPISODE_ERRORS: tuple[type[BaseException], ...] = (
    SourceError, GeometryError, D.DataError, DatasetError, OSError, ValueError, KeyError,
    zipfile.BadZipFile, EOFError)


@dataclass(frozen=True)
class ForgeOptions:
    chunks: ChunkOptions = field(default_factory=ChunkOptions)
    tracks: TrackOptions = field(default_factory=TrackOptions)
    grid: int = D.GRID
    length: int = D.TRACE_LEN
    val_every: int = 10  # every n-th finished episode (sorted by name) goes to the val split


@dataclass
class ForgeReport:
    done: list[str] = field(default_factory=list)  # processed in this run
    skipped: list[str] = field(default_factory=list)  # already finished (resume)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error
    samples: int = 0  # written in this run
    complete: bool = True  # False: stopped (signal, Ctrl-C) before every episode was tried
    stopped_by: str | None = None


def _poses_to_ref(ep: RGBDEpisode, ref: int, end: int) -> np.ndarray | None:
    if ep.T_world_cam is None:
        return None
    inv_ref = invert_pose(ep.T_world_cam[ref])
    return np.stack([inv_ref @ ep.T_world_cam[t] for t in range(ref, end)])


def trace_from_frames(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray,
                      opt: ForgeOptions = ForgeOptions(),
                      T_ref_cam: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sample traces of one clip whose frame 0 is the reference: (traj (N, L, 3), valid (N, L)).

    rgb: (T, H, W, 3) uint8; depth: (T, H, W) metres; K: (3, 3); T_ref_cam: (T, 4, 4) or None.
    """
    keypoints = D.grid_keypoints(rgb.shape[1], rgb.shape[2], opt.grid)
    tracks, visible = track_2d(make_frames(rgb), keypoints, None, opt.tracks)
    xyz = lift_tracks(tracks, visible, depth, K, T_ref_cam, opt.tracks.max_depth_jump_m)
    return retarget(xyz, K, opt.length, opt.tracks.min_path_m)


def forge_episode(ep: RGBDEpisode, ep_dir: Path, opt: ForgeOptions = ForgeOptions()) -> int:
    """Write every sample of ``ep`` under ``ep_dir``; returns the number of samples."""
    ep.validate()
    h, w = ep.rgb.shape[1:3]
    keypoints = D.grid_keypoints(h, w, opt.grid)
    chunks = find_chunks(frame_motion(ep.rgb, opt.chunks.pixel_threshold), opt.chunks)
    refs = [r for c in chunks for r in reference_frames(c, opt.chunks)]
    frames = make_frames(ep.rgb)
    backend = make_backend(opt.tracks.tracker_config())
    D.write_instructions(ep_dir, phrasings(ep.instruction, ep.task))
    n = 0
    for ref, end in refs:
        if not np.any(ep.depth[ref] > 0):
            raise GeometryError(f"{ep.name}: depth of frame {ref} is all zero/invalid")
        tracks, visible = track_2d(frames[ref:end], keypoints, backend, opt.tracks)
        xyz = lift_tracks(tracks, visible, ep.depth[ref:end], ep.K, _poses_to_ref(ep, ref, end),
                          opt.tracks.max_depth_jump_m)
        traj, valid = retarget(xyz, ep.K, opt.length, opt.tracks.min_path_m)
        arrays: dict[str, np.ndarray] = dict(
            keypoints=keypoints, traj=traj, valid_steps=valid, frame_index=np.array(ref, np.int64),
            intrinsics=ep.K.astype(np.float32), image_size=np.array([w, h], np.int64))
        if ep.T_base_cam is not None:
            arrays["T_base_cam"] = ep.T_base_cam.astype(np.float64)
            if ep.ee_base is not None:
                arrays["ee_uvz"] = ee_trace(ep.ee_base[ref:end], ep.T_base_cam, ep.K, opt.length,
                                            opt.tracks.min_path_m)
        D.write_frame(ep_dir, ref, ep.rgb[ref], ep.depth[ref])
        D.write_sample(ep_dir, ref, arrays)
        n += 1
    return n


def _finished(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob(f"*/{DONE}"))


def write_dataset_info(out: Path, opt: ForgeOptions, extra: dict[str, Any]) -> dict[str, Any]:
    """info.json over every finished episode in ``out`` (also those of earlier runs)."""
    names = _finished(out)
    val = [n for i, n in enumerate(names) if opt.val_every > 0 and i % opt.val_every == opt.val_every - 1]
    old: dict[str, Any] = {}
    if (out / "info.json").is_file():
        old = json.loads((out / "info.json").read_text())
    info = dict(old, **extra)
    per_ep = {n: json.loads((out / n / DONE).read_text()) for n in names}
    info.update(
        episodes=len(names), samples=int(sum(d.get("samples", 0) for d in per_ep.values())),
        tasks=sorted({d.get("task", "") for d in per_ep.values()} - {""}),
        splits={"train": [n for n in names if n not in set(val)], "val": val},
        split_rule=f"by episode: every {opt.val_every}-th finished episode in name order is val",
        options=asdict(opt),
        doc="layout: tracegen_ros/data.py; traces: (u px, v px, z m) in the reference camera, "
            "speed-retargeted by 3D arc length, -inf = invalid")
    D.write_info(out, info)
    return info


def run(refs: Sequence[EpisodeRef], out: Path, opt: ForgeOptions = ForgeOptions(),
        overwrite: bool = False, progress: bool = True) -> ForgeReport:
    """Forge every episode of ``refs`` into ``out`` (resumable; see the module doc)."""
    out.mkdir(parents=True, exist_ok=True)
    rep = ForgeReport()
    sources: set[str] = set()
    robots: set[str] = set()
    bar = tqdm(refs, desc="traceforge", unit="ep", disable=not progress)
    try:
        _forge_all(bar, out, opt, overwrite, rep, sources, robots)
    except KeyboardInterrupt as exc:  # Ctrl-C or a stop signal: the report says so
        rep.complete = False
        rep.stopped_by = getattr(exc, "reason", "") or "KeyboardInterrupt"
        raise
    finally:
        bar.close()
        extra = {"source": ",".join(sorted(s for s in sources if s)) or "unknown",
                 "robot": ",".join(sorted(r for r in robots if r)) or "unknown"}
        write_dataset_info(out, opt, extra)
        write_json_atomic(out / REPORT, asdict(rep))
    return rep


def _forge_all(bar: Any, out: Path, opt: ForgeOptions, overwrite: bool, rep: ForgeReport,
               sources: set[str], robots: set[str]) -> None:
    for ref in bar:
        ep_dir = out / ref.name
        if (ep_dir / DONE).is_file() and not overwrite:
            rep.skipped.append(ref.name)
            meta = json.loads((ep_dir / DONE).read_text())
            sources.add(meta.get("source", ""))
            robots.add(meta.get("robot", ""))
            continue
        if ep_dir.exists():
            shutil.rmtree(ep_dir)  # half-written by an interrupted run: redo it
        try:
            ep = ref.load()
            n = forge_episode(ep, ep_dir, opt)
        except EPISODE_ERRORS as exc:
            msg = f"{type(exc).__name__}: {exc}"
            log.error("episode %s (%s) skipped: %s", ref.name, ref.path, msg)
            rep.failed[ref.name] = msg
            shutil.rmtree(ep_dir, ignore_errors=True)
            continue
        write_json_atomic(ep_dir / DONE, {  # written last: marks the episode done
            "samples": n, "task": ep.task, "robot": ep.robot, "source": ep.source,
            "frames": int(ep.rgb.shape[0]), "path": str(ref.path)})
        sources.add(ep.source)
        robots.add(ep.robot)
        rep.done.append(ref.name)
        rep.samples += n
        bar.set_postfix(samples=rep.samples, failed=len(rep.failed))
