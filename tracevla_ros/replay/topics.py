"""Which bag topic is what: auto-detection by message type, flags win; image decoding.

Roles and the types that fill them:

============  ==========================================  =====================
role          types                                       preferred name
============  ==========================================  =====================
image         sensor_msgs/Image, sensor_msgs/CompressedImage  .../image_raw, colour
instruction   std_msgs/String                             .../instruction
joint_states  sensor_msgs/JointState                      /joint_states
action        tracevla_ros/PolicyAction                   .../action
trace         tracevla_ros/VisualTrace                    /trace
prompt        tracevla_ros/VisualPrompt                   /visual_prompt
============  ==========================================  =====================

Image candidates exclude depth streams (name contains ``depth``) and the
tracker's overlay (``image_trace``); among the rest a raw image beats a
compressed one, then a name with ``image_raw``/``color``/``rgb``, then the
most messages. Only the image is required; the report says what was chosen and
which other candidates there were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from tracevla_ros.bag.reader import BagReader, BagReadError, BagTopic
from tracevla_ros.tracking import TrackerInputError, decode_image

__all__ = ["IMAGE_TYPES", "ROLE_TYPES", "TopicSelection", "select_topics", "image_from_msg",
           "ImageDecodeError"]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "image": IMAGE_TYPES,
    "instruction": ("std_msgs/msg/String",),
    "joint_states": ("sensor_msgs/msg/JointState",),
    "action": ("tracevla_ros/msg/PolicyAction",),
    "trace": ("tracevla_ros/msg/VisualTrace",),
    "prompt": ("tracevla_ros/msg/VisualPrompt",),
}
_PREFERRED = {"instruction": "instruction", "joint_states": "joint_states", "action": "action",
              "trace": "trace", "prompt": "visual_prompt"}


class ImageDecodeError(ValueError):
    """An image message cannot be turned into an RGB array."""


@dataclass(frozen=True)
class TopicSelection:
    """The topic chosen per role ('' = none in the bag) and how."""

    image: str
    instruction: str = ""
    joint_states: str = ""
    action: str = ""
    trace: str = ""
    prompt: str = ""
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, str]:
        return {r: getattr(self, r) for r in ROLE_TYPES}


def _image_rank(t: BagTopic) -> tuple[int, int, int]:
    name = t.name.lower()
    named = any(k in name for k in ("image_raw", "color", "rgb"))
    return (int(t.msgtype == IMAGE), int(named), t.count)


def select_topics(bag: BagReader, flags: dict[str, str]) -> TopicSelection:
    """Pick one topic per role; ``flags`` (role -> topic, '' = auto) override detection.

    Raises BagReadError (with the topics found) when there is no usable image
    topic or a flagged topic is missing or of the wrong type.
    """
    chosen: dict[str, str] = {}
    notes: list[str] = []
    for role, types in ROLE_TYPES.items():
        flagged = flags.get(role, "")
        if flagged:
            bag.require(flagged, types)
            chosen[role] = flagged
            continue
        cands = [t for t in bag.topics_of_type(*types) if t.known]
        if role == "image":
            cands = [t for t in cands if "depth" not in t.name.lower()
                     and not t.name.endswith("image_trace")]
            if cands and not any(t.count for t in cands):
                raise BagReadError(
                    f"{bag.path}: the camera image topic(s) {[t.name for t in cands]} hold no "
                    f"messages (the recording stopped before the first frame?); topics found: "
                    f"{bag.describe_topics()}")
        cands = [t for t in cands if t.count > 0]
        if role == "image":
            if not cands:
                unknown = [t.name for t in bag.topics.values() if not t.known]
                extra = (f"; topics of unknown type (not decodable): {unknown}" if unknown else "")
                raise BagReadError(
                    f"{bag.path}: no camera image topic (sensor_msgs/msg/Image or CompressedImage, "
                    f"not depth, not the tracker's image_trace){extra}; topics found: "
                    f"{bag.describe_topics()}; name one with --image-topic")
            cands.sort(key=_image_rank, reverse=True)
        else:
            key = _PREFERRED[role]
            cands.sort(key=lambda t: (int(t.name.rstrip("/").endswith(key)), t.count), reverse=True)
        if cands:
            chosen[role] = cands[0].name
            if len(cands) > 1:
                notes.append(f"{role}: chose {cands[0].name} over {[t.name for t in cands[1:]]} "
                             f"(set --{role.replace('_', '-')}-topic to choose)")
        else:
            chosen[role] = ""
    return TopicSelection(notes=tuple(notes), **chosen)


def image_from_msg(msg: object, msgtype: str) -> np.ndarray:
    """sensor_msgs Image (rgb8/bgr8/mono8) or CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB."""
    try:
        if msgtype == COMPRESSED:
            buf = np.asarray(msg.data, dtype=np.uint8).reshape(-1)  # type: ignore[attr-defined]
            bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
            if bgr is None:
                fmt = getattr(msg, "format", "?")
                raise ImageDecodeError(f"compressed image (format '{fmt}') does not decode "
                                       "(jpeg/png expected)")
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        img = decode_image(msg.data, int(msg.width), int(msg.height),  # type: ignore[attr-defined]
                           str(msg.encoding), int(msg.step))  # type: ignore[attr-defined]
    except TrackerInputError as exc:
        raise ImageDecodeError(str(exc)) from None
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return img
