"""TraceForge: episodes -> TraceGen samples in the ``tracegen_traceforge/v1`` layout (no rclpy).

Per episode: chunk into moving spans (:mod:`.chunking`), and for each reference frame place
the 20 x 20 keypoint grid, track it in 2D (:func:`.tracks.track_2d`), lift it to 3D in the
reference camera's frame (:func:`.tracks.lift_tracks`), speed-retarget every trace to L = 32
steps (:func:`.tracks.retarget`) and write the sample with the reference RGB-D frame and
three instruction phrasings (:mod:`tracegen_ros.data`).

Resumable: an episode is finished when ``OUT/<episode>/done.json`` exists; a rerun skips it
and redoes a half-written one. Each episode is one idempotent task (:func:`forge_one`:
built under a temporary name, ``done.json`` written, then renamed into place), so episodes
run in parallel on Ray with ``workers``/``address`` (:mod:`tracevla_ros.parallel`). A
corrupt episode (unreadable files, missing or all-zero depth, RGB/depth size mismatch) or
any other error in one episode is logged, listed with its error in
``OUT/traceforge_report.json`` and skipped; the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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
from tracevla_ros.parallel import RunReport, run_tasks
from tracevla_ros.sim.dataset import DatasetError
from tracevla_ros.stopping import StopRequest
from tracevla_ros.tracking.backend import make_backend

__all__ = ["ForgeOptions", "ForgeReport", "forge_episode", "forge_one", "trace_from_frames", "run",
           "EPISODE_ERRORS"]

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
    not_run: list[str] = field(default_factory=list)  # left for the next run by an interrupt
    interrupted: bool = False
    backend: str = "serial"  # serial | ray-local | ray-cluster (tracevla_ros.parallel)
    workers: int = 1
    seconds: float = 0.0
    tracebacks: dict[str, str] = field(default_factory=dict)  # name -> where it failed
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
    return sorted(p.parent.name for p in out.glob(f"*/{DONE}") if not p.parent.name.startswith("."))


def forge_one(job: tuple[EpisodeRef, str, ForgeOptions]) -> dict[str, Any]:
    """Forge one episode into ``OUT/<name>`` (a :func:`tracevla_ros.parallel.run_tasks` task).

    Idempotent: built in ``OUT/.<name>.partial<pid>/<name>`` (file names carry the episode
    name), ``done.json`` written last, then renamed to ``OUT/<name>``; a killed task leaves
    only the hidden partial folder (removed by the next run of that episode). Returns what
    ``done.json`` holds.
    """
    ref, out_s, opt = job
    out = Path(out_s)
    final = out / ref.name
    for stale in out.glob(f".{ref.name}.partial*"):
        shutil.rmtree(stale, ignore_errors=True)
    holder = out / f".{ref.name}.partial{os.getpid()}"
    tmp = holder / ref.name
    tmp.mkdir(parents=True)
    try:
        ep = ref.load()
        n = forge_episode(ep, tmp, opt)
        meta = {"samples": n, "task": ep.task, "robot": ep.robot, "source": ep.source,
                "frames": int(ep.rgb.shape[0]), "path": str(ref.path)}
        write_json_atomic(tmp / DONE, meta)
        if final.exists():
            shutil.rmtree(final)  # half-written by an older run, or --overwrite
        os.replace(tmp, final)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    return meta


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
        overwrite: bool = False, progress: bool = True, workers: int = 1,
        address: str | None = None, stop: StopRequest | None = None) -> ForgeReport:
    """Forge every episode of ``refs`` into ``out`` (resumable, parallel; see the module doc)."""
    out.mkdir(parents=True, exist_ok=True)
    rep = ForgeReport()
    sources: set[str] = set()
    robots: set[str] = set()
    todo: list[tuple[str, tuple[EpisodeRef, str, ForgeOptions]]] = []
    for ref in refs:
        ep_dir = out / ref.name
        if (ep_dir / DONE).is_file() and not overwrite:
            rep.skipped.append(ref.name)
            meta = json.loads((ep_dir / DONE).read_text())
            sources.add(meta.get("source", ""))
            robots.add(meta.get("robot", ""))
            continue
        todo.append((ref.name, (ref, str(out), opt)))
    run_rep: RunReport = run_tasks(forge_one, todo, workers=workers, address=address,
                                   progress=progress, desc="traceforge", stop=stop)
    for name, meta in run_rep.done.items():
        sources.add(meta["source"])
        robots.add(meta["robot"])
        rep.done.append(name)
        rep.samples += int(meta["samples"])
    for name, failure in run_rep.failed.items():
        rep.failed[name] = failure.error
        rep.tracebacks[name] = failure.traceback
        shutil.rmtree(out / name, ignore_errors=True)  # a half-written older attempt
    rep.done.sort()
    rep.not_run = sorted(run_rep.not_run)
    rep.interrupted = run_rep.interrupted
    if run_rep.interrupted:
        rep.complete = False
        rep.stopped_by = (stop.reason if stop else "") or "KeyboardInterrupt"
    rep.backend, rep.workers, rep.seconds = run_rep.backend, run_rep.workers, round(run_rep.seconds, 3)
    extra = {"source": ",".join(sorted(s for s in sources if s)) or "unknown",
             "robot": ",".join(sorted(r for r in robots if r)) or "unknown"}
    write_dataset_info(out, opt, extra)
    write_json_atomic(out / REPORT, asdict(rep))
    return rep
