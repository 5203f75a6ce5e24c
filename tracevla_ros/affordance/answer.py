"""Reading a RoboPoint/TRACE-style text answer into normalized image points.

The models answer with an optional chain of reasoning followed by a list of
points, normalized to [0, 1] (x = column / width, y = row / height). Real
outputs vary, so the parser accepts, in order of preference:

* the part after a ``Final Answer:`` marker when there is one (the reasoning
  before it may itself mention coordinates, which must not count);
* tuples ``(x, y)`` or lists ``[x, y]``; 4-number tuples/lists are boxes
  ``(x0, y0, x1, y1)`` and stand for their centre point (a box is kept too);
* bare ``x, y`` pairs when no bracketed ones are found.

Values outside [0, 1] are not points of this image: they are dropped with a
warning, as is text with nothing parsable (no points, one warning). The node
publishes no prompt then. The Where2Place benchmark's own, stricter reading of
an answer (parentheses only, integers as pixels) is in ``where2place.py``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["ParsedAnswer", "parse_answer", "FINAL_ANSWER"]

FINAL_ANSWER = re.compile(r"final\s+answer\s*[:：]", re.IGNORECASE)
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_SEQ = rf"{_NUM}(?:\s*,\s*{_NUM})*"
_BRACKETED = re.compile(rf"\(\s*({_SEQ})\s*\)|\[\s*({_SEQ})\s*\]")
_BARE_PAIR = re.compile(rf"(?<![\w.\-+])({_NUM})\s*,\s*({_NUM})(?![\w.])")


@dataclass
class ParsedAnswer:
    """Points (and boxes) read from an answer, in normalized image coordinates."""

    reasoning: str  # the text before "Final Answer:" (the whole text when there is none)
    points: list[tuple[float, float]] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.points)


def _in_unit(v: float) -> bool:
    return math.isfinite(v) and 0.0 <= v <= 1.0


def parse_answer(text: str) -> ParsedAnswer:
    """Normalized points (and boxes) from a model's answer; warnings say what was dropped."""
    m = FINAL_ANSWER.search(text)
    reasoning, answer = (text[:m.start()].strip(), text[m.end():]) if m else (text.strip(), text)
    out = ParsedAnswer(reasoning=reasoning)
    groups = [g1 or g2 for g1, g2 in _BRACKETED.findall(answer)]
    vectors = [[float(v) for v in re.findall(_NUM, g)] for g in groups]
    if not vectors:
        vectors = [[float(a), float(b)] for a, b in _BARE_PAIR.findall(answer)]
    dropped = 0
    for vec in vectors:
        if len(vec) not in (2, 4):
            continue  # e.g. a 3-vector in the reasoning: not a point or a box
        if not all(_in_unit(v) for v in vec):
            dropped += 1
            continue
        if len(vec) == 2:
            out.points.append((vec[0], vec[1]))
        else:
            x0, y0, x1, y1 = vec
            if x1 < x0 or y1 < y0:
                dropped += 1
                continue
            out.boxes.append((x0, y0, x1, y1))
            out.points.append(((x0 + x1) / 2.0, (y0 + y1) / 2.0))
    if dropped:
        out.warnings.append(f"{dropped} point(s)/box(es) outside [0, 1] (or inverted) dropped; "
                            "the model must answer normalized image coordinates")
    if not out.points:
        snippet = " ".join(answer.split())[:80]
        out.warnings.append(f"no points in the answer ({snippet!r}); no prompt published")
    return out
