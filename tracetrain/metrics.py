"""Training metrics: one JSON object per line (``metrics.jsonl``) and a loss plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "PLOT_FILE", "append_metrics", "read_metrics", "truncate_metrics",
           "plot_metrics"]

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a killed process
            continue
    return out


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines up to ``step`` (a resumed run continues from its last saved step)."""
    if path.is_file():
        keep = [r for r in read_metrics(path) if int(r.get("step", 0)) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


def plot_metrics(path: Path, png: Path, loss_label: str = "loss") -> None:
    """Training loss (mean per log interval) and every ``val_*loss`` series against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(path)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    if train:
        ax.plot(*zip(*train), lw=1, label="train (mean per log interval)")
    keys = sorted({k for r in rows for k in r if k.startswith("val") and k.endswith("loss")})
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", ms=3, label=k)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(loss_label)
    if train and all(v > 0 for _, v in train):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if train or keys:
        ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
