"""Visual prompts over real DDS: policy_node gives the backend the newest valid prompt
(dropped after prompt_max_age_s, by an empty prompt or a new instruction; a bad one is
ignored), trace_viz_node turns an rviz click into a prompt and draws the active one,
and tracevla-prompt publishes one that a subscriber receives."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from support.node_procs import repo_env  # noqa: E402
from tracevla_ros.camera.base import CameraIntrinsics  # noqa: E402
from tracevla_ros.msg import VisualPrompt as VisualPromptMsg  # noqa: E402
from tracevla_ros.nodes.common import LATCHED_QOS, PROMPT_QOS, RELIABLE_QOS, SENSOR_QOS, sec_to_stamp  # noqa: E402
from tracevla_ros.nodes.policy_node import PolicyNode  # noqa: E402
from tracevla_ros.nodes.trace_viz_node import TraceVizNode  # noqa: E402
from tracevla_ros.policy.base import ActionChunk, Observation  # noqa: E402
from tracevla_ros.policy.prompt import VisualPrompt  # noqa: E402
from tracevla_ros.ros_image import camera_info_msg, image_to_rgb, numpy_to_image  # noqa: E402
from tracevla_ros.ros_prompt import clear_msg, prompt_from_msg, prompt_to_msg  # noqa: E402
from tracevla_ros.viz.lift import CameraExtrinsic  # noqa: E402
from tracevla_ros.viz.prompt import PROMPT_RGB  # noqa: E402

pytestmark = pytest.mark.ros


class PromptRecorder:
    """A real (trivial) backend that records every observation's prompt."""

    name = "prompt_recorder"

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def infer(self, obs: Observation) -> ActionChunk:
        self.seen.append(obs)
        return ActionChunk(values=np.array([[0.0, 0, 0, 0, 0, 0, 1.0]], np.float32))

    def reset(self) -> None:  # the node calls it on a new instruction; keep the record
        pass


class Loop:
    """policy_node and a peer in one context: frames stream in while the test publishes."""

    def __init__(self, max_age_s: float, require_prompt: bool = False) -> None:
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.policy = PromptRecorder()
        self.node = PolicyNode(policy=self.policy, context=self.ctx, parameter_overrides=[
            Parameter("control_rate_hz", value=20.0), Parameter("use_trace", value=False),
            Parameter("prompt_max_age_s", value=max_age_s),
            Parameter("require_prompt", value=require_prompt)])
        self.io = Node("prompt_io", context=self.ctx)
        self.active: list[VisualPromptMsg] = []
        self.io.create_subscription(VisualPromptMsg, "/policy_node/active_prompt", self.active.append,
                                    LATCHED_QOS)
        self.pub_img = self.io.create_publisher(Image, "image", SENSOR_QOS)
        self.pub_in = self.io.create_publisher(String, "instruction", LATCHED_QOS)
        self.pub_prompt = self.io.create_publisher(VisualPromptMsg, "visual_prompt", PROMPT_QOS)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.io)
        self._img = numpy_to_image(np.full((12, 16, 3), 5, np.uint8), "rgb8")
        self._last = 0.0

    def now(self) -> float:
        return self.io.get_clock().now().nanoseconds * 1e-9

    def spin_until(self, cond: Callable[[], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if time.monotonic() - self._last > 0.05:
                self._last = time.monotonic()
                self._img.header.stamp = sec_to_stamp(self.now())
                self.pub_img.publish(self._img)
            self.ex.spin_once(timeout_sec=0.02)
            if cond():
                return True
        return False

    def close(self) -> None:
        self.node.close()
        self.ex.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def _point(x: float, y: float, stamp: float) -> VisualPromptMsg:
    return prompt_to_msg(VisualPrompt(points=[[x, y]], image_size=(16, 12), stamp=stamp))


def _has_point(obs: Observation, xy: tuple[float, float]) -> bool:
    return obs.prompt is not None and np.allclose(obs.prompt.points, [xy])


def test_the_prompt_reaches_the_backend_until_max_age() -> None:
    loop = Loop(max_age_s=0.6)
    try:
        loop.pub_in.publish(String(data="pick the carrot"))
        stamp = loop.now() - 0.3  # given for frames up to stamp + 0.6 s, then dropped
        loop.pub_prompt.publish(_point(0.25, 0.5, stamp))
        assert loop.spin_until(lambda: any(_has_point(o, (0.25, 0.5)) for o in loop.policy.seen))
        assert loop.spin_until(lambda: loop.policy.seen[-1].prompt is None
                               and loop.policy.seen[-1].stamp > stamp + 1.0)
        seen = loop.policy.seen
        first = next(i for i, o in enumerate(seen) if o.prompt is not None)
        after = seen[first:]  # the frames since it arrived (topics are not ordered among each other)
        for o in after:
            assert (o.prompt is not None) == (o.stamp - stamp <= 0.6), (o.stamp - stamp, o.prompt)
        assert any(o.prompt is not None for o in after) and any(o.prompt is None for o in after)
        # ~/active_prompt: none at start, the prompt, none again at expiry
        assert loop.spin_until(lambda: len(loop.active) >= 2 and prompt_from_msg(loop.active[-1]) is None)
        kinds = [prompt_from_msg(m) is not None for m in loop.active]
        assert True in kinds and kinds[-1] is False
    finally:
        loop.close()


def test_require_prompt_acts_only_while_a_prompt_is_held() -> None:
    """require_prompt: frames before the first prompt and after it is cleared are not acted
    on (the backend never sees them); with a prompt, every frame is."""
    loop = Loop(max_age_s=0.0, require_prompt=True)
    try:
        loop.pub_in.publish(String(data="pick up the cube"))
        assert loop.spin_until(lambda: loop.node.frames_without_prompt >= 3)
        assert loop.policy.seen == []
        loop.pub_prompt.publish(_point(0.25, 0.5, loop.now()))
        assert loop.spin_until(lambda: len(loop.policy.seen) >= 3)
        assert all(_has_point(o, (0.25, 0.5)) for o in loop.policy.seen)
        loop.pub_prompt.publish(clear_msg())  # cleared: no action again
        assert loop.spin_until(lambda: prompt_from_msg(loop.active[-1]) is None if loop.active
                               else False)
        n, skipped = len(loop.policy.seen), loop.node.frames_without_prompt
        assert loop.spin_until(lambda: loop.node.frames_without_prompt >= skipped + 3)
        assert all(o.prompt is not None for o in loop.policy.seen)
        assert len(loop.policy.seen) <= n + 1  # at most a frame already being acted on
    finally:
        loop.close()


def test_bad_prompts_are_ignored_empty_and_new_instruction_clear() -> None:
    loop = Loop(max_age_s=0.0)  # never expires
    try:
        seen = loop.policy.seen
        loop.pub_in.publish(String(data="pick the carrot"))
        loop.pub_prompt.publish(_point(0.25, 0.5, loop.now()))
        assert loop.spin_until(lambda: bool(seen) and _has_point(seen[-1], (0.25, 0.5)))
        bad = _point(0.25, 0.5, loop.now())
        bad.points = [1.5, 0.5]  # outside [0, 1]
        loop.pub_prompt.publish(bad)
        n = len(seen)
        loop.spin_until(lambda: len(seen) > n + 8, timeout=3.0)
        assert len(seen) > n + 8 and all(_has_point(o, (0.25, 0.5)) for o in seen[n:])
        # an unstamped prompt counts from its arrival: given at once
        loop.pub_prompt.publish(_point(0.75, 0.25, 0.0))
        assert loop.spin_until(lambda: _has_point(seen[-1], (0.75, 0.25)))
        assert abs(seen[-1].prompt.stamp - loop.now()) < 5.0  # type: ignore[union-attr]
        loop.pub_prompt.publish(clear_msg())
        assert loop.spin_until(lambda: seen[-1].prompt is None)
        loop.pub_prompt.publish(_point(0.5, 0.5, loop.now()))
        assert loop.spin_until(lambda: _has_point(seen[-1], (0.5, 0.5)))
        loop.pub_in.publish(String(data="push the block"))
        assert loop.spin_until(lambda: seen[-1].instruction == "push the block"
                               and seen[-1].prompt is None
                               and prompt_from_msg(loop.active[-1]) is None)
    finally:
        loop.close()


# --------------------------------------------------------------------------- trace_viz_node

INTR = CameraIntrinsics(width=64, height=48, fx=50.0, fy=50.0, cx=31.5, cy=23.5)
EXT = CameraExtrinsic.from_xyz_quat((0.0, -0.35, 0.45), (-0.84426, 0.336414, -0.154431, 0.387558))


def _click(p: np.ndarray, stamp: float, frame: str = "wx250s/base_link") -> PointStamped:
    msg = PointStamped()
    msg.header.stamp, msg.header.frame_id = sec_to_stamp(stamp), frame
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in p)
    return msg


def test_rviz_click_becomes_a_prompt_and_the_active_prompt_is_drawn() -> None:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = TraceVizNode(context=ctx)
    io = Node("viz_prompt_io", context=ctx)
    prompts: list[VisualPromptMsg] = []
    images: list[Image] = []
    sub_prompt = io.create_subscription(VisualPromptMsg, "visual_prompt", prompts.append, PROMPT_QOS)
    io.create_subscription(Image, "image_prompt", images.append, SENSOR_QOS)
    pub_info = io.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
    pub_click = io.create_publisher(PointStamped, "clicked_point", RELIABLE_QOS)
    pub_active = io.create_publisher(VisualPromptMsg, "active_prompt", LATCHED_QOS)
    pub_overlay = io.create_publisher(Image, "image_trace", SENSOR_QOS)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    ex.add_node(io)

    def spin(cond: Callable[[], bool], publish: Callable[[], Any], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            publish()
            ex.spin_once(timeout_sec=0.05)
        return cond()

    try:
        assert spin(lambda: node._info is not None, lambda: pub_info.publish(camera_info_msg(INTR)))
        assert spin(lambda: pub_click.get_subscription_count() > 0
                    and sub_prompt.get_publisher_count() > 0, lambda: None)
        axis = EXT.rotation[:, 2]
        pub_click.publish(_click(EXT.translation - 0.5 * axis, 10.0))  # behind: refused
        pub_click.publish(_click(np.array([0.0, 0.0, 0.0]), 11.0, "some_other_frame"))  # refused
        pub_click.publish(_click(EXT.translation + 0.7 * axis, 12.5))  # on the optical axis
        assert spin(lambda: bool(prompts), lambda: None)
        spin(lambda: False, lambda: None, timeout=0.3)
        assert len(prompts) == 1  # the refused clicks were published first, on the same topic
        got = prompt_from_msg(prompts[0])
        assert got is not None and got.image_size == (64, 48) and got.stamp == pytest.approx(12.5)
        np.testing.assert_allclose(got.pixel_points(), [[31.5, 23.5]], atol=1e-4)
        assert prompts[0].header.frame_id == "camera_color_optical_frame"

        # the active prompt drawn on the overlay: pixel (32, 24) of a grey image
        pub_active.publish(prompt_to_msg(VisualPrompt(points=[[0.5, 0.5]], image_size=(64, 48))))
        grey = numpy_to_image(np.full((48, 64, 3), 90, np.uint8), "rgb8")

        def drawn() -> bool:
            return bool(images) and tuple(image_to_rgb(images[-1])[24, 32]) == PROMPT_RGB

        assert spin(drawn, lambda: pub_overlay.publish(grey))
        out = image_to_rgb(images[-1])
        assert tuple(out[2, 2]) == (90, 90, 90)  # elsewhere: the overlay as it was
    finally:
        ex.shutdown()
        node.destroy_node()
        io.destroy_node()
        rclpy.try_shutdown(context=ctx)


# --------------------------------------------------------------------------- CLI


def test_cli_publishes_one_prompt_in_pixels_of_the_camera_info(repo_root: Path) -> None:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    io = Node("cli_peer", context=ctx)
    got: list[VisualPromptMsg] = []
    io.create_subscription(VisualPromptMsg, "/visual_prompt", got.append, PROMPT_QOS)
    pub_info = io.create_publisher(CameraInfo, "/camera/camera_info", SENSOR_QOS)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(io)
    code = "import sys; from tracevla_ros.tools.prompt import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "--pixels", "--point", "320", "240",
                             "--box", "0", "0", "64", "48", "--label", "here", "--label", "there",
                             "--timeout", "20"],
                            cwd=repo_root, env=repo_env(repo_root), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    info = camera_info_msg(CameraIntrinsics(width=640, height=480, fx=500.0, fy=500.0, cx=320, cy=240))
    try:
        end = time.monotonic() + 40.0
        while time.monotonic() < end and (not got or proc.poll() is None):
            pub_info.publish(info)
            ex.spin_once(timeout_sec=0.05)
        out = proc.communicate(timeout=20)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ex.shutdown()
        io.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert proc.returncode == 0, out
    assert len(got) == 1, out
    p = prompt_from_msg(got[0])
    assert p is not None and p.image_size == (640, 480) and p.labels == ("here", "there")
    np.testing.assert_allclose(p.points, [[0.5, 0.5]])
    np.testing.assert_allclose(p.boxes, [[0.0, 0.0, 0.1, 0.1]])
    assert got[0].header.stamp.sec == 0  # unstamped: policy_node stamps it on arrival
