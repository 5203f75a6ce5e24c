"""The replay loop without ROS: camera frames in, tracker steps and policy actions out.

It reproduces what ``tracker_node`` and ``policy_node`` did on the robot:

Tracker schedule (at which frames the tracker made a policy step):

* ``recorded`` -- the bag holds the tracker's traces: step exactly at the
  frames whose stamps the recorded traces carry (their own stamps and those of
  their step histories, which also covers steps recorded before the recorder
  caught the trace topic). Every frame is observed in between when
  ``observe_rate_hz > 0`` (the node's camera-rate timer), else only step frames.
* ``timer`` -- no recorded traces: the node's own per-frame schedule
  (``tracevla_ros.ratelimit.FrameSchedule``, shared with ``tracker_node``) in
  stamp time: a step on each frame due at ``control_rate_hz``, observing the
  frames due at ``observe_rate_hz`` in between.

Policy schedule (``policy_node`` pairs a frame with the trace and overlay of the
same stamp, ``tracevla_ros.policy.pairing``):

* ``recorded`` -- the bag holds actions: act at exactly the frames the recorded
  actions were computed from (the node's worker skips frames when it is busy),
  in the same order, so stateful policies see the same sequence;
* ``steps`` -- act at every tracker step.

The overlay is the image ``tracker_node`` publishes (``TraceResult.overlay``
with ``draw_length``); the policy sees it only for a valid trace
(``use_trace``), else ``None`` as in ``policy_node``. Joint positions are those
of the frame's time (newest joint state stamped at or before it, as
``policy_node`` pairs them). The instruction is the newest one received before
the policy read it: for a recorded action, its receive time minus its inference
latency, else the frame's receive time. A change of instruction resets the
policy, as in the node. The visual prompt is the recorded one policy_node held
at that time (``RecordedRun.prompt_for``: replaced, cleared and expired as there).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from tracevla_ros.policy.base import Observation, Policy, PolicyError, validate_chunk
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.ratelimit import FrameSchedule
from tracevla_ros.replay.recorded import RecordedRun
from tracevla_ros.tracking import IncrementalTracker, TraceResult, TrackerConfig, TrackerInputError

__all__ = ["FrameIn", "ReplayEngine", "StepResult", "STAGES"]

log = logging.getLogger(__name__)

STAGES = ("decode", "observe", "step", "overlay", "policy", "total")


@dataclass(frozen=True)
class FrameIn:
    stamp: int  # header stamp, ns
    t: int  # bag receive time, ns
    image: np.ndarray  # (H, W, 3) uint8 RGB
    decode_ms: float = 0.0  # time spent deserialising/decoding it


@dataclass
class StepResult:
    """One frame at which the tracker stepped and/or the policy acted."""

    stamp: int
    t: int
    index: int  # tracker policy steps so far (1 = first); 0 if the tracker did not step here
    trace: TraceResult | None  # None when the policy acted on a frame the tracker did not step at
    overlay: np.ndarray  # (H, W, 3) uint8: the published image_trace (the image if no valid trace)
    acted: bool = False  # the policy was called
    action: np.ndarray | None = None  # (H, D) float32 when the policy gave a valid chunk
    policy_error: str = ""
    prompted: bool = False  # the policy was given a visual prompt (the recorded one held then)
    latency_ms: dict[str, float] = field(default_factory=dict)


class ReplayEngine:
    def __init__(self, tracker_cfg: TrackerConfig, recorded: RecordedRun, policy: Policy | None,
                 policy_cfg: PolicyNodeConfig, schedule: str = "recorded",
                 policy_at: str = "recorded", instruction: str | None = None) -> None:
        if schedule not in ("recorded", "timer"):
            raise ValueError(f"schedule must be 'recorded' or 'timer', got '{schedule}'")
        if policy_at not in ("recorded", "steps"):
            raise ValueError(f"policy_at must be 'recorded' or 'steps', got '{policy_at}'")
        self.cfg = tracker_cfg
        self.tracker = IncrementalTracker(tracker_cfg)
        self.recorded = recorded
        self.policy = policy
        self.policy_cfg = policy_cfg
        self.schedule = schedule
        self.policy_at = policy_at
        self._instruction_override = instruction
        self._instruction = policy_cfg.instruction.strip()
        self._step_stamps = recorded.step_stamps() if schedule == "recorded" else set()
        self._frame_schedule = FrameSchedule(tracker_cfg.control_rate_hz,
                                             tracker_cfg.observe_rate_hz)
        self._latest: FrameIn | None = None  # newest observed frame
        self._acc = {"decode": 0.0, "observe": 0.0}  # per-frame costs since the last step
        self.frames = 0
        self.dropped = 0  # frames the tracker refused (not newer, undecodable)
        self.steps = 0
        self.policy_calls = 0
        self.policy_failures = 0
        self.unpaired = 0  # recorded actions at frames without a replayed trace
        self.no_instruction = 0
        self.prompted = 0  # policy calls given a visual prompt
        self.resets = 0

    @property
    def observe_all(self) -> bool:
        return self.cfg.observe_rate_hz > 0

    # ----------------------------------------------------------------- input
    def feed(self, frame: FrameIn) -> list[StepResult]:
        """Process one camera frame (bag order); returns the steps it completed."""
        self.frames += 1
        out: list[StepResult] = []
        self._acc["decode"] += frame.decode_ms
        if self.schedule == "timer":
            observe, step = self._frame_schedule.decide(frame.stamp * 1e-9)
            if observe and self._observe(frame) and step and self.tracker.has_new_frame:
                out.append(self._step(frame))
            return out
        is_step = frame.stamp in self._step_stamps
        if self.observe_all or is_step:
            if not self._observe(frame):
                return out
        if is_step and self.tracker.has_new_frame:
            out.append(self._step(frame))
        elif self._acts_at(frame.stamp):
            out.append(self._act_without_step(frame))
        return out

    def finish(self) -> list[StepResult]:
        """Nothing is pending after the last frame (kept for callers)."""
        return []

    # ------------------------------------------------------------- internals

    def _observe(self, frame: FrameIn) -> bool:
        t0 = time.perf_counter()
        try:
            ok = self.tracker.observe(frame.image, frame.stamp * 1e-9)
        except TrackerInputError as exc:
            log.warning("frame %d skipped by the tracker: %s", frame.stamp, exc)
            ok = False
        self._acc["observe"] += (time.perf_counter() - t0) * 1e3
        if ok:
            self._latest = frame
        else:
            self.dropped += 1
        return ok

    def _acts_at(self, stamp: int) -> bool:
        if self.policy is None:
            return False
        if self.policy_at == "recorded":
            return stamp in self.recorded.actions
        return True

    def _step(self, frame: FrameIn) -> StepResult:
        lat = dict(self._acc)
        self._acc = {"decode": 0.0, "observe": 0.0}
        t0 = time.perf_counter()
        result = self.tracker.step()
        t1 = time.perf_counter()
        self.steps += 1
        overlay = result.overlay(frame.image, self.cfg.draw_length) if result.valid else frame.image
        t2 = time.perf_counter()
        lat["step"] = (t1 - t0) * 1e3
        lat["overlay"] = (t2 - t1) * 1e3
        step = StepResult(frame.stamp, frame.t, result.step_index, result, overlay, latency_ms=lat)
        if self._acts_at(frame.stamp):
            use = overlay if (result.valid and self.policy_cfg.use_trace) else None
            self._act(step, frame, use)
        lat["total"] = sum(v for k, v in lat.items() if k != "total")
        return step

    def _act_without_step(self, frame: FrameIn) -> StepResult:
        lat = dict(self._acc)
        self._acc = {"decode": 0.0, "observe": 0.0}
        step = StepResult(frame.stamp, frame.t, 0, None, frame.image, latency_ms=lat)
        if self.policy_cfg.use_trace:
            self.unpaired += 1  # policy_node needs this frame's trace: the replay has none
            step.policy_error = "no replayed trace for this frame (the recorded tracker stepped here)"
        else:
            self._act(step, frame, None)
        lat["total"] = sum(lat.values())
        return step

    def _act(self, step: StepResult, frame: FrameIn, overlay: np.ndarray | None) -> None:
        if self.policy is None:  # _acts_at checked it; keeps mypy informed
            return
        rec = self.recorded.actions.get(frame.stamp)
        t_read = rec.t - int(rec.latency_s * 1e9) if rec is not None else frame.t
        text = self._instruction_override
        if text is None:
            text = self.recorded.instruction_at(t_read)
        text = (text if text is not None else self._instruction).strip()
        if not text:
            self.no_instruction += 1
            step.policy_error = "no instruction (pass --instruction)"
            return
        if text != self._instruction:
            self.policy.reset()
            self.resets += 1
            self._instruction = text
        t0 = time.perf_counter()
        step.acted = True
        self.policy_calls += 1
        try:
            prompt = self.recorded.prompt_for(frame.stamp, t_read,
                                              self.policy_cfg.prompt_max_age_s,
                                              self.policy_cfg.keep_prompt_on_instruction)
            step.prompted = prompt is not None
            self.prompted += step.prompted
            obs = Observation(image=frame.image, overlay=overlay, instruction=text,
                              proprio=self.recorded.proprio_for(frame.stamp, t_read),
                              stamp=frame.stamp * 1e-9, prompt=prompt)
            step.action = validate_chunk(self.policy.infer(obs)).values
        except PolicyError as exc:
            self.policy_failures += 1
            step.policy_error = str(exc)
        step.latency_ms["policy"] = (time.perf_counter() - t0) * 1e3
