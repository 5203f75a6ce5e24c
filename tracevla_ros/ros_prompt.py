"""tracevla_ros/msg/VisualPrompt <-> plain ``VisualPrompt`` (tracevla_ros.policy.prompt).

Imports ROS message types only (no rclpy node API), like ``ros_image``, so nodes,
the ``tracevla-prompt`` CLI and tests share it.

* ``prompt_from_msg(msg)`` -> ``VisualPrompt``, or ``None`` for an *empty* message
  (no points, lines, boxes or mask): the clear command. Anything malformed --
  list lengths that are not multiples of 2 / 4, non-finite or out-of-[0, 1]
  coordinates, inverted boxes, a mask that is not mono8 or not the image's size,
  label count mismatch -- raises ``PromptError`` naming the field; callers log it
  and keep their previous prompt.
* ``prompt_to_msg(prompt, frame_id)`` and ``clear_msg(stamp, frame_id)`` build messages.

Stamps are float seconds here (``VisualPrompt.stamp``) and builtin_interfaces/Time in
the message; a message stamped 0 keeps stamp 0.0 (the receiver decides what that means).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from builtin_interfaces.msg import Time

from tracevla_ros.msg import VisualPrompt as VisualPromptMsg
from tracevla_ros.policy.prompt import PromptError, VisualPrompt
from tracevla_ros.ros_image import ImageConversionError, image_to_numpy, numpy_to_image

__all__ = ["prompt_from_msg", "prompt_to_msg", "clear_msg", "is_clear", "stamp_of"]


def stamp_of(msg: Any) -> float:
    """The message header's stamp as float seconds."""
    return float(msg.header.stamp.sec) + float(msg.header.stamp.nanosec) * 1e-9


def _time(t: float) -> Time:
    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))


def is_clear(msg: Any) -> bool:
    """True for a message with no points, lines, boxes and no mask (= clear the prompt)."""
    return not (len(msg.points) or len(msg.lines) or len(msg.boxes) or int(msg.mask.width))


def _flat(name: str, values: Any, width: int) -> np.ndarray:
    arr = np.asarray(values, np.float32).ravel()
    if arr.size % width:
        raise PromptError(f"VisualPrompt.{name} has {arr.size} values; it must hold {width} per "
                          f"{name[:-1]} ({'x, y' if width == 2 else 'x0, y0, x1, y1'})")
    return arr.reshape(-1, width)


def prompt_from_msg(msg: Any) -> VisualPrompt | None:
    """The message as a validated ``VisualPrompt``; ``None`` if it is empty (clear)."""
    if is_clear(msg):
        return None
    size = (int(msg.image_width), int(msg.image_height))
    mask = None
    if int(msg.mask.width):
        if msg.mask.encoding != "mono8":
            raise PromptError(f"VisualPrompt.mask encoding is '{msg.mask.encoding}'; it must be mono8 "
                              "(0 = outside, non-zero = inside)")
        try:
            mask = image_to_numpy(msg.mask) != 0
        except ImageConversionError as exc:
            raise PromptError(f"VisualPrompt.mask: {exc}") from None
    return VisualPrompt(points=_flat("points", msg.points, 2), lines=_flat("lines", msg.lines, 4),
                        boxes=_flat("boxes", msg.boxes, 4), mask=mask, image_size=size,
                        labels=tuple(msg.labels), stamp=stamp_of(msg))


def prompt_to_msg(prompt: VisualPrompt, frame_id: str = "") -> VisualPromptMsg:
    """``prompt`` as a message (stamp = ``prompt.stamp``, mask as mono8 0 / 255)."""
    msg = VisualPromptMsg()
    msg.header.stamp = _time(prompt.stamp)
    msg.header.frame_id = frame_id
    msg.image_width, msg.image_height = (int(v) for v in prompt.image_size)
    msg.points = prompt.points.ravel().astype(float).tolist()
    msg.lines = prompt.lines.ravel().astype(float).tolist()
    msg.boxes = prompt.boxes.ravel().astype(float).tolist()
    if prompt.mask is not None:
        msg.mask = numpy_to_image(prompt.mask.astype(np.uint8) * 255, "mono8", msg.header)
    msg.labels = list(prompt.labels)
    return msg


def clear_msg(stamp: float = 0.0, frame_id: str = "") -> VisualPromptMsg:
    """An empty message: policy_node drops its prompt on receiving it."""
    msg = VisualPromptMsg()
    msg.header.stamp = _time(stamp)
    msg.header.frame_id = frame_id
    return msg
