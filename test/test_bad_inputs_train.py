"""Bad inputs to the two trainers (issue 18): one line on stderr, exit 2, never a traceback.
All cases fail at validation, before any data is read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from support.bad_input import Case, check_in_process

SHIPPED = Path(__file__).resolve().parents[1] / "tracegen_ros" / "checkpoints" / "fr3_small"


def _dirs(tmp: Path) -> None:
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "afile").write_text("x")


def _two_in_config(tmp: Path) -> None:
    """An output dir holding a previous run whose config.json says "depth": "two"."""
    from tracegen_ros.synthetic import write_dataset

    write_dataset(tmp / "data", episodes=2, frames_per_episode=2, size=48)
    shutil.copytree(SHIPPED, tmp / "run")
    body = json.loads((tmp / "run" / "config.json").read_text())
    body["config"]["num_layers"] = "two"
    (tmp / "run" / "config.json").write_text(json.dumps(body))
    (tmp / "run" / "train_state.safetensors").write_bytes(b"")


V = "tracevla-train --data {tmp}/data --out {tmp}/o"
G = "tracegen-train --data {tmp}/data --out {tmp}/o"
CASES = [
    Case(V + " --lr nan", 2, "--lr", _dirs, "NaN"),
    Case(V + " --lr -1", 2, "out of range", _dirs, "range"),
    Case(V + " --epochs 0", 2, "--epochs", _dirs, "range"),
    Case(V + " --batch-size x", 2, "not an integer", _dirs, "type"),
    Case(V + " --trace-dropout 1.5", 2, "--trace-dropout", _dirs, "range"),
    Case(V + " --image-size 40", 2, "multiple of 16", _dirs, "cross-field"),
    Case("tracevla-train --data {tmp}/missing --out {tmp}/o", 2, "does not exist", _dirs, "path"),
    Case("tracevla-train --data {tmp}/data --out {tmp}/afile", 2, "is an existing file", _dirs,
         "output path"),
    Case(V + " --device gpu7", 2, "not a device name", _dirs, "device"),
    Case(V + " --resume", 2, "does not exist", None, "nothing to resume"),
    Case(G + " --lr inf", 2, "not finite", _dirs, "inf"),
    Case(G + " --ema 1", 2, "--ema", _dirs, "range"),
    Case(G + " --steps 0", 2, "--steps", _dirs, "range"),
    Case(G + " --precision fp8", 2, "invalid choice", _dirs, "choice"),
    Case(G + " --color-jitter nan", 2, "--color-jitter", _dirs, "NaN"),
    Case("tracegen-train --data {tmp}/nope --out {tmp}/o", 2, "does not exist", _dirs, "path"),
    Case(G + " --device cuda:9", 2, "cuda:9", _dirs, "device"),
    Case("tracegen-train --data {tmp}/data --out {tmp}/run", 2,
         "key 'num_layers' expects int, got str 'two'", _two_in_config, "checkpoint config"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case: Case, tmp_path: Path) -> None:
    if case.cmd.startswith("tracevla-train") and "--resume" in case.cmd:
        from support.local_policy import make_dataset

        make_dataset(tmp_path / "data", episodes=1, steps=4, annotate=False)
        case = Case(case.cmd + " --no-trace --image-size 32", case.rc, case.phrase)
    check_in_process(case, tmp_path)
