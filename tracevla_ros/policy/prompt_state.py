"""The active visual prompt of policy_node, as plain Python (no rclpy).

One prompt is held at a time: the newest valid one received. It is given to every
observation whose frame is at most ``max_age_s`` newer than the prompt's stamp
(``0`` = it never expires); the first frame past that drops it. A prompt stamped
after the frame (clock skew, or a prompt made for upcoming frames) is attached.
Thread-safe: ROS callbacks ``set``/``clear`` while the policy worker calls ``for_frame``.

    held = HeldPrompt(max_age_s=30.0)
    held.set(prompt)
    prompt, expired = held.for_frame(frame_stamp)   # expired: it was dropped just now
"""

from __future__ import annotations

import threading

from tracevla_ros.policy.prompt import VisualPrompt

__all__ = ["HeldPrompt"]


class HeldPrompt:
    def __init__(self, max_age_s: float) -> None:
        if not max_age_s >= 0.0:
            raise ValueError(f"max_age_s must be >= 0 s (0 = never expires), got {max_age_s}")
        self.max_age_s = float(max_age_s)
        self._prompt: VisualPrompt | None = None
        self._lock = threading.Lock()

    @property
    def prompt(self) -> VisualPrompt | None:
        return self._prompt

    def set(self, prompt: VisualPrompt) -> None:
        """Replace the held prompt."""
        with self._lock:
            self._prompt = prompt

    def clear(self) -> bool:
        """Drop the held prompt; True if there was one."""
        with self._lock:
            had, self._prompt = self._prompt is not None, None
        return had

    def for_frame(self, stamp: float) -> tuple[VisualPrompt | None, bool]:
        """(the prompt for a frame stamped ``stamp`` s or None, whether it expired now)."""
        with self._lock:
            p = self._prompt
            if p is None:
                return None, False
            if self.max_age_s > 0.0 and p.age(stamp) > self.max_age_s:
                self._prompt = None
                return None, True
            return p, False
