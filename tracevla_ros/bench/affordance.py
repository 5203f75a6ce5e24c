"""``tracevla-bench affordance``: Where2Place score on the sim question set, or of an answer file.

Example::

    tracevla-bench affordance --data /work/data/h16aff/sim_test \\
        --checkpoint tracevla_ros/affordance/checkpoints/sim_small \\
        --ablation /work/data/h16aff/small_noreason
    tracevla-bench affordance --answers answers.jsonl --masks MASK_DIR   # RoboPoint-format answers

Methods on the sim set (``python -m tracevla_ros.affordance.train --make-data``):
``small`` (with reasoning supervision), ``small_no_reasoning`` (``--ablation``),
``oracle`` (``--points`` points drawn uniformly from the valid region) and
``random`` (uniform over the image). Every answer is turned into text and
scored the benchmark's way (``where2place.answer_pixels`` + ``question_score``).
Scores per method for all, seen and unseen questions with a 95 % bootstrap
interval over questions (``--boot`` resamples, seeded).

``--answers FILE --masks DIR``: score a RoboPoint-format answer file (jsonl, one
``{"text": ...}`` per question) against the masks of DIR in sorted file-name
order (Where2Place: masks/00.jpg ... 99.jpg), as the benchmark's scorer does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tracevla_ros.affordance.where2place import answer_pixels, load_mask, question_score, \
    score_answer_file
from tracevla_ros.cli import ArgParser, UsageError, existing_dir, existing_file, int_range

_MASK_EXT = (".png", ".jpg", ".jpeg")


def bootstrap(scores: Sequence[float] | np.ndarray, n: int, seed: int) -> dict[str, Any]:
    """Mean and 95 % percentile bootstrap interval over questions."""
    s = np.asarray(scores, np.float64)
    if len(s) == 0:
        return {"n": 0, "score": float("nan"), "ci95": [float("nan"), float("nan")]}
    rng = np.random.default_rng(seed)
    means = s[rng.integers(0, len(s), (n, len(s)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"n": int(len(s)), "score": round(float(s.mean()), 4),
            "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def _points_text(points: np.ndarray) -> str:
    return "[" + ", ".join(f"({x:.4f}, {y:.4f})" for x, y in points) + "]"


def score_text(text: str, mask: np.ndarray) -> float:
    return question_score(answer_pixels(text, mask.shape[1], mask.shape[0]), mask)


def _sim(args: Any) -> dict[str, Any]:
    from PIL import Image

    from tracevla_ros.affordance.scenes import read_split
    from tracevla_ros.affordance.small import SmallAffordance, load_small

    root = Path(args.data)
    qs = read_split(root)
    if args.limit:
        qs = qs[:args.limit]
    images = [np.asarray(Image.open(root / q.image).convert("RGB")) for q in qs]
    masks = [load_mask(root / q.mask) for q in qs]
    rng = np.random.default_rng(args.seed)
    methods: dict[str, list[str]] = {}
    models = {"small": args.checkpoint}
    if args.ablation:
        models["small_no_reasoning"] = str(args.ablation)
    reasoning_examples = {}
    for name, ckpt in models.items():
        backend = SmallAffordance(load_small(ckpt), "cpu")
        texts = []
        for i in range(0, len(qs), 32):
            res = backend.predict_many(images[i:i + 32], [q.instruction for q in qs[i:i + 32]])
            texts += [r.raw_text for r in res]
        methods[name] = texts
        reasoning_examples[name] = texts[0]
    oracle, rand = [], []
    for m in masks:
        ys, xs = np.nonzero(m > 0.5)
        pick = rng.integers(0, len(xs), args.points)
        h, w = m.shape
        oracle.append(_points_text(np.stack([(xs[pick] + 0.5) / w, (ys[pick] + 0.5) / h], 1)))
        rand.append(_points_text(rng.uniform(0, 1, (args.points, 2))))
    methods["oracle"], methods["random"] = oracle, rand
    unseen = np.array([q.unseen for q in qs])
    out: dict[str, Any] = {}
    for name, texts in methods.items():
        s = np.array([score_text(t, m) for t, m in zip(texts, masks)])
        out[name] = {"all": bootstrap(s, args.boot, args.seed),
                     "seen": bootstrap(s[~unseen], args.boot, args.seed),
                     "unseen": bootstrap(s[unseen], args.boot, args.seed)}
    return {"benchmark": "affordance", "data": str(root), "questions": len(qs),
            "unseen_questions": int(unseen.sum()), "points_per_answer": args.points,
            "methods": out, "example_answer": {"instruction": qs[0].instruction,
                                               **reasoning_examples}}


def main(argv: list[str]) -> dict[str, Any]:
    ap = ArgParser("tracevla-bench affordance", description=__doc__)
    ap.add_argument("--data", type=existing_dir, default=None, help="sim test split directory")
    ap.add_argument("--checkpoint", default="", help="small model with reasoning supervision "
                    "('' = the shipped sim_small)")
    ap.add_argument("--ablation", type=existing_dir, default=None,
                    help="the same model trained without reasoning supervision")
    ap.add_argument("--points", type=int_range(1, 100), default=5,
                    help="points per answer of the oracle and random baselines")
    ap.add_argument("--limit", type=int_range(0, 1_000_000), default=0, help="first N questions (0 = all)")
    ap.add_argument("--boot", type=int_range(100, 100_000), default=2000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0, help="baselines and bootstrap")
    ap.add_argument("--answers", type=existing_file, default=None, help="RoboPoint-format jsonl")
    ap.add_argument("--masks", type=existing_dir, default=None, help="masks for --answers")
    args = ap.parse_args(argv)
    if args.answers is not None:
        if args.masks is None:
            raise UsageError("--answers needs --masks DIR (one mask image per question)")
        masks = sorted(p for p in args.masks.iterdir() if p.suffix.lower() in _MASK_EXT)
        res = score_answer_file(args.answers, masks)
        return {"benchmark": "affordance", "answers": str(args.answers), "masks": str(args.masks),
                "questions": res["questions"], "score": res["score"],
                "ci95": bootstrap(res["per_question"], args.boot, args.seed)["ci95"],  # type: ignore[arg-type]
                "per_question": res["per_question"]}
    if args.data is None:
        raise UsageError("give --data SIM_TEST_DIR, or --answers FILE --masks DIR")
    return _sim(args)
