"""Where2Place scoring, as the benchmark defines it (no rclpy).

Score of one question = the mean, over every predicted pixel, of the valid-region
mask's value there (the mask is read as grey / 255, so JPEG masks give graded
values); a pixel outside the image counts 0; an answer without points scores 0.
The benchmark's score is the mean over questions.

An answer is read the benchmark's way (``answer_pixels``): every parenthesized
tuple of 2 or 4 numbers. A number written with a '.' is a float, otherwise an
int. A 2-tuple with a float in it is a normalized point (``int(x * width)``,
``int(y * height)``), two ints are pixels. A 4-tuple is a box ``(x0, y0, x1, y1)``,
normalized when its first number is a float; every pixel ``[y0:y1, x0:x1]`` of
it is a predicted point. Other tuples are ignored.

``score_answer_file`` reads RoboPoint-format answers (jsonl, one ``{"text": ...}``
per line, in question order) and scores them against images' masks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["answer_pixels", "question_score", "benchmark_score", "load_mask",
           "score_answer_file"]

_NUM = r"[-+]?\d+\.?\d*"
_TUPLE = re.compile(rf"\(({_NUM}(?:,\s*{_NUM})*?)\)")


def _number(text: str) -> float | int:
    return float(text) if "." in text else int(text)


def answer_pixels(text: str, width: int, height: int) -> np.ndarray:
    """(N, 2) int pixel (x, y) of every point an answer predicts, the benchmark's way."""
    pts: list[tuple[int, int]] = []
    for match in _TUPLE.findall(text):
        vec = [_number(s.strip()) for s in match.split(",")]
        if len(vec) == 2:
            x, y = vec
            if isinstance(x, float) or isinstance(y, float):
                x, y = int(x * width), int(y * height)
            pts.append((int(x), int(y)))
        elif len(vec) == 4:
            x0, y0, x1, y1 = vec
            if isinstance(x0, float):
                x0, y0 = int(x0 * width), int(y0 * height)
                x1, y1 = int(x1 * width), int(y1 * height)
            box = np.zeros((height, width), dtype=bool)
            box[int(y0):int(y1), int(x0):int(x1)] = True
            ys, xs = np.nonzero(box)
            pts.extend(zip(xs.tolist(), ys.tolist()))
    return np.asarray(pts, dtype=np.int64).reshape(-1, 2)


def question_score(pixels: np.ndarray, mask: np.ndarray) -> float:
    """Mean mask value at the predicted pixels; outside the image 0; no pixels 0."""
    if len(pixels) == 0:
        return 0.0
    h, w = mask.shape[:2]
    x, y = pixels[:, 0], pixels[:, 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    values = np.zeros(len(pixels), dtype=np.float64)
    values[inside] = mask[y[inside], x[inside]]
    return float(values.mean())


def benchmark_score(scores: Sequence[float]) -> float:
    """Mean over questions; refuses an empty set (a score over nothing is not 0 or NaN)."""
    if len(scores) == 0:
        raise ValueError("no questions scored")
    return float(np.mean(scores))


def load_mask(path: Path) -> np.ndarray:
    """A mask image as float grey / 255 (what the benchmark compares against)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float64) / 255.0


def score_answer_file(answers: Path, masks: Iterable[Path]) -> dict[str, object]:
    """Score a RoboPoint-format answer file (jsonl, ``text`` per line) against masks in
    question order: per-question scores and the mean."""
    lines = [ln for ln in Path(answers).read_text().splitlines() if ln.strip()]
    mask_paths = list(masks)
    if len(lines) != len(mask_paths):
        raise ValueError(f"{answers}: {len(lines)} answers for {len(mask_paths)} masks; "
                         "one answer line per question, in question order")
    per_q: list[float] = []
    for i, (line, mpath) in enumerate(zip(lines, mask_paths)):
        try:
            text = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{answers}:{i + 1}: not a JSON object with a 'text' field") from None
        mask = load_mask(mpath)
        per_q.append(question_score(answer_pixels(str(text), mask.shape[1], mask.shape[0]), mask))
    return {"questions": len(per_q), "score": benchmark_score(per_q), "per_question": per_q}

