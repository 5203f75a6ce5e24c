"""What the recorded run did, read once before the replay (everything but the images).

``RecordedRun.read(bag, topics)`` collects the recorded traces (their stamps
say at which camera frames the tracker stepped), the recorded actions (at
which frames the policy acted, and what it output), the instructions, the
visual prompts and the joint states, each with its bag receive time. All times are integer
nanoseconds: ``stamp`` = the message's header stamp, ``t`` = when the
recorder received it.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracevla_ros.bag.reader import BagReader
from tracevla_ros.policy.prompt import PromptError, VisualPrompt
from tracevla_ros.replay.topics import TopicSelection
from tracevla_ros.stamped import StampedBuffer

__all__ = ["RecordedAction", "RecordedRun", "RecordedTrace", "stamp_ns"]


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass(frozen=True)
class RecordedTrace:
    stamp: int  # camera frame of the newest position
    valid: bool
    points: np.ndarray  # (M, N, 2) float32 px, x right / y down; (0, 0, 2) when not valid
    visible: np.ndarray  # (M, N) bool
    step_stamps: tuple[int, ...]  # the policy-step frames of its history, oldest first


@dataclass(frozen=True)
class RecordedAction:
    stamp: int  # camera frame the action was computed from
    t: int  # receive time
    values: np.ndarray  # (H, D) float32
    action_space: str
    latency_s: float  # the policy's inference latency as published
    policy_name: str
    trace_used: bool


@dataclass
class RecordedRun:
    traces: dict[int, RecordedTrace] = field(default_factory=dict)
    actions: dict[int, RecordedAction] = field(default_factory=dict)
    instructions: list[tuple[int, str]] = field(default_factory=list)  # (t, text), t ascending
    joint_t: list[int] = field(default_factory=list)  # receive times, ascending
    joint_pos: list[np.ndarray] = field(default_factory=list)  # (P,) float32 each
    joint_by_stamp: StampedBuffer[np.ndarray] = field(
        default_factory=lambda: StampedBuffer(keep=10 ** 9))  # header stamp (s) -> positions
    joint_names: tuple[str, ...] = ()
    action_frame_id: str = ""
    duplicate_actions: int = 0
    prompts: list[tuple[int, VisualPrompt | None]] = field(default_factory=list)  # None = cleared
    bad_prompts: int = 0  # malformed VisualPrompt messages (policy_node refuses them too)

    @classmethod
    def read(cls, bag: BagReader, topics: TopicSelection) -> "RecordedRun":
        run = cls()
        wanted = [t for t in (topics.trace, topics.action, topics.instruction, topics.joint_states,
                              topics.prompt) if t]
        for topic, t, msg in bag.messages(wanted):
            if topic == topics.trace:
                run._add_trace(msg)
            elif topic == topics.action:
                run._add_action(msg, t)
            elif topic == topics.instruction:
                run.instructions.append((t, str(msg.data).strip()))
            elif topic == topics.prompt:
                run._add_prompt(msg, t)
            elif topic == topics.joint_states:
                q = np.asarray(msg.position, dtype=np.float32)
                run.joint_t.append(t)
                run.joint_pos.append(q)
                run.joint_by_stamp.add(stamp_ns(msg.header.stamp) * 1e-9, q)
                if not run.joint_names:
                    run.joint_names = tuple(str(n) for n in msg.name)
        return run

    def _add_trace(self, msg: Any) -> None:
        s = stamp_ns(msg.header.stamp)
        m, n = int(msg.num_points), int(msg.length)
        valid = bool(msg.valid) and m * n > 0
        pts = np.asarray(msg.points, np.float32)
        vis = np.asarray(msg.visible, bool)
        if valid and pts.size == m * n * 2 and vis.size == m * n:
            pts, vis = pts.reshape(m, n, 2), vis.reshape(m, n)
        else:
            pts, vis = np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), bool)
        self.traces[s] = RecordedTrace(s, bool(msg.valid), pts, vis,
                                       tuple(stamp_ns(x) for x in msg.step_stamps))

    def _add_prompt(self, msg: Any, t: int) -> None:
        from tracevla_ros.ros_prompt import prompt_from_msg

        try:
            p = prompt_from_msg(msg)
        except PromptError:
            self.bad_prompts += 1
            return
        if p is not None and p.stamp == 0.0:  # unstamped: policy_node counts from its arrival
            p = dataclasses.replace(p, stamp=t * 1e-9)
        self.prompts.append((t, p))

    def _add_action(self, msg: Any, t: int) -> None:
        s = stamp_ns(msg.header.stamp)
        if s in self.actions:
            self.duplicate_actions += 1
            return
        h, d = int(msg.chunk_length), int(msg.action_dim)
        vals = np.asarray(msg.values, np.float32)
        vals = vals.reshape(h, d) if h * d == vals.size and d > 0 else vals.reshape(1, -1)
        self.action_frame_id = self.action_frame_id or str(msg.header.frame_id)
        self.actions[s] = RecordedAction(s, t, vals, str(msg.action_space),
                                         float(msg.inference_latency_s), str(msg.policy_name),
                                         bool(msg.trace_used))

    # ------------------------------------------------------------ lookups
    def step_stamps(self) -> set[int]:
        """Every camera frame the recorded tracker stepped at: the traces' own stamps and
        those of their histories (which also cover steps whose trace was not recorded)."""
        out = set(self.traces)
        for tr in self.traces.values():
            out.update(tr.step_stamps)
        return out

    def recorded_valid_ratio(self) -> float | None:
        if not self.traces:
            return None
        return sum(t.valid for t in self.traces.values()) / len(self.traces)

    def instruction_at(self, t: int) -> str | None:
        """The newest instruction received at or before ``t``; before the first one, the first
        one (it is latched: published before the recorder subscribed); None without any."""
        if not self.instructions:
            return None
        i = bisect.bisect_right([x[0] for x in self.instructions], t) - 1
        return self.instructions[max(i, 0)][1]

    def prompt_for(self, frame_stamp: int, t_read: int, max_age_s: float,
                   keep_on_instruction: bool) -> VisualPrompt | None:
        """What policy_node gave the policy (``tracevla_ros.policy.prompt_state``): the newest
        prompt received at or before ``t_read``, unless cleared, older than ``max_age_s`` at
        the frame (0 = no expiry), or followed by a new instruction (unless
        ``keep_on_instruction``)."""
        i = bisect.bisect_right(self.prompts, t_read, key=lambda p: p[0]) - 1
        if i < 0:
            return None
        t, p = self.prompts[i]
        if p is None or (max_age_s > 0.0 and p.age(frame_stamp * 1e-9) > max_age_s):
            return None
        if not keep_on_instruction and any(t < ti <= t_read for ti, _ in self.instructions[1:]):
            return None  # the first instruction is latched: received whenever the recorder began
        return p

    def proprio_for(self, frame_stamp: int, t_read: int) -> np.ndarray:
        """What policy_node used: the newest joint state stamped at or before the frame, else
        the newest received before the policy read it (``t_read``); empty if none."""
        q = self.joint_by_stamp.at(frame_stamp * 1e-9)
        if q is not None:
            return q
        i = bisect.bisect_right(self.joint_t, t_read) - 1
        return self.joint_pos[i] if i >= 0 else np.zeros(0, np.float32)

    def policy_names(self) -> list[str]:
        return sorted({a.policy_name for a in self.actions.values() if a.policy_name})
