"""A tiny regression task on the training core, for its tests; also a torchrun script:

    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        test/support/tracetrain_toy.py --out OUT --steps 12

Every step draws its global batch (indices from a numpy generator, input noise
from a torch generator), so resuming and sharding are checked on both kinds of
generator state. ``--die-at S --die-rank R``: rank R kills itself with SIGKILL
right after step S (a crashed worker).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root (torchrun)

from tracetrain.checkpoint import save_checkpoint  # noqa: E402
from tracetrain.loop import SaveContext, Trainer, TrainSettings, distributed  # noqa: E402
from tracetrain.seed import generator_state, seed_everything, set_generator_state  # noqa: E402


@dataclass
class Plan:
    idx: np.ndarray
    noise: torch.Tensor

    def __len__(self) -> int:
        return len(self.idx)


class ToyTask:
    def __init__(self, out: Path, batch: int, seed: int = 0, n: int = 96) -> None:
        g = np.random.default_rng(123)
        self.x = torch.from_numpy(g.normal(size=(n, 4)).astype(np.float32))
        w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.y = torch.tanh(self.x @ w) + 0.05 * torch.from_numpy(g.normal(size=(n, 1)).astype(np.float32))
        self.out, self.bs = out, batch
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def plan(self, step: int) -> Plan:
        return Plan(self.rng.integers(0, len(self.x), self.bs),
                    0.05 * torch.randn(self.bs, 4, generator=self.gen))

    def batch(self, plan: Plan, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        idx = plan.idx[rows]
        return self.x[idx] + plan.noise[rows], self.y[idx]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"rng": generator_state(self.rng)}, {"gen": self.gen.get_state()}

    def load_state(self, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        set_generator_state(self.rng, js["rng"])
        self.gen.set_state(tensors["gen"])

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        model = ctx.ema_model or ctx.model
        with torch.no_grad():
            val = float(((model(self.x) - self.y) ** 2).mean())
        save_checkpoint(self.out, model.state_dict(), {"model": {"hidden": 16}}, "toy", 1)
        return {"val_loss": val}


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--save-every", type=int, default=4)
    ap.add_argument("--accum", type=int, default=1)
    ap.add_argument("--ema", type=float, default=0.9)
    ap.add_argument("--resume", default="auto")
    ap.add_argument("--die-at", type=int, default=0)
    ap.add_argument("--die-rank", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    with distributed("cpu") as (dist, device):
        seed_everything(0)
        model = build_model()
        settings = TrainSettings(out=a.out, steps=a.steps, lr=0.05, warmup_steps=3,
                                 grad_accum=a.accum, ema_decay=a.ema, log_every=1,
                                 save_every=a.save_every, resume=a.resume, progress=False)
        calls = [0]

        def stop() -> str:
            calls[0] += 1
            if a.die_at and dist.rank == a.die_rank and calls[0] == a.die_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return ""

        res = Trainer(settings, ToyTask(a.out, a.batch), model, dist, device).run(stop)
        return 0 if res.step == a.steps else 1


if __name__ == "__main__":
    sys.exit(main())
