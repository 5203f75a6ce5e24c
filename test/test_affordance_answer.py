"""Affordance answers: the node's lenient parser and the Where2Place scorer, pinned on
hand-built strings and masks (values worked out by hand in the comments)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tracevla_ros.affordance.answer import parse_answer
from tracevla_ros.affordance.where2place import (answer_pixels, benchmark_score,
                                                 question_score, score_answer_file)


# ----------------------------------------------------------------- parse_answer

def test_parenthesized_points():
    a = parse_answer("[(0.25, 0.5), (0.75, 0.125)]")
    assert a.points == [(0.25, 0.5), (0.75, 0.125)]
    assert a.ok and a.warnings == [] and a.boxes == []


def test_square_bracket_points():
    assert parse_answer("[[0.1, 0.2], [0.3, 0.4]]").points == [(0.1, 0.2), (0.3, 0.4)]


def test_bare_pairs_when_nothing_is_bracketed():
    assert parse_answer("0.5, 0.25\n0.125,0.75").points == [(0.5, 0.25), (0.125, 0.75)]


def test_box_becomes_its_centre_and_is_kept():
    a = parse_answer("(0.2, 0.4, 0.6, 0.8)")
    assert a.boxes == [(0.2, 0.4, 0.6, 0.8)]
    assert a.points == [pytest.approx((0.4, 0.6))]


def test_final_answer_form_ignores_coordinates_in_the_reasoning():
    text = ("Subtype: placement in free space. Reference: the plate at (0.5, 0.5). "
            "Target area: left of the plate.\nFinal Answer: [(0.2, 0.55), (0.25, 0.6)]")
    a = parse_answer(text)
    assert a.points == [(0.2, 0.55), (0.25, 0.6)]
    assert a.reasoning.startswith("Subtype: placement") and "Final" not in a.reasoning


def test_points_outside_unit_square_are_dropped_with_a_warning():
    a = parse_answer("[(0.5, 0.5), (1.5, 0.2), (-0.1, 0.3)]")
    assert a.points == [(0.5, 0.5)]
    assert len(a.warnings) == 1 and "2 point(s)" in a.warnings[0]


def test_unparsable_gives_no_points_and_a_warning():
    a = parse_answer("I cannot see a plate.")
    assert a.points == [] and not a.ok
    assert any("no points" in w for w in a.warnings)


def test_three_vectors_are_not_points():
    assert parse_answer("(0.1, 0.2, 0.3)").points == []


# ----------------------------------------------------------------- Where2Place

def test_answer_pixels_float_pairs_are_scaled_and_truncated():
    # int(0.5 * 640) = 320, int(0.25 * 480) = 120; int(0.999 * 640) = 639
    px = answer_pixels("[(0.5, 0.25), (0.999, 0.999)]", 640, 480)
    assert px.tolist() == [[320, 120], [639, 479]]


def test_answer_pixels_integer_pairs_are_pixels_and_one_float_scales_both():
    assert answer_pixels("(10, 20)", 640, 480).tolist() == [[10, 20]]
    assert answer_pixels("(1, 0.5)", 640, 480).tolist() == [[640, 240]]


def test_answer_pixels_reads_only_parentheses_not_brackets_or_bare():
    assert answer_pixels("[0.5, 0.5] 0.5, 0.5", 640, 480).shape == (0, 2)


def test_answer_pixels_box_is_every_pixel_in_it():
    # (0.0, 0.0, 0.5, 0.5) on 4x4 -> rows 0..1, cols 0..1: 4 pixels
    px = answer_pixels("(0.0, 0.0, 0.5, 0.5)", 4, 4)
    assert sorted(map(tuple, px.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # integer box is in pixels: x 1..2, y 0 -> 2 pixels
    assert sorted(map(tuple, answer_pixels("(1, 0, 3, 1)", 4, 4).tolist())) == [(1, 0), (2, 0)]


def test_question_score_counts_outside_points_as_zero():
    mask = np.zeros((4, 4))
    mask[:, :2] = 1.0  # left half valid
    px = np.array([[0, 0], [1, 3], [3, 3], [4, 0], [-1, 2]])  # in, in, out-of-mask, off-image x2
    assert question_score(px, mask) == pytest.approx(2 / 5)
    assert question_score(np.zeros((0, 2), dtype=np.int64), mask) == 0.0


def test_question_score_uses_graded_mask_values():
    mask = np.array([[0.5, 1.0]])
    assert question_score(np.array([[0, 0], [1, 0]]), mask) == pytest.approx(0.75)


def test_benchmark_score_refuses_zero_questions():
    with pytest.raises(ValueError, match="no questions"):
        benchmark_score([])
    assert benchmark_score([1.0, 0.0, 0.5]) == pytest.approx(0.5)


def test_score_answer_file_end_to_end(tmp_path):
    masks = []
    for i in range(3):
        m = np.zeros((10, 20), dtype=np.uint8)
        m[:, :10] = 255  # left half valid
        p = tmp_path / f"{i:02d}.png"
        Image.fromarray(m).save(p)
        masks.append(p)
    answers = [
        {"text": "[(0.25, 0.5), (0.75, 0.5)]"},  # one in, one out -> 0.5
        {"text": "(0.0, 0.0, 0.5, 1.0)"},  # box = left half exactly -> 1.0
        {"text": "no idea"},  # -> 0
    ]
    f = tmp_path / "answers.jsonl"
    f.write_text("\n".join(json.dumps(a) for a in answers) + "\n")
    res = score_answer_file(f, masks)
    assert res["per_question"] == pytest.approx([0.5, 1.0, 0.0])
    assert res["score"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 answers for 3 masks"):
        f2 = tmp_path / "short.jsonl"
        f2.write_text("\n".join(json.dumps(a) for a in answers[:2]))
        score_answer_file(f2, masks)
