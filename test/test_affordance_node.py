"""affordance_node over real DDS: answer -> AffordancePoints + VisualPrompt + overlay; a new
instruction supersedes the running request; bad input publishes nothing and crashes nothing."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from tracevla_ros.affordance.backend import AffordanceError, AffordanceResult, result_from_text  # noqa: E402
from tracevla_ros.msg import AffordancePoints, VisualPrompt  # noqa: E402
from tracevla_ros.nodes.affordance_node import AffordanceNode  # noqa: E402
from tracevla_ros.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, sec_to_stamp  # noqa: E402
from tracevla_ros.ros_image import numpy_to_image  # noqa: E402

pytestmark = pytest.mark.ros


class TextBackend:
    """Answers each instruction with a fixed text; 'fail' raises like a timed-out server;
    instructions in ``hold`` wait for ``release`` (a slow model)."""

    name = "text"

    def __init__(self, text: str, hold: tuple[str, ...] = ()) -> None:
        self.text, self.hold = text, hold
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []

    def predict(self, image: np.ndarray, instruction: str) -> AffordanceResult:
        self.calls.append(instruction)
        if instruction in self.hold:
            self.started.set()
            self.release.wait(5.0)
        if instruction == "fail":
            raise AffordanceError("affordance server 127.0.0.1:1 sent no answer within 0.1 s")
        return result_from_text(self.text)


def _session(backend: Any, steps: list[tuple[str, Any]], image_encoding: str = "rgb8",
             until: Any = None, seconds: float = 4.0) -> dict[str, list]:
    """Run the node; ``steps``: ("instruction", text) published in order once the node runs,
    or ("call", fn) called. Images every 0.05 s. Returns what was published."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = AffordanceNode(backend=backend, context=ctx)
    io = Node("affordance_io", context=ctx)
    got: dict[str, list] = {"points": [], "prompt": [], "overlay": []}
    io.create_subscription(AffordancePoints, "affordance", got["points"].append, RELIABLE_QOS)
    io.create_subscription(VisualPrompt, "prompt", got["prompt"].append, LATCHED_QOS)
    io.create_subscription(Image, "image_affordance", got["overlay"].append, RELIABLE_QOS)
    pub_img = io.create_publisher(Image, "image", SENSOR_QOS)
    pub_in = io.create_publisher(String, "instruction", LATCHED_QOS)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)
    img = np.zeros((24, 32, 3), np.uint8) if image_encoding == "rgb8" else np.zeros((24, 32), np.float32)
    todo = list(steps)
    end = time.monotonic() + seconds
    last = 0.0
    try:
        while time.monotonic() < end and not (until is not None and until(got)):
            if time.monotonic() - last > 0.05:
                last = time.monotonic()
                m = numpy_to_image(img, image_encoding)
                m.header.stamp = sec_to_stamp(io.get_clock().now().nanoseconds * 1e-9)
                m.header.frame_id = "cam"
                pub_img.publish(m)
                if todo and todo[0][0] == "instruction":
                    pub_in.publish(String(data=todo.pop(0)[1]))
                elif todo and todo[0][1]():  # a callable step returns True when done
                    todo.pop(0)
            ex.spin_once(timeout_sec=0.01)
        for _ in range(20):
            ex.spin_once(timeout_sec=0.01)
    finally:
        node.close()
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()
        rclpy.shutdown(context=ctx)
    return got


ANSWER = ("Subtype: placement in free space. Reference: the red cube at (0.40, 0.50). "
          "Final Answer: [(0.25, 0.5), (0.75, 0.125)]")


def test_answer_becomes_points_prompt_and_overlay() -> None:
    got = _session(TextBackend(ANSWER), [("instruction", "point to free space left of the red cube")],
                   until=lambda g: g["points"] and g["prompt"] and g["overlay"])
    ap, vp, ov = got["points"][0], got["prompt"][0], got["overlay"][0]
    assert ap.instruction == "point to free space left of the red cube"
    assert ap.reasoning.startswith("Subtype: placement in free space.")
    assert list(ap.points) == [0.25, 0.5, 0.75, 0.125]
    assert (vp.image_width, vp.image_height) == (32, 24) and list(vp.points) == list(ap.points)
    assert vp.header.stamp == ap.header.stamp and ap.header.frame_id == "cam"
    assert ov.encoding == "rgb8" and (ov.width, ov.height) == (32, 24)
    pixels = np.frombuffer(bytes(ov.data), np.uint8).reshape(24, 32, 3)
    assert tuple(pixels[12, 8]) == (40, 255, 60)  # the point (0.25, 0.5) drawn


def test_new_instruction_supersedes_the_running_request() -> None:
    backend = TextBackend(ANSWER, hold=("point to the red cube",))

    def second() -> bool:
        return backend.started.is_set()

    def release() -> bool:
        backend.release.set()
        return True

    got = _session(backend, [("instruction", "point to the red cube"), ("call", second),
                             ("instruction", "point to the blue ball"), ("call", release)],
                   until=lambda g: len(g["points"]) >= 1 and len(backend.calls) >= 2)
    assert backend.calls == ["point to the red cube", "point to the blue ball"]
    assert [p.instruction for p in got["points"]] == ["point to the blue ball"]


@pytest.mark.parametrize("case", ["empty_instruction", "bad_encoding", "backend_timeout",
                                  "points_outside", "no_points"])
def test_bad_input_publishes_nothing(case: str) -> None:
    text = {"points_outside": "Final Answer: [(1.4, 0.5), (-0.1, 0.2)]",
            "no_points": "I cannot see a cube."}.get(case, ANSWER)
    instruction = {"empty_instruction": "   ", "backend_timeout": "fail"}.get(case, "point to the cube")
    backend = TextBackend(text)
    got = _session(backend, [("instruction", instruction)], seconds=1.5,
                   image_encoding="32FC1" if case == "bad_encoding" else "rgb8")
    assert got == {"points": [], "prompt": [], "overlay": []}
    assert backend.calls == ([] if case in ("empty_instruction", "bad_encoding") else [instruction])
