"""LoRA fine-tuning of the OpenVLA-style VLAs (issue 14), on a tiny random checkpoint.

The checkpoint is built locally (``support/tiny_vla.py``: 1-layer Llama with
image patches and an OpenVLA-style ``predict_action``); the dataset is the
generated one of ``support/local_policy.py`` (2 episodes x 8 steps, traced).
Needs transformers + peft (requirements.txt); those tests are skipped without
them. No 7B model is run anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.bad_input import Case, check_in_process

HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "peft"))
needs_hf = pytest.mark.skipif(not HAVE_HF, reason="needs torch + transformers + peft "
                              "(requirements.txt)")


def test_action_encoding_inverts_the_backend_decoding() -> None:
    from tracevla_ros.policy.vla.actions import (
        ActionStats,
        BIN_CENTERS,
        decode_tokens,
        encode_actions,
        normalize,
        unnormalize,
    )

    stats = ActionStats(q01=np.array([-0.02, -0.04, -0.03, -0.1, -0.1, -0.2, 0.0]),
                        q99=np.array([0.03, 0.04, 0.04, 0.1, 0.08, 0.2, 1.0]),
                        mask=np.array([True] * 6 + [False]), key="k")
    rng = np.random.default_rng(0)
    a = rng.uniform(stats.q01, stats.q99, (200, 7))
    a[:, 6] = rng.integers(0, 2, 200)  # gripper open/closed, not normalised
    ids = encode_actions(normalize(a, stats), 32000)
    assert ids.dtype == np.int64 and ids.min() >= 32000 - 256 and ids.max() < 32000
    back = np.stack([unnormalize(decode_tokens(r, 32000), stats) for r in ids])
    half_bin = (BIN_CENTERS[1] - BIN_CENTERS[0]) / 2
    scale = np.where(stats.mask, (stats.q99 - stats.q01) / 2, 1.0)
    # within half a bin (normalize divides by q99 - q01 + 1e-8, as OpenVLA does)
    assert np.all(np.abs(back - a) <= half_bin * scale * (1 + 1e-5) + 1e-9)
    # values beyond q01/q99 land on the end bins, as the backend decodes them
    assert encode_actions(normalize(stats.q99 * 5, stats), 32000)[0] == 32000 - 256


# --- on the tiny checkpoint --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not HAVE_HF:
        pytest.skip("needs torch + transformers + peft (requirements.txt)")
    from support.local_policy import make_dataset
    from support.tiny_vla import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny_vla")
    return {"base": write_tiny_checkpoint(root / "base"),
            "data": make_dataset(root / "data", episodes=2, steps=8, annotate=True),
            "root": root}


def _cfg(tiny: dict[str, Path], out: str, **kw: Any) -> Any:
    from tracevla_ros.policy.vla.finetune import FinetuneConfig

    base = dict(base=str(tiny["base"]), data=(str(tiny["data"]),), out=str(tiny["root"] / out),
                device="cpu", precision="fp32", batch_size=4, steps=4, lr=2e-2, save_every=0,
                log_every=1)
    return FinetuneConfig(**{**base, **kw})


def _logits(model: Any, batch: Any) -> Any:
    import torch

    from tracevla_ros.policy.vla.finetune import _text_logits

    with torch.no_grad():
        return _text_logits(model.eval(), batch)


@needs_hf
def test_samples_are_the_inference_input(tiny: dict[str, Path]) -> None:
    """Prompt ids + what predict_action appends = the ids the backend generates from; the
    labels are the 7 action tokens only; tracevla-7b uses the overlay where traced."""
    import torch

    from tracevla_ros.policy.config import PolicyNodeConfig
    from tracevla_ros.policy.vla.finetune import IGNORE_INDEX, build
    from tracevla_ros.policy.vla.hf import make_tracevla_7b, stubbed_generate

    from support.tiny_vla import EMPTY_TOKEN

    task, model = build(_cfg(tiny, "unused"), torch.device("cpu"))
    tok = task.encoder.processor.tokenizer
    assert task.encoder.suffix == [tok.convert_tokens_to_ids(EMPTY_TOKEN)]
    policy = make_tracevla_7b(PolicyNodeConfig(checkpoint=str(tiny["base"]), device="cpu"))
    traced = [bool(task.samples.observation(i).overlay is not None)
              for i in range(len(task.samples))]
    assert any(traced) and not all(traced)
    for i in (traced.index(False), traced.index(True)):
        ids, labels, px = task.encoder.encode(task.samples.observation(i), task.action_ids[i])
        obs = task.samples.observation(i)
        seen: list[Any] = []
        prepared = policy._prepare(obs)
        stubbed_generate(policy.vla, np.arange(7),
                         lambda: policy._predict(policy._inputs(prepared)), torch, seen=seen)
        assert ids[:-7] == seen[0][0].tolist()  # exactly the backend's generation prefix
        assert labels[:-7] == [IGNORE_INDEX] * (len(ids) - 7)
        assert labels[-7:] == ids[-7:] == task.action_ids[i].tolist()
        assert torch.equal(px, policy._inputs(prepared)["pixel_values"])
        assert prepared.trace_used == traced[i]
    stats = task.norm_stats["tracevla_finetune"]["action"]
    assert stats["mask"] == [True] * 6 + [False]
    np.testing.assert_allclose(stats["q01"], np.quantile(task.samples.actions, 0.01, axis=0))


@needs_hf
def test_only_lora_parameters_train_and_get_gradients(tiny: dict[str, Path]) -> None:
    import torch

    from tracevla_ros.policy.vla.finetune import action_token_loss, build

    task, model = build(_cfg(tiny, "unused"), torch.device("cpu"))
    r = 32
    linears = {n: m for n, m in model.get_base_model().named_modules()
               if type(m).__name__ == "Linear" and hasattr(m, "lora_A")}
    # all-linear: every linear layer of the model but the output head, projector included
    assert {n.rsplit(".", 1)[-1] for n in linears} == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj",
                                                      "projector"}
    expected = sum(r * (m.in_features + m.out_features) for m in linears.values())
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == expected == 15360
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    model.train()
    loss = action_token_loss(model, task.rows(np.arange(4)))
    assert loss.ndim == 0 and np.isfinite(float(loss.detach()))
    loss.backward()
    assert all(p.grad is not None for p in trainable.values())
    assert any(float(p.grad.abs().sum()) > 0 for p in trainable.values())
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


@pytest.fixture(scope="module")
def trained(tiny: dict[str, Path]) -> dict[str, Any]:
    """Four steps on one fixed batch (all 16 samples), through the core; the model in memory."""
    import torch

    from tracetrain.loop import Trainer
    from tracevla_ros.policy.vla.finetune import build, train_settings

    cfg = _cfg(tiny, "adapter", batch_size=16, steps=4)
    task, model = build(cfg, torch.device("cpu"))
    result = Trainer(train_settings(cfg, progress=False), task, model).run()
    return {"cfg": cfg, "task": task, "model": model, "result": result,
            "batch": task.rows(np.arange(6))}


@needs_hf
def test_steps_lower_the_loss_and_save_the_adapter(trained: dict[str, Any]) -> None:
    losses = trained["result"].losses
    assert len(losses) == 4 and losses[-1] < losses[0]
    out = Path(trained["cfg"].out)
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "dataset_statistics.json",
            "finetune.json", "metrics.jsonl", "loss.png"} <= names
    assert "train_state.safetensors" not in names and not any(n.startswith(".") for n in names)
    acfg = json.loads((out / "adapter_config.json").read_text())
    assert (acfg["r"], acfg["lora_alpha"], acfg["lora_dropout"]) == (32, 16, 0.0)
    info = json.loads((out / "finetune.json").read_text())
    assert info["format"] == "tracevla_vla_lora/v1" and info["unnorm_key"] == "tracevla_finetune"
    assert json.loads((out / "dataset_statistics.json").read_text()) == trained["task"].norm_stats
    ev = trained["task"].evaluate(trained["model"], np.arange(8))  # the held-out metrics
    assert 0 <= ev["val_token_accuracy"] <= 1 and 0 <= ev["val_l1_normalized"] <= 2
    assert trained["task"].evaluate(trained["model"], np.arange(0)) == {}


@needs_hf
def test_saved_adapter_on_a_fresh_base_gives_identical_logits(trained: dict[str, Any],
                                                              tiny: dict[str, Path]) -> None:
    import torch
    from peft import PeftModel

    from tracevla_ros.policy.vla.finetune import load_base

    _, fresh = load_base(tiny["base"], torch.device("cpu"), torch.float32)
    plain = _logits(fresh, trained["batch"])
    reloaded = PeftModel.from_pretrained(fresh, trained["cfg"].out)
    want = _logits(trained["model"], trained["batch"])
    got = _logits(reloaded, trained["batch"])
    assert torch.equal(got, want)
    assert not torch.equal(plain, want)  # the adapter changed the model


@needs_hf
def test_backend_loads_the_adapter(trained: dict[str, Any], tiny: dict[str, Path],
                                   tmp_path: Path) -> None:
    import torch

    from tracevla_ros.config import ConfigError
    from tracevla_ros.policy.config import PolicyNodeConfig
    from tracevla_ros.policy.vla.hf import make_openvla, make_tracevla_7b

    from support.tiny_vla import observation

    out = trained["cfg"].out
    want = _logits(trained["model"], trained["batch"])
    policies = [make_tracevla_7b(PolicyNodeConfig(checkpoint=str(tiny["base"]), adapter=out,
                                                  device="cpu", merge_adapter=merge))
                for merge in (True, False)]
    for p in policies:
        assert p.stats.key == "tracevla_finetune"  # the adapter's statistics, its only key
        np.testing.assert_allclose(p.stats.q99, trained["task"].norm_stats[
            "tracevla_finetune"]["action"]["q99"])
        torch.testing.assert_close(_logits(p.vla, trained["batch"]), want, rtol=1e-5, atol=1e-5)
        for trace in (False, True):
            chunk = p.infer(observation(trace))
            assert chunk.values.shape == (1, 7) and np.all(np.isfinite(chunk.values))
            assert chunk.trace_used == trace
    np.testing.assert_allclose(policies[0].infer(observation(True)).values,
                               policies[1].infer(observation(True)).values, atol=1e-6)
    assert make_openvla(PolicyNodeConfig(checkpoint=str(tiny["base"]), adapter=out, device="cpu",
                                         use_trace=False)).infer(observation(False)).values.shape \
        == (1, 7)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "dataset_statistics.json").unlink()
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(ConfigError, match="missing: adapter_model.safetensors, "
                                          "dataset_statistics.json"):
        make_tracevla_7b(PolicyNodeConfig(checkpoint=str(tiny["base"]), adapter=str(broken),
                                          device="cpu"))


@needs_hf
def test_resume_continues_exactly(tiny: dict[str, Path]) -> None:
    """Stopped after step 3 and resumed = uninterrupted (losses, LoRA weights), across an
    epoch boundary (16 samples, batch 4)."""
    from safetensors.torch import load_file

    from tracevla_ros.policy.vla.finetune import finetune

    full = finetune(_cfg(tiny, "full", steps=6, save_every=2), progress=False)
    calls = {"n": 0}

    def stop_after_3() -> str:
        calls["n"] += 1
        return "test stop" if calls["n"] == 3 else ""

    first = finetune(_cfg(tiny, "split", steps=6, save_every=2), progress=False,
                     stop=stop_after_3)
    assert first["stopped"] == "test stop" and first["step"] == 3
    state = load_file(str(tiny["root"] / "split" / "train_state.safetensors"))
    weights = [k for k in state if k.startswith("model/")]
    assert len(weights) == 16 and all(".lora_A." in k or ".lora_B." in k for k in weights)
    rest = finetune(_cfg(tiny, "split", steps=6, save_every=2, resume=True), progress=False)
    assert rest["step"] == 6 and "stopped" not in rest
    assert first["losses"] + rest["losses"] == full["losses"]
    a = load_file(str(tiny["root"] / "full" / "adapter_model.safetensors"))
    b = load_file(str(tiny["root"] / "split" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


# --- bad inputs to the CLI -----------------------------------------------------------------


def _dirs(tmp: Path) -> None:
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "emptybase").mkdir(exist_ok=True)


def _base_and_plain_dir(tmp: Path) -> None:
    from support.tiny_vla import write_tiny_checkpoint

    _dirs(tmp)
    write_tiny_checkpoint(tmp / "base")


def _untraced_data(tmp: Path) -> None:
    from support.local_policy import make_dataset

    _base_and_plain_dir(tmp)
    shutil.rmtree(tmp / "data")
    make_dataset(tmp / "data", episodes=1, steps=4, annotate=False)


F = "tracevla-finetune-vla --base {tmp}/emptybase --data {tmp}/data --out {tmp}/o"
CASES = [
    Case(F, 2, "missing: config.json, model.safetensors or pytorch_model.bin", _dirs,
         "base without its files"),
    Case(F + " --lr nan", 2, "--lr", _dirs, "NaN"),
    Case(F + " --lora-rank 0", 2, "out of range", _dirs, "range"),
    Case(F + " --device gpu7", 2, "not a device name", _dirs, "device"),
    Case("tracevla-finetune-vla --base {tmp}/base --data {tmp}/data --out {tmp}/o", 2,
         "is {tmp}/data a tracevla-collect output directory", _base_and_plain_dir,
         "dataset dir that is not one"),
    Case("tracevla-finetune-vla --base {tmp}/base --data {tmp}/data --out {tmp}/o", 2,
         "run `tracevla-annotate --data", _untraced_data, "no traces for tracevla-7b"),
]


@needs_hf
@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import support.bad_input as bad_input
    from tracevla_ros.tools import finetune_vla

    # the console script exists once the package is reinstalled; its function is this one
    monkeypatch.setattr(bad_input, "entry_point", lambda name: finetune_vla.main)
    case = Case(case.cmd, case.rc, case.phrase.replace("{tmp}", str(tmp_path)), case.setup)
    lines = [ln for ln in check_in_process(case, tmp_path).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tracevla-finetune-vla: error:"), lines
    assert not (tmp_path / "o").exists()  # nothing written before the inputs are checked


def test_help_explains_every_option() -> None:
    from tracevla_ros.tools.finetune_vla import _parser

    undocumented = [a.option_strings for a in _parser()._actions if not a.help]
    assert not undocumented


# --- the CLI as a process: SIGTERM, torchrun ----------------------------------------------


def _cli(tiny: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--base", str(tiny["base"]), "--data", str(tiny["data"]), "--out", str(out),
            "--device", "cpu", "--precision", "fp32", "--batch-size", "4", "--lr", "0.02",
            "--log-every", "1", "--quiet", *extra]


def _env() -> dict[str, str]:
    import os

    repo = Path(__file__).resolve().parents[1]
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo), HF_HUB_OFFLINE="1")


def _losses(out: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (out / "metrics.jsonl").read_text().splitlines()]


@needs_hf
def test_sigterm_stops_resumably_and_resume_finishes(tiny: dict[str, Path]) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tracevla_ros.tools.finetune_vla import main

    out = tiny["root"] / "sigterm"
    proc = subprocess.Popen([sys.executable, "-m", "tracevla_ros.tools.finetune_vla",
                             *_cli(tiny, out, "--steps", "100000", "--save-every", "0")],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a bound on waiting, not a timing assertion
        while not (out / "metrics.jsonl").is_file() and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "continue with --resume" in err and (out / "train_state.safetensors").is_file()
    assert (out / "adapter_model.safetensors").is_file()  # the stop saved the adapter too
    stopped_at = len(_losses(out))
    assert main(_cli(tiny, out, "--steps", str(stopped_at + 2), "--resume")) == 0
    assert len(_losses(out)) == stopped_at + 2
    assert not (out / "train_state.safetensors").exists()


@needs_hf
@pytest.mark.slow
def test_torchrun_two_processes_give_the_one_process_run(tiny: dict[str, Path]) -> None:
    """DDP (gloo, 2 CPU processes) over the PEFT model: same losses and adapter as one
    process with the same global batch."""
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    from tracevla_ros.tools.finetune_vla import main

    one, two = tiny["root"] / "ddp_one", tiny["root"] / "ddp_two"
    assert main(_cli(tiny, one, "--steps", "3")) == 0
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", "-m", "tracevla_ros.tools.finetune_vla",
                        *_cli(tiny, two, "--steps", "3")],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-5, abs=1e-6)
    a = load_file(str(one / "adapter_model.safetensors"))
    b = load_file(str(two / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        # Adam steps of ~lr = 0.02 amplify float-rounding differences of the reduced gradients
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


@needs_hf
@pytest.mark.gpu
def test_bf16_on_a_gpu(tiny: dict[str, Path]) -> None:
    """precision auto on CUDA: base weights bf16, LoRA weights float32, the loss goes down."""
    import torch

    from tracetrain.loop import Trainer
    from tracevla_ros.policy.vla.finetune import build, train_settings

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = _cfg(tiny, "gpu", device="cuda", precision="auto", batch_size=16, steps=4)
    task, model = build(cfg, torch.device("cuda"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in trainable)
    assert all(p.dtype == torch.bfloat16 for p in frozen if p.is_floating_point())
    losses = Trainer(train_settings(cfg, progress=False), task, model).run().losses
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert (Path(cfg.out) / "adapter_model.safetensors").is_file()
