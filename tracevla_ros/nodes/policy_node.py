"""policy_node: pairs each camera frame with its trace and overlay, runs the
policy on it in a worker thread, publishes PolicyAction.

Event-driven: every callback stores its item (O(1)) and wakes the worker, which
acts on a frame as soon as its trace and overlay are there (with ``use_trace``;
else the image alone), no more often than ``control_rate_hz`` by the frame's
stamp (``tracevla_ros.ratelimit.StampRateLimiter``). No free-running timer: a
frame waits for nothing but its own inputs and the inference.

Subscribes: image (sensor_msgs/Image), trace (VisualTrace), image_trace
(overlay Image), instruction (std_msgs/String, transient local), joint_states,
visual_prompt (VisualPrompt, reliable, keep-last 1: a command, not sensor data).
Publishes:  action (PolicyAction). Nothing is published without an instruction,
for stale inputs, or when the policy fails (one log line says why).
            ~/active_prompt (VisualPrompt, latched): the prompt the policy is given now;
            an empty message = none (sent at start, on clear and on expiry).

Visual prompts (``tracevla_ros.policy.prompt_state.HeldPrompt``): the newest valid
one is given to the backend in ``Observation.prompt`` for every frame stamped at
most ``prompt_max_age_s`` after it (0 = no expiry), then dropped with one log line.
An empty VisualPrompt clears it; so does a new instruction unless
``keep_prompt_on_instruction``. A malformed one is refused with a throttled warning
and the held prompt stays. A prompt stamped 0 counts from its arrival (node clock).

Proprioception is the joint state of the frame's time: the newest one stamped at
or before the camera stamp (``tracevla_ros.stamped``), else the newest received;
so a recorded run's observations can be rebuilt exactly by tracevla-replay.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from tracevla_ros.msg import PolicyAction, VisualPrompt, VisualTrace
from tracevla_ros.nodes.common import (
    LATCHED_QOS,
    PROMPT_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    declare_config,
    run_node,
    sec_to_stamp,
    stamp_to_sec,
)
from tracevla_ros.policy.base import Observation, Policy, PolicyError, validate_chunk
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.pairing import ObservationPairer, Paired, TraceInfo
from tracevla_ros.policy.prompt import PromptError
from tracevla_ros.policy.prompt_state import HeldPrompt
from tracevla_ros.policy.registry import make_policy
from tracevla_ros.ratelimit import StampRateLimiter
from tracevla_ros.ros_image import ImageConversionError, image_to_rgb
from tracevla_ros.ros_prompt import clear_msg, prompt_from_msg, prompt_to_msg
from tracevla_ros.stamped import StampedBuffer
from tracevla_ros.worker import WakeWorker

# Joint states kept for pairing: > max_input_age_s of a 1 kHz arm (franka_ros2).
_JOINT_STATES_KEPT = 2000
# The longest a frame waits for the joint state of its time: > one period of a 50 Hz arm.
_PROPRIO_WAIT_S = 0.03


class PolicyNode(Node):
    def __init__(self, policy: Policy | None = None, **kwargs: object) -> None:
        super().__init__("policy_node", **kwargs)  # type: ignore[arg-type]
        self.cfg = declare_config(self, PolicyNodeConfig)
        self._policy: Policy = policy if policy is not None else make_policy(self.cfg)
        self._pairer = ObservationPairer(require_trace=self.cfg.use_trace,
                                         tolerance_s=self.cfg.pairing_tolerance_s)
        self._instruction = self.cfg.instruction.strip()
        self._proprio: StampedBuffer[np.ndarray] = StampedBuffer(_JOINT_STATES_KEPT)
        self._limit = StampRateLimiter(self.cfg.control_rate_hz)
        self._prompt = HeldPrompt(self.cfg.prompt_max_age_s)
        self.frames_without_prompt = 0  # frames not acted on for want of a prompt (require_prompt)
        # held prompt + ~/active_prompt change together (callbacks set it, the worker expires it)
        self._prompt_lock = threading.Lock()
        self._pub_prompt = self.create_publisher(VisualPrompt, "~/active_prompt", LATCHED_QOS)
        self._pub_prompt.publish(clear_msg())
        self.create_subscription(Image, "image", self._on_image, SENSOR_QOS)
        self.create_subscription(Image, "image_trace", self._on_image_trace, SENSOR_QOS)
        self.create_subscription(VisualTrace, "trace", self._on_trace, RELIABLE_QOS)
        self.create_subscription(String, "instruction", self._on_instruction, LATCHED_QOS)
        self.create_subscription(JointState, "joint_states", self._on_joint_states, SENSOR_QOS)
        self.create_subscription(VisualPrompt, "visual_prompt", self._on_visual_prompt, PROMPT_QOS)
        self._pub = self.create_publisher(PolicyAction, "action", RELIABLE_QOS)
        self.published = 0
        self._worker = WakeWorker(self._on_wake, "policy_worker", on_error=self._on_worker_error)
        self._worker.start()
        self.get_logger().info(f"policy '{self._policy.name}' at {self.cfg.control_rate_hz} Hz, "
                               f"trace {'on' if self.cfg.use_trace else 'off'}")

    # --- callbacks: O(1), keep the latest -----------------------------------
    def _on_image(self, msg: Image) -> None:
        try:
            self._pairer.add_image(stamp_to_sec(msg.header.stamp), image_to_rgb(msg), msg.header.stamp)
            self._worker.wake()
        except ImageConversionError as exc:
            self.get_logger().error(f"image dropped: {exc}", throttle_duration_sec=5.0)

    def _on_image_trace(self, msg: Image) -> None:
        try:
            self._pairer.add_overlay(stamp_to_sec(msg.header.stamp), image_to_rgb(msg))
            self._worker.wake()
        except ImageConversionError as exc:
            self.get_logger().error(f"overlay dropped: {exc}", throttle_duration_sec=5.0)

    def _on_trace(self, msg: VisualTrace) -> None:
        self._pairer.add_trace(TraceInfo(stamp_to_sec(msg.header.stamp), bool(msg.valid)))
        self._worker.wake()

    def _on_instruction(self, msg: String) -> None:
        text = msg.data.strip()
        if not text:
            self.get_logger().error("empty instruction received: holding (no actions) until a "
                                    "non-empty one arrives")
        elif text != self._instruction:
            self.get_logger().info(f"instruction: '{text}'")
            self._policy.reset()
            if not self.cfg.keep_prompt_on_instruction and self._clear_prompt():
                self.get_logger().info("new instruction: visual prompt cleared "
                                       "(keep_prompt_on_instruction: false)")
        self._instruction = text

    def _on_visual_prompt(self, msg: VisualPrompt) -> None:
        log = self.get_logger()
        try:
            prompt = prompt_from_msg(msg)
        except PromptError as exc:
            log.warning(f"visual prompt ignored (the previous one stays): {exc}",
                        throttle_duration_sec=5.0)
            return
        if prompt is None:
            if self._clear_prompt():
                log.info("visual prompt cleared (empty VisualPrompt)")
            return
        if prompt.stamp == 0.0:  # unstamped: counts from its arrival
            prompt = dataclasses.replace(prompt, stamp=self.get_clock().now().nanoseconds * 1e-9)
        with self._prompt_lock:
            held = self._prompt.prompt
            fresh = held is None or held.kinds() != prompt.kinds()
            self._prompt.set(prompt)
            self._pub_prompt.publish(prompt_to_msg(prompt, msg.header.frame_id))
        # a stream of prompts (sim_node's oracle: one per frame) is logged once per kind
        text = f"visual prompt: {', '.join(prompt.kinds())} (stamp {prompt.stamp:.3f} s)"
        if fresh:
            log.info(text)
        else:
            log.debug(text)

    def _clear_prompt(self) -> bool:
        """Drop the held prompt and say so on ~/active_prompt; True if there was one."""
        with self._prompt_lock:
            had = self._prompt.clear()
            self._pub_prompt.publish(clear_msg())
        return had

    def _on_joint_states(self, msg: JointState) -> None:
        self._proprio.add(stamp_to_sec(msg.header.stamp), np.asarray(msg.position, dtype=np.float32))

    # --- worker ---------------------------------------------------------------
    def _on_wake(self) -> None:
        paired = self._pairer.latest()
        if paired is not None and self._limit.due(paired.stamp):
            self._wait_for_joint_state(paired.stamp)
            self._step(paired)

    def _on_worker_error(self, exc: Exception) -> None:  # the node keeps running; logged
        self.get_logger().error(f"policy step failed: {type(exc).__name__}: {exc}",
                                throttle_duration_sec=2.0)

    def _wait_for_joint_state(self, stamp: float) -> None:
        """Wait (at most ``_PROPRIO_WAIT_S``) until a joint state stamped at or after the
        frame has arrived, so the frame's proprioception is the one a replay of the recording
        computes, whatever order the callbacks ran in (the sim stamps the frame and a joint
        state alike). Without joint states at all, the newest one is used at once."""
        end = time.monotonic() + _PROPRIO_WAIT_S
        while not self._worker.stopping.is_set():
            newest = self._proprio.newest_stamp()
            if newest is None or newest >= stamp or time.monotonic() >= end:
                return
            self._worker.stopping.wait(0.001)

    def _step(self, paired: Paired) -> None:
        log = self.get_logger()
        if not self._instruction:
            log.warning("no instruction yet: publishing nothing", throttle_duration_sec=10.0)
            return
        t0 = time.monotonic()
        now = self.get_clock().now().nanoseconds * 1e-9
        age = now - paired.stamp
        if age > self.cfg.max_input_age_s:
            log.warning(f"observation is {age:.2f} s old (> max_input_age_s "
                     f"{self.cfg.max_input_age_s} s): no action", throttle_duration_sec=2.0)
            return
        proprio = self._proprio.at(paired.stamp)
        if proprio is None:  # every joint state is newer than the frame (or none yet)
            proprio = self._proprio.latest()
        with self._prompt_lock:
            prompt, expired = self._prompt.for_frame(paired.stamp)
            if expired:
                self._pub_prompt.publish(clear_msg())
        if expired:
            log.info(f"visual prompt dropped: older than prompt_max_age_s "
                     f"{self.cfg.prompt_max_age_s} s at the frame stamped {paired.stamp:.3f} s")
        if prompt is None and self.cfg.require_prompt:
            self.frames_without_prompt += 1
            log.info("no visual prompt yet (require_prompt): no action",
                     throttle_duration_sec=5.0)
            return
        try:
            obs = Observation(image=paired.image, overlay=paired.overlay,
                              instruction=self._instruction,
                              proprio=proprio if proprio is not None else np.zeros(0, np.float32),
                              stamp=paired.stamp, prompt=prompt)
            chunk = validate_chunk(self._policy.infer(obs))
        except PolicyError as exc:
            log.error(f"policy '{self._policy.name}' gave no usable action: {exc}",
                      throttle_duration_sec=2.0)
            return
        age = self.get_clock().now().nanoseconds * 1e-9 - paired.stamp
        if age > self.cfg.max_input_age_s:
            log.warning(f"action ready {age:.2f} s after its frame (> max_input_age_s "
                        f"{self.cfg.max_input_age_s} s): dropped as stale", throttle_duration_sec=2.0)
            return
        msg = PolicyAction(action_space=chunk.action_space,
                           chunk_length=int(chunk.values.shape[0]),
                           action_dim=int(chunk.values.shape[1]),
                           values=chunk.values.ravel().tolist(), trace_used=chunk.trace_used,
                           inference_latency_s=float(time.monotonic() - t0),
                           policy_name=self._policy.name)
        msg.header.stamp = (paired.source_stamp if paired.source_stamp is not None
                            else sec_to_stamp(paired.stamp))
        msg.header.frame_id = self.cfg.base_frame
        self._pub.publish(msg)
        self.published += 1

    def close(self) -> None:
        self._worker.close()
        close = getattr(self._policy, "close", None)  # e.g. the remote backend's connection
        if callable(close):
            close()


def main(args: list[str] | None = None) -> int:
    return run_node(PolicyNode, args, name="policy_node", config=PolicyNodeConfig)
