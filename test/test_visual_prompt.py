"""The plain-Python visual prompt (PixelVLA): validated once, pixel conversion exact."""

from __future__ import annotations

import numpy as np
import pytest

from tracevla_ros.policy.base import Observation
from tracevla_ros.policy.prompt import PromptError, VisualPrompt


def test_kinds_and_pixels():
    mask = np.zeros((4, 8), bool)
    mask[1:3, 2:5] = True
    p = VisualPrompt(points=[0.5, 0.25], lines=[[0.0, 0.0, 1.0, 1.0]], boxes=[[0.25, 0.5, 0.75, 1.0]],
                     mask=mask, labels=("cup", "path", "region"))
    assert p.kinds() == ("point", "line", "box", "mask")
    assert p.image_size == (8, 4)  # taken from the mask
    np.testing.assert_array_equal(p.pixel_points(), [[4.0, 1.0]])
    np.testing.assert_array_equal(p.pixel_lines(), [[0.0, 0.0, 8.0, 4.0]])
    np.testing.assert_array_equal(p.pixel_boxes(16, 8), [[4.0, 4.0, 12.0, 8.0]])
    assert p.mask.dtype == bool and p.mask.sum() == 6


def test_an_all_false_mask_alone_is_empty():
    with pytest.raises(PromptError, match="empty"):
        VisualPrompt(mask=np.zeros((4, 4), bool))


@pytest.mark.parametrize("kwargs, phrase", [
    ({}, "empty"),
    ({"points": [[0.5, float("nan")]]}, "non-finite"),
    ({"points": [[0.5, 1.2]]}, "normalized"),
    ({"points": [[0.1, 0.2, 0.3]]}, "(N, 2)"),
    ({"boxes": [[0.6, 0.1, 0.2, 0.5]]}, "x_max >= x_min"),
    ({"points": [[0.1, 0.1]], "labels": ("a", "b")}, "labels"),
    ({"mask": np.ones((2, 3), bool), "image_size": (4, 4)}, "image's size"),
    ({"points": [[0.1, 0.1]], "stamp": float("inf")}, "finite"),
])
def test_bad_prompts_are_refused_naming_the_part(kwargs, phrase):
    with pytest.raises(PromptError, match=None) as exc:
        VisualPrompt(**kwargs)
    assert phrase in str(exc.value)


def test_pixels_need_a_size():
    with pytest.raises(PromptError, match="image size"):
        VisualPrompt(points=[[0.1, 0.1]]).pixel_points()


def test_observation_carries_the_prompt():
    p = VisualPrompt(points=[[0.1, 0.9]], image_size=(4, 4), stamp=2.0)
    obs = Observation(np.zeros((4, 4, 3), np.uint8), None, "pick the left cup", prompt=p)
    assert obs.prompt is p and obs.prompt.age(2.5) == pytest.approx(0.5)
    assert Observation(np.zeros((4, 4, 3), np.uint8), None, "x").prompt is None
