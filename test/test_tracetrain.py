"""The training core (tracetrain): strict configs and checkpoints, exact resume, stopping,
gradient accumulation, and DDP with 2 CPU processes (gloo, torchrun) against 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from support.tracetrain_toy import ToyTask, build_model  # noqa: E402
from support.tracetrain_toy import main as toy_main  # noqa: E402
from tracetrain import checkpoint as ck  # noqa: E402
from tracetrain.config import from_dict, to_dict  # noqa: E402
from tracetrain.device import autocast_dtype, resolve_device  # noqa: E402
from tracetrain.errors import CheckpointError, FieldError, SettingsError  # noqa: E402
from tracetrain.loop import STATE_FILE, Trainer, TrainSettings, build_schedule  # noqa: E402
from tracetrain.seed import seed_everything  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "test" / "support" / "tracetrain_toy.py"


# --- config and checkpoint ----------------------------------------------------------------
@dataclass(frozen=True)
class Net:
    depth: int
    width: int = 8
    scale: float = 1.0
    stats: tuple[float, ...] = ()
    size: tuple[int, int] = (4, 4)
    name: str = "a"
    on: bool = False

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError("depth must be >= 1")


def test_from_dict_is_strict_and_names_the_key() -> None:
    net = from_dict(Net, {"depth": 2, "stats": [1, 2.5], "size": [3, 5]}, "cfg.json")
    assert net == Net(depth=2, stats=(1.0, 2.5), size=(3, 5))
    assert from_dict(Net, to_dict(net), "x", require_all=True) == net
    for data, msg in [({"depth": "two"}, "cfg.json: key 'depth' expects int, got str 'two'"),
                      ({"depth": True}, "key 'depth' expects int, got bool"),
                      ({"depth": 2, "scale": float("nan")}, "key 'scale' is nan"),
                      ({"depth": 2, "stats": [0.0, float("inf")]}, r"key 'stats\[1\]' is inf"),
                      ({"depth": 2, "size": [1]}, "'size' expects 2 values"),
                      ({"depth": 2, "on": "yes"}, "'on' expects bool"),
                      ({"depth": 2, "nme": "b"}, r"unknown key\(s\) \['nme'\]"),
                      ({"width": 3}, r"missing key\(s\) \['depth'\]"),
                      ({"depth": 0}, "cfg.json: Net: depth must be >= 1"),
                      ([1, 2], "expected a JSON object")]:
        with pytest.raises(FieldError, match=msg):
            from_dict(Net, data, "cfg.json")
    with pytest.raises(FieldError, match=r"missing key\(s\) \['name', 'on'"):
        from_dict(Net, {k: v for k, v in to_dict(net).items() if k not in ("name", "on")}, "x",
                  require_all=True)


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    model = build_model()
    d = ck.save_checkpoint(tmp_path / "c", model.state_dict(), {"model": {"hidden": 16}}, "toy", 2)
    assert json.loads((d / "config.json").read_text())["format"] == "toy/v2"
    body = ck.read_config(ck.checkpoint_dir(d / "model.safetensors", "toy-train"), "toy", 2,
                          ("model",), "toy-train")
    assert body["model"] == {"hidden": 16}
    tensors = ck.load_tensors(d / "model.safetensors")
    ck.check_tensors(d / "model.safetensors", tensors, model.state_dict(), d / "config.json")
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="version 2, this code reads version 1.*newer code"):
        ck.read_config(d, "toy", 1, (), "toy-train")
    with pytest.raises(CheckpointError, match="version 2, this code reads version 3.*retrain"):
        ck.read_config(d, "toy", 3, (), "toy-train")
    with pytest.raises(CheckpointError, match="format 'toy/v2', this code reads 'other/v2'"):
        ck.read_config(d, "other", 2, (), "toy-train")
    with pytest.raises(CheckpointError, match="missing the 'training' section"):
        ck.read_config(d, "toy", 2, ("training",), "toy-train")
    with pytest.raises(CheckpointError, match=r"pickle files \(\.pt\) are refused"):
        ck.checkpoint_dir(tmp_path / "w.pt", "toy-train")
    other = build_model()[:1].state_dict()
    with pytest.raises(CheckpointError, match=r"does not match.*unexpected \[2.bias, 2.weight\]"):
        ck.check_tensors(d / "model.safetensors", tensors, other, d / "config.json")
    tensors["0.bias"][3] = float("nan")
    with pytest.raises(CheckpointError, match="'0.bias' holds 1 NaN/inf value"):
        ck.check_finite(d / "model.safetensors", tensors, ["0.bias", "absent"])
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        ck.read_config(d, "toy", 2, (), "toy-train")


def test_device_and_settings_validation() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(SettingsError, match="not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="no CUDA device"):
            resolve_device("cuda:1")
        with pytest.raises(SettingsError, match="fp16 needs a CUDA device"):
            autocast_dtype(torch.device("cpu"), "fp16")
    assert autocast_dtype(torch.device("cpu"), "auto") is None
    for bad, key in [({"lr": float("nan")}, "lr"), ({"steps": 0}, "steps"),
                     ({"ema_decay": 1.0}, "ema_decay"), ({"precision": "fp8"}, "precision"),
                     ({"resume": "maybe"}, "resume")]:
        kw = dict(out=Path("x"), steps=3, lr=0.1)
        kw.update(bad)  # type: ignore[arg-type]
        with pytest.raises(SettingsError, match=f"'{key}'"):
            TrainSettings(**kw)  # type: ignore[arg-type]


def test_schedule_is_linear_warmup_then_cosine_to_the_floor() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = build_schedule(opt, steps=14, warmup=4, min_lr_ratio=0.1)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 5 / 10)).item()))
    assert all(b <= a for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] > 0.1


# --- the loop, one process ----------------------------------------------------------------
def _run(out: Path, steps: int, stop_after: int = 0, accum: int = 1, resume: str = "auto",
         ema: float = 0.9) -> tuple[Trainer, object]:
    seed_everything(0)
    model = build_model()
    settings = TrainSettings(out=out, steps=steps, lr=0.05, warmup_steps=3, grad_accum=accum,
                             ema_decay=ema, log_every=1, save_every=4, resume=resume,
                             progress=False)
    trainer = Trainer(settings, ToyTask(out, 8), model)
    calls = [0]

    def stop() -> str:
        calls[0] += 1
        return "SIGTERM" if stop_after and calls[0] == stop_after else ""

    return trainer, trainer.run(stop)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_stop_then_resume_continues_exactly(tmp_path: Path) -> None:
    full, r_full = _run(tmp_path / "full", 12)
    assert r_full.step == 12 and not r_full.stopped  # type: ignore[attr-defined]
    rows = _metrics(tmp_path / "full")
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert [r["step"] for r in rows if "val_loss" in r] == [4, 8, 12]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (tmp_path / "full" / "loss.png").stat().st_size > 1000
    # a stop (SIGTERM) after step 6 saves the state there; the rerun continues from it
    _, r_stop = _run(tmp_path / "part", 12, stop_after=6)
    assert (r_stop.stopped, r_stop.step) == ("SIGTERM", 6)  # type: ignore[attr-defined]
    part, r_part = _run(tmp_path / "part", 12)
    assert r_part.start_step == 6  # type: ignore[attr-defined]
    assert [r["loss"] for r in _metrics(tmp_path / "part")] == [r["loss"] for r in rows]
    for a, b in zip(full.model.state_dict().values(), part.model.state_dict().values()):
        assert torch.equal(a, b)
    assert full.ema is not None and part.ema is not None
    for a, b in zip(full.ema.module.state_dict().values(), part.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    saved = load_file(str(tmp_path / "part" / "model.safetensors"))  # the task saved EMA weights
    assert torch.equal(saved["0.weight"], part.ema.module[0].weight.detach())
    with pytest.raises(CheckpointError, match="does not exist"):
        _run(tmp_path / "none", 4, resume="must")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / STATE_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable train state"):
        _run(tmp_path / "bad", 4, resume="must")


def test_gradient_accumulation_gives_the_same_steps(tmp_path: Path) -> None:
    _run(tmp_path / "one", 8, ema=0.0)
    _run(tmp_path / "acc", 8, accum=4, ema=0.0)  # 4 micro-batches of 2 rows per step
    a = [r["loss"] for r in _metrics(tmp_path / "one")]
    b = [r["loss"] for r in _metrics(tmp_path / "acc")]
    assert a == pytest.approx(b, rel=1e-5, abs=1e-7)


# --- two processes (torchrun, gloo) --------------------------------------------------------
def _torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TOY), "--out", str(out), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "two"
    r = _torchrun(out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_two_processes_give_the_one_process_curve(two_procs: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    assert toy_main(["--out", str(tmp_path / "one")]) == 0
    one, two = _metrics(tmp_path / "one"), _metrics(two_procs)
    assert [r["step"] for r in two] == list(range(1, 13))
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5, abs=1e-6)
    assert [r["val_loss"] for r in two if "val_loss" in r] == \
        pytest.approx([r["val_loss"] for r in one if "val_loss" in r], rel=1e-5, abs=1e-6)
    w1, w2 = load_file(str(tmp_path / "one" / "model.safetensors")), \
        load_file(str(two_procs / "model.safetensors"))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6)


def test_a_killed_rank_then_resume_continues_exactly(two_procs: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    r = _torchrun(out, "--die-at", "6", "--die-rank", "1")  # rank 1 SIGKILLed after step 6
    assert r.returncode != 0
    assert max(x["step"] for x in _metrics(out)) < 12
    assert load_file(str(out / STATE_FILE))  # the state of step 4 (the last save)
    r = _torchrun(out)  # the same command again resumes from it
    assert r.returncode == 0, r.stderr[-3000:]
    assert [x["loss"] for x in _metrics(out)] == [x["loss"] for x in _metrics(two_procs)]
    w1, w2 = load_file(str(out / "model.safetensors")), load_file(str(two_procs / "model.safetensors"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_the_core_imports_no_package_of_the_stack() -> None:
    import ast

    for f in sorted((REPO / "tracetrain").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("tracevla_ros", "tracegen_ros",
                                                                 "rclpy")], f"{f}: {names}"
