"""Visual prompts without a ROS graph: VisualPrompt message conversion (round trip, bad
messages), the held prompt's expiry, the rviz-click projector, draw_prompt, and the
tracevla-prompt CLI's bad inputs (one line, exit 2, nothing published)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import bad_input
from support.bad_input import Case, check_in_process
from tracevla_ros.camera.base import CameraIntrinsics
from tracevla_ros.msg import VisualPrompt as VisualPromptMsg
from tracevla_ros.policy.prompt import PromptError, VisualPrompt
from tracevla_ros.policy.prompt_state import HeldPrompt
from tracevla_ros.ros_image import numpy_to_image
from tracevla_ros.ros_prompt import clear_msg, prompt_from_msg, prompt_to_msg
from tracevla_ros.viz.lift import CameraExtrinsic
from tracevla_ros.viz.prompt import (
    MASK_ALPHA,
    POINT_RADIUS,
    PROMPT_RGB,
    ProjectionError,
    click_prompt,
    draw_prompt,
    project_point,
)

# --------------------------------------------------------------------------- conversion


def _full_prompt() -> VisualPrompt:
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:6] = True
    return VisualPrompt(points=[[0.25, 0.5], [1.0, 0.0]], lines=[[0.0, 0.1, 0.9, 0.8]],
                        boxes=[[0.1, 0.2, 0.3, 0.4]], mask=mask, image_size=(8, 6),
                        labels=("a", "b", "c", "d"), stamp=1234.5)


def test_round_trip_keeps_every_field() -> None:
    p = _full_prompt()
    msg = prompt_to_msg(p, "camera_color_optical_frame")
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 500_000_000)
    assert msg.mask.encoding == "mono8" and (msg.mask.width, msg.mask.height) == (8, 6)
    q = prompt_from_msg(msg)
    assert q is not None
    np.testing.assert_array_equal(q.points, p.points)
    np.testing.assert_array_equal(q.lines, p.lines)
    np.testing.assert_array_equal(q.boxes, p.boxes)
    np.testing.assert_array_equal(q.mask, p.mask)
    assert q.labels == p.labels and q.image_size == (8, 6) and q.stamp == pytest.approx(1234.5)
    assert q.kinds() == ("point", "line", "box", "mask")


def test_an_empty_message_is_the_clear_command() -> None:
    assert prompt_from_msg(clear_msg(5.0)) is None
    assert prompt_from_msg(VisualPromptMsg()) is None


def _msg(**fields: object) -> VisualPromptMsg:
    msg = VisualPromptMsg(image_width=8, image_height=6)
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def _mask(arr: np.ndarray, encoding: str = "mono8") -> object:
    return numpy_to_image(arr, encoding)


BAD = [
    (dict(points=[0.1, 0.2, 0.3]), "points"),  # not pairs
    (dict(lines=[0.1, 0.2, 0.3, 0.4, 0.5]), "lines"),
    (dict(boxes=[0.1, 0.2, 0.3]), "boxes"),
    (dict(points=[float("nan"), 0.2]), "non-finite"),
    (dict(points=[float("inf"), 0.2]), "non-finite"),
    (dict(points=[1.5, 0.2]), "[0, 1]"),
    (dict(boxes=[-0.1, 0.2, 0.3, 0.4]), "[0, 1]"),
    (dict(boxes=[0.5, 0.5, 0.2, 0.9]), "x_max >= x_min"),  # inverted
    (dict(mask=_mask(np.ones((6, 8, 3), np.uint8), "rgb8")), "mono8"),
    (dict(mask=_mask(np.ones((5, 8), np.uint8))), "mask is 8x5"),  # size mismatch
    (dict(mask=_mask(np.zeros((6, 8), np.uint8))), "empty"),  # all outside
    (dict(points=[0.1, 0.2], labels=["a", "b"]), "labels"),
]


@pytest.mark.parametrize("fields,phrase", BAD, ids=[p for _, p in BAD])
def test_bad_messages_raise_prompt_error_naming_the_part(fields: dict, phrase: str) -> None:
    with pytest.raises(PromptError, match=phrase.replace("[", r"\[").replace("]", r"\]")):
        prompt_from_msg(_msg(**fields))


def test_a_mask_with_a_short_buffer_is_refused() -> None:
    mask = _mask(np.ones((6, 8), np.uint8))
    mask.data = bytes(mask.data)[:-3]
    with pytest.raises(PromptError, match="mask"):
        prompt_from_msg(_msg(mask=mask))


# --------------------------------------------------------------------------- held prompt


def test_held_prompt_expires_after_max_age_once() -> None:
    held = HeldPrompt(max_age_s=2.0)
    p = VisualPrompt(points=[[0.5, 0.5]], stamp=100.0)
    held.set(p)
    assert held.for_frame(99.0) == (p, False)  # a prompt stamped after the frame is given
    assert held.for_frame(102.0) == (p, False)  # age == max: still given
    assert held.for_frame(102.1) == (None, True)  # dropped now ...
    assert held.for_frame(102.2) == (None, False)  # ... and once
    held.set(p)
    assert held.clear() and not held.clear()


def test_max_age_zero_never_expires() -> None:
    held = HeldPrompt(max_age_s=0.0)
    p = VisualPrompt(points=[[0.5, 0.5]], stamp=1.0)
    held.set(p)
    assert held.for_frame(1e6) == (p, False)
    with pytest.raises(ValueError, match="max_age_s"):
        HeldPrompt(-1.0)


# --------------------------------------------------------------------------- projector

INTR = CameraIntrinsics(width=640, height=480, fx=500.0, fy=480.0, cx=320.5, cy=239.5)
# the WidowX sim camera's extrinsic (config/widowx.yaml trace_viz_node)
EXT = CameraExtrinsic.from_xyz_quat((0.0, -0.35, 0.45), (-0.84426, 0.336414, -0.154431, 0.387558))


def test_a_point_on_the_optical_axis_projects_to_the_principal_point() -> None:
    axis = EXT.rotation[:, 2]  # the optical axis (z) in the base frame
    u, v = project_point(EXT.translation + 0.7 * axis, INTR, EXT)
    assert (u, v) == pytest.approx((320.5, 239.5), abs=1e-9)
    # already in the optical frame (extrinsic None): off-axis by the pinhole model
    u, v = project_point(np.array([0.1, -0.05, 1.0]), INTR, None)
    assert (u, v) == pytest.approx((320.5 + 50.0, 239.5 - 24.0))


def test_the_click_prompt_is_normalized_and_stamped() -> None:
    p = click_prompt(EXT.translation + 0.7 * EXT.rotation[:, 2], INTR, EXT, stamp=42.25)
    assert p.kinds() == ("point",) and p.image_size == (640, 480) and p.stamp == 42.25
    np.testing.assert_allclose(p.points, [[320.5 / 640, 239.5 / 480]], rtol=1e-6)


def test_points_behind_or_outside_are_refused() -> None:
    behind = EXT.translation - 0.5 * EXT.rotation[:, 2]
    with pytest.raises(ProjectionError, match="behind the camera"):
        project_point(behind, INTR, EXT)
    with pytest.raises(ProjectionError, match="outside the 640x480 image"):
        project_point(np.array([2.0, 0.0, 1.0]), INTR, None)  # u = 1320 px


def test_plumb_bob_distortion_is_applied() -> None:
    import dataclasses

    dist = dataclasses.replace(INTR, distortion_model="plumb_bob", coeffs=(0.1, 0.0, 0.0, 0.0, 0.0))
    x, y = 0.2, 0.1  # normalized; r^2 = 0.05 -> radial factor 1.005
    u, v = project_point(np.array([x, y, 1.0]), dist, None)
    assert (u, v) == pytest.approx((320.5 + 500.0 * x * 1.005, 239.5 + 480.0 * y * 1.005))


# --------------------------------------------------------------------------- drawing


def test_draw_prompt_changes_exactly_the_point_disc() -> None:
    blank = np.full((40, 50, 3), 100, np.uint8)
    p = VisualPrompt(points=[[20 / 50, 10 / 40]], image_size=(50, 40))  # pixel (20, 10)
    out = draw_prompt(blank, p)
    yy, xx = np.mgrid[0:40, 0:50]
    d2 = (xx - 20) ** 2 + (yy - 10) ** 2
    changed = np.any(out != blank, axis=2)
    ring = POINT_RADIUS + 2
    np.testing.assert_array_equal(changed, d2 <= ring * ring)  # disc + its dark ring, nothing else
    assert np.all(out[d2 <= POINT_RADIUS ** 2] == PROMPT_RGB)
    assert np.all(out[(d2 > POINT_RADIUS ** 2) & (d2 <= ring * ring)] == 0)
    assert np.array_equal(blank, np.full((40, 50, 3), 100, np.uint8))  # input untouched
    assert np.array_equal(draw_prompt(blank, None), blank)


def test_draw_prompt_tints_the_mask_and_scales_to_the_image() -> None:
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True  # at 10x: rows 10-19, cols 20-29 of a 40x50 image
    out = draw_prompt(np.zeros((40, 50, 3), np.uint8), VisualPrompt(mask=mask))
    tinted = np.any(out != 0, axis=2)
    want = np.zeros((40, 50), bool)
    want[10:20, 20:30] = True
    np.testing.assert_array_equal(tinted, want)
    assert tuple(out[15, 25]) == tuple(round(c * MASK_ALPHA) for c in PROMPT_RGB)


def test_draw_prompt_draws_boxes_and_lines() -> None:
    p = VisualPrompt(boxes=[[0.2, 0.2, 0.8, 0.8]], lines=[[0.0, 0.5, 0.1, 0.5]])
    out = draw_prompt(np.zeros((100, 100, 3), np.uint8), p)
    assert tuple(out[20, 50]) == PROMPT_RGB and tuple(out[50, 80]) == PROMPT_RGB  # box edges
    assert tuple(out[50, 5]) == PROMPT_RGB  # the line
    assert not out[50, 50].any()  # inside the box: not filled


# --------------------------------------------------------------------------- CLI bad inputs


def _png(tmp: Path) -> None:
    import cv2

    (tmp / "junk.png").write_bytes(b"not a png")
    m = np.zeros((48, 64), np.uint8)
    m[10:20, 10:20] = 255
    cv2.imwrite(str(tmp / "mask.png"), m)


P = "tracevla-prompt"
CLI_CASES = [
    Case(f"{P}", 2, "nothing to send"),
    Case(f"{P} --label x", 2, "nothing to send"),
    Case(f"{P} --point 1.5 0.2", 2, "in [0, 1]"),
    Case(f"{P} --point -0.1 0.2", 2, "in [0, 1]"),
    Case(f"{P} --point nan 0.2", 2, "not finite"),
    Case(f"{P} --point 0.2", 2, "expected 2 arguments"),
    Case(f"{P} --line 0.1 0.2 0.3 1.2", 2, "--line"),
    Case(f"{P} --box 0.5 0.5 0.2 0.9", 2, "inverted"),
    Case(f"{P} --box 0.1 0.1 0.4 0.4 --label a --label b", 2, "labels"),
    Case(f"{P} --mask {{tmp}}/junk.png", 2, "not a readable image", setup=_png),
    Case(f"{P} --mask {{tmp}}/absent.png", 2, "does not exist", setup=_png),
    Case(f"{P} --mask {{tmp}}/mask.png --image-size 32 32", 2, "mask of the image's size", setup=_png),
    Case(f"{P} --pixels --image-size 640 480 --point 700 100", 2, "inside the 640x480 image"),
    Case(f"{P} --image-size 0 480 --point 0.1 0.1", 2, "out of range"),
    Case(f"{P} --clear --point 0.1 0.1", 2, "give it alone"),
    Case(f"{P} --point 0.1 0.1 --timeout 0", 2, "--timeout"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=str)
def test_cli_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracevla_ros.tools import prompt as tool

    installed = bad_input.entry_point  # the console script exists once setup.py is reinstalled
    monkeypatch.setattr(bad_input, "entry_point",
                        lambda name: tool.main if name == P else installed(name))
    check_in_process(case, tmp_path)
