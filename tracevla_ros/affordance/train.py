"""Train the small affordance model on the sim question set (tracetrain loop; no rclpy).

Example (data, then the model with and without reasoning supervision)::

    MUJOCO_GL=egl python -m tracevla_ros.affordance.train --make-data /work/data/aff \\
        --train-scenes 450 --test-scenes 150
    python -m tracevla_ros.affordance.train --data /work/data/aff/sim_train --out OUT_R --steps 1500
    python -m tracevla_ros.affordance.train --data /work/data/aff/sim_train --out OUT_N \\
        --steps 1500 --no-reasoning

Losses (all cross-entropies): target heatmap vs the valid-region mask averaged
to 32 x 32 cells and normalized; with reasoning supervision also the reference
heatmap vs the reference's centre cell and the relation (subtype + target area)
class. ``--no-reasoning`` trains the same network on the target loss alone.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tracetrain.loop import SaveContext, Trainer, TrainSettings, distributed
from tracetrain.seed import generator_state, seed_everything, set_generator_state

from tracevla_ros.affordance.scenes import RELATIONS, TOUCH_VERBS, instruction_for, read_split, \
    write_split
from tracevla_ros.affordance.small import GRID, IMAGE_SIZE, AffordanceNet, SmallConfig, \
    save_small, tokenize
from tracevla_ros.cli import ArgParser, existing_dir, int_range, finite_float, output_dir, run_main

PROG = "python -m tracevla_ros.affordance.train"
TRAIN_SEED0, TEST_SEED0 = 0, 900_000  # scene seeds of the two splits (disjoint)


def load_arrays(root: Path, verbs: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """The split's images (N, 3, 128, 128) uint8, tokens, target (N, 32, 32), reference cell,
    relation id, as tensors (one image per question). ``verbs``: each touch question is asked
    with a verb drawn from ``TOUCH_VERBS`` (seeded), as robot instructions ask it."""
    from PIL import Image

    qs = read_split(root)
    rng = np.random.default_rng([seed, 0xAFF])
    cache: dict[str, np.ndarray] = {}
    imgs, targets, tokens, refs, rels = [], [], [], [], []
    for q in qs:
        if q.image not in cache:
            with Image.open(root / q.image) as im:
                cache[q.image] = np.asarray(im.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE)))
        imgs.append(cache[q.image])
        with Image.open(root / q.mask) as m:
            mask = np.asarray(m.convert("L"), np.float32) / 255.0
        h, w = mask.shape
        cells = mask.reshape(GRID, h // GRID, GRID, w // GRID).mean((1, 3))
        targets.append(cells / max(float(cells.sum()), 1e-9))
        text = q.instruction
        if verbs and q.relation == "touch":
            text = instruction_for("touch", q.color, q.shape,
                                   TOUCH_VERBS[int(rng.integers(len(TOUCH_VERBS)))])
        tokens.append(tokenize(text))
        rx, ry = q.ref_point
        refs.append(min(int(ry * GRID), GRID - 1) * GRID + min(int(rx * GRID), GRID - 1))
        rels.append(RELATIONS.index(q.relation))
    return {"image": torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(),
            "target": torch.from_numpy(np.stack(targets)).float(),
            "tokens": torch.from_numpy(np.stack(tokens)),
            "ref": torch.tensor(refs, dtype=torch.int64),
            "rel": torch.tensor(rels, dtype=torch.int64)}


def losses(net: AffordanceNet, batch: dict[str, torch.Tensor], reasoning: bool) -> torch.Tensor:
    rel, ref, tgt = net(batch["image"].float() / 255.0, batch["tokens"])
    loss = -(batch["target"].flatten(1) * F.log_softmax(tgt.flatten(1), -1)).sum(1).mean()
    if reasoning:
        loss = loss + F.cross_entropy(ref.flatten(1), batch["ref"]) \
            + F.cross_entropy(rel, batch["rel"])
    return loss


@dataclass
class _Plan:
    idx: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)


class AffordanceTask:
    def __init__(self, data: dict[str, torch.Tensor], out: Path, batch: int, reasoning: bool,
                 seed: int, training: dict[str, Any]) -> None:
        self.data, self.out, self.bs, self.reasoning = data, out, batch, reasoning
        self.rng = np.random.default_rng(seed)
        self.training = training
        self.t0 = time.monotonic()

    def plan(self, step: int) -> _Plan:
        return _Plan(self.rng.integers(0, len(self.data["rel"]), self.bs))

    def batch(self, plan: _Plan, rows: slice) -> dict[str, torch.Tensor]:
        idx = torch.from_numpy(plan.idx[rows])
        return {k: v[idx] for k, v in self.data.items()}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return losses(model, batch, self.reasoning)  # type: ignore[arg-type]

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"rng": generator_state(self.rng)}, {}

    def load_state(self, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        set_generator_state(self.rng, js["rng"])

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        model = ctx.ema_model if ctx.ema_model is not None else ctx.model
        assert isinstance(model, AffordanceNet)  # what this task trains
        save_small(self.out, model, {**self.training, "step": ctx.step,
                                     "train_loss": ctx.train_loss,
                                     "seconds": round(ctx.elapsed_s, 1)})
        return {}


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--make-data", type=output_dir, default=None,
                    help="render the sim_train and sim_test splits into this directory and exit")
    ap.add_argument("--train-scenes", type=int_range(1, 100_000), default=450, help="scenes")
    ap.add_argument("--test-scenes", type=int_range(1, 100_000), default=150, help="scenes")
    ap.add_argument("--data", type=existing_dir, default=None, help="a training split directory")
    ap.add_argument("--out", type=output_dir, default=None, help="checkpoint directory")
    ap.add_argument("--steps", type=int_range(1, 1_000_000), default=1500, help="optimizer steps")
    ap.add_argument("--batch", type=int_range(1, 4096), default=16, help="questions per step")
    ap.add_argument("--lr", type=finite_float(gt=0), default=2e-3, help="peak learning rate")
    ap.add_argument("--no-reasoning", action="store_true",
                    help="train on the target alone (the ablation without reasoning supervision)")
    ap.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    ap.add_argument("--threads", type=int_range(1, 256), default=1, help="torch CPU threads")
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.make_data is not None:
        test = write_split(args.make_data / "sim_test", range(TEST_SEED0, TEST_SEED0 + args.test_scenes),
                           2, train=False)
        train = write_split(args.make_data / "sim_train",
                            range(TRAIN_SEED0, TRAIN_SEED0 + args.train_scenes), 6, train=True)
        print(f"{PROG}: {len(train)} training, {len(test)} test questions "
              f"({sum(q.unseen for q in test)} unseen) in {args.make_data}")
        return 0
    if args.data is None or args.out is None:
        raise SystemExit(f"{PROG}: error: give --data and --out (or --make-data DIR)")
    data = load_arrays(args.data, verbs=True, seed=args.seed)
    reasoning = not args.no_reasoning
    training = {"data": str(args.data), "questions": int(len(data["rel"])), "steps": args.steps,
                "touch_verbs": list(TOUCH_VERBS),
                "batch": args.batch, "lr": args.lr, "seed": args.seed,
                "reasoning_supervision": reasoning}
    with distributed("cpu") as (dist, device):
        seed_everything(args.seed)
        net = AffordanceNet(SmallConfig(reasoning=reasoning))
        settings = TrainSettings(out=args.out, steps=args.steps, lr=args.lr,
                                 warmup_steps=min(100, args.steps // 10), min_lr_ratio=0.05,
                                 ema_decay=0.995, log_every=50, progress=False,
                                 keep_state=False, desc="affordance")
        task = AffordanceTask(data, args.out, args.batch, reasoning, args.seed, training)
        res = Trainer(settings, task, net, dist, device).run()
    print(f"{PROG}: {res.step} steps, checkpoint in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
