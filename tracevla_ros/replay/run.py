"""``replay(options) -> report``: a recorded bag through the tracker and the policy, offline.

Order of work, so that a bad bag costs nothing and a failure loses nothing:

1. open and check the bag, pick the topics, read everything but the images
   (recorded traces, actions, instruction, joint states) -- any problem here
   raises before ``OUT`` is touched;
2. resolve the recorded run's tracker/policy parameters, build the policy;
3. stream the images through ``ReplayEngine``; the overlay video is written as
   it goes. If the bag turns out damaged part-way, the video is closed and a
   ``report.json`` marked ``"complete": false`` with the error is written
   before the error is raised again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import cv2

from tracevla_ros.bag.reader import BagReader, BagReadError
from tracevla_ros.cli import write_json_atomic
from tracevla_ros.replay.config import ReplayOptions, RunParams, choose_policy, load_run_params
from tracevla_ros.replay.engine import FrameIn, ReplayEngine
from tracevla_ros.replay.recorded import RecordedRun, stamp_ns
from tracevla_ros.replay.report import (
    ACTION_DIM_NAMES,
    ReplayStats,
    VideoSink,
    plot_actions,
    plot_latency,
)
from tracevla_ros.replay.topics import ImageDecodeError, TopicSelection, image_from_msg, select_topics

__all__ = ["ReplayError", "replay"]

log = logging.getLogger(__name__)

REPORT = "report.json"
VIDEO = "overlay.mp4"
ACTIONS_PNG = "actions.png"
LATENCY_PNG = "latency.png"


class ReplayError(RuntimeError):
    """The replay cannot go on; the message says why (bag problems are BagReadError)."""


def replay(opts: ReplayOptions) -> dict[str, Any]:
    """Run the replay described by ``opts``; writes OUT/report.json (+ video, plots); returns the report."""
    t_start = time.perf_counter()
    with BagReader(opts.bag) as bag:
        topics = select_topics(bag, opts.topics)
        bag.require(topics.image)
        recorded = RecordedRun.read(bag, topics)
        params = load_run_params(bag, opts, recorded)
        policy, pcfg, policy_note = choose_policy(opts, recorded, params.policy)
        schedule = opts.schedule
        if schedule == "auto":
            schedule = "recorded" if recorded.traces else "timer"
        if schedule == "recorded" and not recorded.traces:
            raise ReplayError(f"--schedule recorded needs the tracker's traces in the bag; none on "
                              f"'{topics.trace or 'a VisualTrace topic'}' (use --schedule timer)")
        act_at = opts.act_at
        if act_at == "auto":
            act_at = "recorded" if recorded.actions else "steps"
        if params.tracker.opencv_threads >= 0:  # as tracker_node does
            cv2.setNumThreads(params.tracker.opencv_threads)
        engine = ReplayEngine(params.tracker, recorded, policy, pcfg, schedule=schedule,
                              policy_at=act_at, instruction=opts.instruction)
        opts.out.mkdir(parents=True, exist_ok=True)
        stats = ReplayStats(recorded)
        video = VideoSink(opts.out / VIDEO, fps=params.tracker.control_rate_hz) if opts.video else None
        report: dict[str, Any] = {
            "bag": str(opts.bag), "storage": bag.storage,
            "topics": {"selected": topics.as_dict(), "notes": list(topics.notes),
                       "found": {t.name: {"type": t.msgtype, "count": t.count, "known": t.known}
                                 for t in sorted(bag.topics.values(), key=lambda t: t.name)}},
            "config": {"source": params.source, "robot": params.robot,
                       "tracker": dict(params.tracker.as_dict()),
                       "policy": {"backend": pcfg.backend, "checkpoint": pcfg.checkpoint,
                                  "use_trace": pcfg.use_trace}},
            "schedule": schedule, "act_at": act_at,
            "speed": opts.speed or "max",
        }
        error: BaseException | None = None
        loop: dict[str, float] = {}
        try:
            _stream(bag, topics, engine, stats, video, opts, loop)
        except (BagReadError, KeyboardInterrupt) as exc:
            error = exc
        finally:
            if video is not None:
                video.close()
        report.update(_summary(engine, stats, recorded, params, policy_note, loop, opts))
        report["wall_time_s"] = round(time.perf_counter() - t_start, 3)
        report["outputs"] = _plots(opts, stats, recorded, video)
        problem = _error_text(error) if error is not None else _nothing_done(engine, stats)
        report["complete"] = problem is None
        report["error"] = problem
        if isinstance(error, KeyboardInterrupt):
            report["stopped_by"] = getattr(error, "reason", "") or "KeyboardInterrupt"
        write_json_atomic(opts.out / REPORT, report)  # NaN-free, never half-written
        if error is not None:
            raise error
        return report


def _error_text(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        reason = getattr(error, "reason", "")
        return f"stopped by {reason}" if reason else "interrupted"
    return str(error) or type(error).__name__


def _nothing_done(engine: ReplayEngine, stats: ReplayStats) -> str | None:
    """Why a replay that ran to the end still has no result (None: it has one)."""
    if stats.steps == 0:
        return (f"no tracker step ran over {engine.frames} frames ({engine.dropped} dropped); "
                "nothing was replayed (try --schedule timer)")
    if engine.policy is None:
        return None
    if engine.policy_calls == 0:
        why = (f"{engine.no_instruction} steps had no instruction (pass --instruction)"
               if engine.no_instruction else "no step was paired with a recorded action "
               "(try --act-at steps)")
        return f"the policy was never called: {why}"
    if engine.policy_failures == engine.policy_calls:
        return f"every policy call failed ({engine.policy_calls} calls)"
    return None


def _stream(bag: BagReader, topics: TopicSelection, engine: ReplayEngine, stats: ReplayStats,
            video: VideoSink | None, opts: ReplayOptions, loop: dict[str, float]) -> None:
    from tqdm import tqdm

    info = bag.topics[topics.image]
    bar = tqdm(total=info.count, unit="frame", desc="replay", disable=None if opts.progress else True,
               dynamic_ncols=True)
    t0 = time.perf_counter()
    first_t: int | None = None
    last_t = 0
    loop["start"] = t0
    try:
        messages = bag.messages([topics.image])
        while True:
            td = time.perf_counter()  # "decode" = read + deserialise + convert to RGB
            item = next(messages, None)
            if item is None:
                break
            _, t, msg = item
            if first_t is None:
                first_t = t
            last_t = t
            if opts.speed > 0:  # pace at the recorded rate (times speed)
                wait = (t - first_t) * 1e-9 / opts.speed - (time.perf_counter() - t0)
                if wait > 0:
                    time.sleep(wait)
                    td += wait
            try:
                image = image_from_msg(msg, info.msgtype)
            except ImageDecodeError as exc:
                engine.dropped += 1
                log.warning("frame at t=%d skipped: %s", t, exc)
                bar.update(1)
                continue
            frame = FrameIn(stamp_ns(msg.header.stamp), t, image, (time.perf_counter() - td) * 1e3)
            for step in engine.feed(frame):
                _take(step, stats, video)
            bar.update(1)
        for step in engine.finish():
            _take(step, stats, video)
    finally:
        bar.close()
        loop["wall_s"] = time.perf_counter() - t0
        loop["bag_s"] = ((last_t - first_t) * 1e-9) if first_t is not None else 0.0


def _take(step: Any, stats: ReplayStats, video: VideoSink | None) -> None:
    stats.add(step)
    if video is not None and step.trace is not None:
        video.add(step.overlay)


def _summary(engine: ReplayEngine, stats: ReplayStats, recorded: RecordedRun, params: RunParams,
             policy_note: str, loop: dict[str, float], opts: ReplayOptions) -> dict[str, Any]:
    ratio = stats.valid_ratio()
    rec_ratio = recorded.recorded_valid_ratio()
    space = next((a.action_space for a in recorded.actions.values()), "ee_delta_7d")
    actions = stats.action_comparison(ACTION_DIM_NAMES.get(space, ()))
    traces = stats.trace_comparison()
    wall, bag_s = loop.get("wall_s", 0.0), loop.get("bag_s", 0.0)
    out: dict[str, Any] = {
        "frames": engine.frames, "frames_dropped": engine.dropped, "steps": stats.steps,
        "trace_valid_steps": stats.valid,
        "trace_valid_ratio": round(ratio, 4) if ratio is not None else None,
        "policy": {"note": policy_note, "calls": engine.policy_calls,
                   "failures": engine.policy_failures, "unpaired": engine.unpaired,
                   "no_instruction": engine.no_instruction, "resets": engine.resets,
                   "prompted": engine.prompted},
        "latency_ms": stats.latency_summary(),
        "loop_wall_time_s": round(wall, 3), "bag_duration_s": round(bag_s, 3),
        "real_time_factor": round(bag_s / wall, 2) if wall > 0 else None,
        "recorded": {"traces": len(recorded.traces),
                     "trace_valid_ratio": round(rec_ratio, 4) if rec_ratio is not None else None,
                     "actions": len(recorded.actions), "policy_names": recorded.policy_names(),
                     "instructions": sorted({s for _, s in recorded.instructions}),
                     "prompts": len(recorded.prompts), "bad_prompts": recorded.bad_prompts},
        "comparison": {"traces": traces, "actions": actions},
    }
    out["reproduced"] = _reproduced(stats, recorded, actions, engine, opts)
    summary = _demo_summary(opts.bag)
    if summary is not None and "trace_valid_ratio" in summary and ratio is not None:
        out["comparison"]["demo_summary"] = {
            "path": str(opts.bag.parent / "summary.json"),
            "trace_valid_ratio": summary["trace_valid_ratio"],
            "match": round(ratio, 4) == round(float(summary["trace_valid_ratio"]), 4)}
        out["reproduced"]["demo_summary_trace_valid_ratio"] = out["comparison"]["demo_summary"]["match"]
    return out


def _reproduced(stats: ReplayStats, recorded: RecordedRun, actions: dict[str, Any],
                engine: ReplayEngine, opts: ReplayOptions) -> dict[str, Any]:
    """Did the replay give what the recorded run gave? (None where there is nothing to compare.)"""
    out: dict[str, Any] = {"action_tolerance": opts.action_tol}
    if recorded.traces:
        out["trace_valid_ratio"] = (stats.steps == len(recorded.traces)
                                    and stats.valid == sum(t.valid for t in recorded.traces.values()))
        out["traces"] = (stats.traces_compared == len(recorded.traces)
                         and stats.traces_agree == stats.traces_compared)
    else:
        out["trace_valid_ratio"] = out["traces"] = None
    if recorded.actions and engine.policy is not None:
        err = actions.get("max_abs_error")
        out["actions"] = (actions["compared"] == len(recorded.actions) and err is not None
                          and err <= opts.action_tol)
    else:
        out["actions"] = None
    return out


def _demo_summary(bag: Path) -> dict[str, Any] | None:
    path = bag.parent / "summary.json" if bag.is_dir() else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _plots(opts: ReplayOptions, stats: ReplayStats, recorded: RecordedRun,
           video: VideoSink | None) -> dict[str, Any]:
    out: dict[str, Any] = {"report": REPORT}
    if video is not None and video.frames:
        out["overlay"] = VIDEO
        out["overlay_frames"] = video.frames
    if opts.plots:
        space = next((a.action_space for a in recorded.actions.values()), "ee_delta_7d")
        if plot_actions(opts.out / ACTIONS_PNG, stats, ACTION_DIM_NAMES.get(space, ())):
            out["actions_plot"] = ACTIONS_PNG
        if plot_latency(opts.out / LATENCY_PNG, stats):
            out["latency_plot"] = LATENCY_PNG
    return out
