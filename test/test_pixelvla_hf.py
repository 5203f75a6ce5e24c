"""PixelVLA at the published architecture (issue 15), on a tiny random configuration.

The base is ``support/tiny_vla.py``'s Prismatic-layout checkpoint (fused
two-backbone tiny ViTs, the 3-layer projector, a 2-layer Llama of width 16),
loaded through the real transformers path (``trust_remote_code``, local files);
the PixelVLA parts are the real classes with small widths. The dataset is the
generated one of ``support/local_policy.py`` (2 episodes x 6 steps) plus a
``prompts.npz`` of target masks. No 7B model is run anywhere; bf16 and
torchrun are not exercised here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.bad_input import Case, check_in_process

HAVE_HF = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "peft"))
pytestmark = pytest.mark.skipif(not HAVE_HF, reason="needs torch + transformers + peft "
                                "(requirements.txt)")

ARCH = dict(prompt_dim=16, mask_size=16, mask_grid=2, head_width=32, head_blocks=1)
STEPS = 6


def _write_data(root: Path) -> Path:
    from support.local_policy import make_dataset

    data = make_dataset(root, episodes=2, steps=STEPS, annotate=False)
    for e, ep in enumerate(sorted(data.glob("episode_*"))):
        m = np.zeros((STEPS, 64, 64), bool)
        for t in range(STEPS):
            m[t, 10 + t:30 + t, 20 + 4 * e:44] = True
        np.savez(ep / "prompts.npz", mask=m)
    return data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from support.tiny_vla import write_tiny_prismatic

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pixelvla")
    return {"base": write_tiny_prismatic(root / "base"), "data": _write_data(root / "data"),
            "root": root}


def _base(tiny: dict[str, Path]) -> tuple[Any, Any]:
    import torch

    from tracevla_ros.policy.vla.finetune import load_base

    return load_base(tiny["base"], torch.device("cpu"), torch.float32)


def _model(tiny: dict[str, Path], seed: int = 0) -> tuple[Any, Any]:
    import torch

    from tracevla_ros.policy.pixelvla.model import InputBuilder, PixelVLA

    processor, vla = _base(tiny)
    torch.manual_seed(seed)
    model = PixelVLA.for_base(vla, **ARCH)
    return model, InputBuilder(processor, model.cfg.mask_size, torch.float32)


def _prompts() -> dict[str, Any]:
    from tracevla_ros.policy.prompt import VisualPrompt

    mask = np.zeros((480, 640), bool)
    mask[120:300, 200:420] = True
    return {"none": None,
            "point": VisualPrompt(points=[[0.25, 0.5], [0.7, 0.1]]),
            "line": VisualPrompt(lines=[[0.1, 0.2, 0.8, 0.9]]),
            "box": VisualPrompt(boxes=[[0.3, 0.25, 0.65, 0.6]]),
            "mask": VisualPrompt(mask=mask)}


def _observations() -> list[Any]:
    from support.tiny_vla import observation

    o = observation(False)
    return [dataclasses.replace(o, prompt=p) for p in _prompts().values()]


# --- the encoders against hand computations ---------------------------------------------------


def test_prompt_encoder_tokens_and_padding() -> None:
    """One token per point, two per line and box (own type embeddings), G*G mask tokens;
    padding slots change nothing for the real prompts, nor does the batch."""
    import torch

    from tracevla_ros.policy.pixelvla.prompt_encoder import (
        BOX_BR,
        BOX_TL,
        LINE_END,
        LINE_START,
        POINT,
        PromptEncoder,
        collate_prompts,
    )
    from tracevla_ros.policy.prompt import VisualPrompt

    torch.manual_seed(0)
    enc = PromptEncoder(llm_dim=12, dim=16, mask_size=16, mask_grid=2).eval()
    mixed = VisualPrompt(points=[[0.1, 0.2]], lines=[[0.3, 0.4, 0.5, 0.6]],
                         boxes=[[0.2, 0.2, 0.9, 0.8]])
    mask = np.zeros((32, 32), bool)
    mask[4:20, 8:24] = True
    prompts = [mixed, None, VisualPrompt(points=[[0.5, 0.5]], mask=mask)]
    b = collate_prompts(prompts, 16)
    assert b.types[0].tolist() == [POINT, LINE_START, LINE_END, BOX_TL, BOX_BR]
    np.testing.assert_allclose(b.coords[0].numpy(), [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6],
                                                     [0.2, 0.2], [0.9, 0.8]])
    assert b.valid.sum(1).tolist() == [5, 0, 1] and b.has_mask.tolist() == [False, False, True]
    padded = collate_prompts(prompts, 16, min_tokens=9)
    with torch.no_grad():
        tok, ok = enc(b)
        ptok, pok = enc(padded)
        alone, alone_ok = enc(collate_prompts([prompts[2]], 16))
    assert tok.shape == (3, 5 + 4, 12) and ptok.shape == (3, 9 + 4, 12)
    assert ok.sum(1).tolist() == pok.sum(1).tolist() == [5, 0, 5]
    for i in range(3):
        torch.testing.assert_close(tok[i][ok[i]], ptok[i][pok[i]], rtol=0, atol=0)
    # another batch size may take another matmul path: float rounding only
    torch.testing.assert_close(alone[0][alone_ok[0]], tok[2][ok[2]], rtol=1e-5, atol=1e-6)
    # a line's endpoints differ from two points at the same places (type embeddings)
    two_points = collate_prompts([VisualPrompt(points=[[0.3, 0.4], [0.5, 0.6]])], 16)
    with torch.no_grad():
        pts = enc(two_points)[0][0, :2]
    assert not torch.allclose(pts, tok[0, 1:3])


def test_pixel_encoder_masked_pooling_by_hand() -> None:
    """The level's token is the MLP of the mask-weighted feature average, each 4 x 4 cell
    weighted by the fraction of it the 16 x 16 mask covers."""
    import torch

    from tracevla_ros.policy.pixelvla.pixel_encoder import PixelEncoder, masked_average

    feat = torch.arange(2 * 16, dtype=torch.float32).reshape(1, 2, 4, 4)
    mask = torch.zeros(1, 16, 16)
    mask[0, 0:8, 0:8] = 1.0  # cells (0,0) (0,1) (1,0) (1,1) fully
    mask[0, 8:10, 12:16] = 1.0  # half of cell (2, 3)
    avg, total = masked_average(feat, mask)
    f = feat[0].numpy()
    want = (f[:, 0, 0] + f[:, 0, 1] + f[:, 1, 0] + f[:, 1, 1] + 0.5 * f[:, 2, 3]) / 4.5
    np.testing.assert_allclose(avg[0].numpy(), want, rtol=1e-6)
    assert float(total[0]) == pytest.approx(4.5)
    torch.manual_seed(0)
    enc = PixelEncoder([2, 2], llm_dim=6).eval()
    seq = feat.flatten(2).transpose(1, 2)  # (1, 16, 2) row-major patches, as a ViT gives them
    empty = torch.zeros(1, 16, 16)
    with torch.no_grad():
        tok, ok = enc([feat, seq], mask, torch.tensor([True]))
        _, none_ok = enc([feat, seq], empty, torch.tensor([True]))
        for level in range(2):
            by_hand = enc.proj[level](torch.from_numpy(want).float()[None]) + enc.level_embed[level]
            torch.testing.assert_close(tok[0, level], by_hand[0])
    assert ok.tolist() == [[True, True]] and none_ok.tolist() == [[False, False]]


def test_pixel_mask_of_a_box_and_a_mask() -> None:
    from tracevla_ros.policy.pixelvla.pixel_encoder import pixel_mask_of
    from tracevla_ros.policy.prompt import VisualPrompt

    box = pixel_mask_of(VisualPrompt(boxes=[[0.25, 0.5, 0.5, 1.0]]), 8)
    assert box is not None
    want = np.zeros((8, 8), np.float32)
    want[4:8, 2:4] = 1
    np.testing.assert_array_equal(box, want)
    m = np.zeros((16, 16), bool)
    m[0:4, 0:2] = True
    got = pixel_mask_of(VisualPrompt(mask=m, boxes=[[0, 0, 1, 1]]), 8)  # the mask wins
    assert got is not None and got[0:2, 0].tolist() == [1, 1] and got.sum() == 2
    assert pixel_mask_of(VisualPrompt(points=[[0.5, 0.5]]), 8) is None
    assert pixel_mask_of(None, 8) is None


# --- the model on the tiny base ------------------------------------------------------------------


def test_forward_with_each_prompt_kind_and_without(tiny: dict[str, Path]) -> None:
    """(B, 8, 7) finite, gripper in [0, 1]; a prompt changes the output; a row without a
    prompt gives exactly what it gives alone (rows are packed, never padded inside)."""
    import torch

    model, builder = _model(tiny)
    obs = _observations()
    batch = builder.batch(obs)
    assert batch.pixel_present.tolist() == [False, False, False, True, True]
    assert model.taps.layers == [[0, 1, 2], [1, 2, 3]]  # fractions 0.25/0.5/1 of blocks 2 and 3
    with torch.no_grad():
        out = model.eval()(batch)
        alone = model(builder.batch(obs[:1]))
    assert out.shape == (5, 8, 7) and torch.isfinite(out).all()
    assert ((out[..., 6] >= 0) & (out[..., 6] <= 1)).all()
    torch.testing.assert_close(alone[0], out[0], rtol=1e-5, atol=1e-6)
    for i in range(1, 5):
        assert not torch.allclose(out[i], out[0]), list(_prompts())[i]


def test_stage1_trains_only_the_head(tiny: dict[str, Path]) -> None:
    import torch

    from tracevla_ros.policy.pixelvla.action_head import action_l1_loss

    model, builder = _model(tiny)
    model.set_stage(1)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    assert sum(p.numel() for p in trainable.values()) == sum(
        p.numel() for p in model.head.parameters())
    batch = builder.batch(_observations()[:2])
    loss = action_l1_loss(model.train()(batch), torch.zeros(2, 8, 7), torch.ones(2, 8, dtype=torch.bool))
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in trainable.values())
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_stage2_trains_the_encoders_head_and_llm_lora(tiny: dict[str, Path]) -> None:
    """Exactly prompt encoder + pixel encoder + head + LoRA r=32 on the 7 linear layers of
    each of the LLM's 2 layers (not the vision encoder, not the projector)."""
    import torch

    from tracevla_ros.policy.pixelvla.action_head import action_l1_loss
    from tracevla_ros.policy.pixelvla.model import add_llm_lora

    model, builder = _model(tiny)
    add_llm_lora(model, rank=32, alpha=16)
    model.set_stage(2)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    lora = {n: p for n, p in trainable.items() if ".lora_" in n}
    assert all(n.startswith("vla.language_model.model.layers.") for n in lora)
    linears = {n: m for n, m in model.vla.named_modules() if hasattr(m, "lora_A")}
    assert len(linears) == 2 * 7
    assert sum(p.numel() for p in lora.values()) == sum(
        32 * (m.in_features + m.out_features) for m in linears.values())
    parts = sum(p.numel() for m in (model.prompt_encoder, model.pixel_encoder, model.head)
                for p in m.parameters())
    assert sum(p.numel() for p in trainable.values()) == parts + sum(
        p.numel() for p in lora.values())
    assert set(trainable) - set(lora) == {
        n for n, _ in model.named_parameters()
        if n.split(".")[0] in ("prompt_encoder", "pixel_encoder", "head")}
    batch = builder.batch(_observations())
    action_l1_loss(model.train()(batch), torch.zeros(5, 8, 7),
                   torch.ones(5, 8, dtype=torch.bool)).backward()
    assert all(p.grad is not None for p in trainable.values())
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


# --- the two stages on the core, the checkpoint, the backend ------------------------------------


def _cfg(tiny: dict[str, Path], out: str, stage: int, **kw: Any) -> Any:
    from tracevla_ros.policy.pixelvla.train import PixelTrainConfig

    base = dict(base=str(tiny["base"]), data=(str(tiny["data"]),), out=str(tiny["root"] / out),
                stage=stage, device="cpu", precision="fp32", batch_size=4, steps=3, lr=1e-2,
                save_every=0, log_every=1, arch=ARCH)
    return PixelTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tiny: dict[str, Path]) -> dict[str, Any]:
    """Stage 1 (3 steps), then stage 2 from it (3 steps); the stage-2 model kept in memory."""
    import torch

    from tracetrain.loop import Trainer
    from tracevla_ros.policy.pixelvla.train import build, train_pixelvla, train_settings

    s1 = train_pixelvla(_cfg(tiny, "s1", 1), progress=False)
    cfg = _cfg(tiny, "s2", 2, init=str(tiny["root"] / "s1"))
    task, model = build(cfg, torch.device("cpu"))
    result = Trainer(train_settings(cfg, progress=False), task, model).run()
    return {"s1": s1, "cfg": cfg, "task": task, "model": model, "result": result}


def test_stages_write_parts_adapter_and_statistics(trained: dict[str, Any],
                                                   tiny: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    s1, s2 = tiny["root"] / "s1", tiny["root"] / "s2"
    assert {"config.json", "model.safetensors", "dataset_statistics.json"} <= {
        p.name for p in s1.iterdir()}
    assert not (s1 / "adapter_model.safetensors").exists()
    names = {p.name for p in s2.iterdir()}
    assert {"config.json", "model.safetensors", "dataset_statistics.json",
            "adapter_model.safetensors", "adapter_config.json", "metrics.jsonl"} <= names
    assert "train_state.safetensors" not in names
    conf = json.loads((s2 / "config.json").read_text())
    assert conf["format"] == "tracevla_pixelvla/v1" and conf["stage"] == 2
    assert conf["lora"] == {"rank": 32, "alpha": 16}
    acfg = json.loads((s2 / "adapter_config.json").read_text())
    assert acfg["r"] == 32 and "language_model" in acfg["target_modules"]
    tensors = load_file(str(s2 / "model.safetensors"))
    assert {k.split(".")[0] for k in tensors} == {"prompt_encoder", "pixel_encoder", "head"}
    # stage 2 started from stage 1's statistics
    assert json.loads((s2 / "dataset_statistics.json").read_text()) == json.loads(
        (s1 / "dataset_statistics.json").read_text())
    assert len(trained["result"].losses) == 3 and all(np.isfinite(trained["result"].losses))
    # the prompts were drawn from the masks: every kind appears over the plan's draws
    task = trained["task"]
    kinds = {o.prompt.kinds() if o.prompt else () for o in
             (task.observation(int(i), s) for i in range(4) for s in range(40))}
    assert {(), ("point",), ("line",), ("box",), ("mask",)} <= kinds


def test_saved_parts_and_adapter_reload_to_identical_outputs(trained: dict[str, Any],
                                                             tiny: dict[str, Path]) -> None:
    import torch

    from tracevla_ros.policy.pixelvla.model import InputBuilder, load_llm_adapter, load_parts

    batch = trained["task"].builder.batch(_observations())
    with torch.no_grad():
        want = trained["model"].eval()(batch)
    out = tiny["root"] / "s2"
    results = {}
    for merge in (False, True):
        processor, vla = _base(tiny)
        model, body = load_parts(out, vla)
        with torch.no_grad():
            plain = model.eval()(batch)
        load_llm_adapter(model, out, merge=merge)
        b2 = InputBuilder(processor, model.cfg.mask_size, torch.float32).batch(_observations())
        with torch.no_grad():
            results[merge] = model.eval()(b2)
        assert body["stage"] == 2 and not torch.allclose(plain, want)  # the adapter matters
    assert torch.equal(results[False], want)
    torch.testing.assert_close(results[True], want, rtol=1e-5, atol=1e-5)


def test_backend_returns_an_unnormalised_8x7_chunk(trained: dict[str, Any],
                                                   tiny: dict[str, Path]) -> None:
    from tracevla_ros.policy.config import PolicyNodeConfig
    from tracevla_ros.policy.registry import make_policy
    from tracevla_ros.policy.vla.actions import unnormalize

    cfg = PolicyNodeConfig(backend="pixelvla-7b", checkpoint=str(tiny["base"]),
                           pixelvla_parts=str(tiny["root"] / "s2"), device="cpu",
                           use_trace=False)
    policy = make_policy(cfg)
    assert policy.stats.key == "pixelvla"  # the parts' only statistics (unnorm_key bridge_orig)
    for o in _observations():
        chunk = policy.infer(o)
        assert chunk.values.shape == (8, 7) and np.all(np.isfinite(chunk.values))
        raw = policy.predict_normalized(o)
        want = np.stack([unnormalize(r, policy.stats) for r in np.clip(raw, -1, 1)])
        np.testing.assert_allclose(chunk.values, want, rtol=1e-5, atol=1e-7)
    stage1 = make_policy(dataclasses.replace(cfg, pixelvla_parts=str(tiny["root"] / "s1")))
    with_prompt, without = (stage1.infer(o).values for o in _observations()[-1::-4])
    np.testing.assert_array_equal(with_prompt, without)  # stage 1 ignores prompts


def test_missing_files_are_named_in_one_error(trained: dict[str, Any], tiny: dict[str, Path],
                                              tmp_path: Path) -> None:
    from tracevla_ros.config import ConfigError
    from tracevla_ros.policy.config import PolicyNodeConfig
    from tracevla_ros.policy.pixelvla.backend import make_pixelvla_7b

    def make(**kw: Any) -> Any:
        base = dict(backend="pixelvla-7b", checkpoint=str(tiny["base"]), device="cpu",
                    pixelvla_parts=str(tiny["root"] / "s2"))
        return make_pixelvla_7b(PolicyNodeConfig(**{**base, **kw}))

    broken = tmp_path / "parts"
    shutil.copytree(tiny["root"] / "s2", broken)
    for n in ("model.safetensors", "dataset_statistics.json"):
        (broken / n).unlink()
    with pytest.raises(ConfigError, match="missing: model.safetensors, dataset_statistics.json"):
        make(pixelvla_parts=str(broken))
    no_adapter = tmp_path / "no_adapter"
    shutil.copytree(tiny["root"] / "s2", no_adapter)
    (no_adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(ConfigError, match="need their LoRA adapter; missing: "
                                          "adapter_model.safetensors"):
        make(pixelvla_parts=str(no_adapter))
    with pytest.raises(ConfigError, match="parameter 'pixelvla_parts': empty"):
        make(pixelvla_parts="")
    with pytest.raises(ConfigError, match="stage-1 parts"):
        make(pixelvla_parts=str(tiny["root"] / "s1"), adapter=str(tiny["root"] / "s2"))
    empty_base = tmp_path / "base"
    empty_base.mkdir()
    with pytest.raises(ConfigError, match="missing: config.json"):
        make(checkpoint=str(empty_base))


def test_prompts_file_is_checked_and_sampling_is_seeded(tmp_path: Path) -> None:
    from tracevla_ros.config import ConfigError
    from tracevla_ros.policy.pixelvla.train import load_prompts, sample_prompt

    ep = tmp_path / "ep"
    ep.mkdir()
    assert load_prompts(ep, 3) is None
    pts = np.full((3, 2, 2), np.nan, np.float32)
    pts[1, 0] = (0.2, 0.3)
    np.savez(ep / "prompts.npz", points=pts)
    src = load_prompts(ep, 3)
    assert src is not None
    assert sample_prompt(src, 0, 5, 0.0) is None  # no point at step 0
    p = sample_prompt(src, 1, 5, 0.0)
    assert p is not None and p.points.tolist() == [[pytest.approx(0.2), pytest.approx(0.3)]]
    np.savez(ep / "prompts.npz", points=pts[:2])
    with pytest.raises(ConfigError, match=r"points must be \(T=3, N, 2\)"):
        load_prompts(ep, 3)
    bad = pts.copy()
    bad[2, 0] = (0.5, np.nan)
    np.savez(ep / "prompts.npz", points=bad)
    with pytest.raises(ConfigError, match="absent rows all NaN"):
        load_prompts(ep, 3)


# --- the CLI -------------------------------------------------------------------------------------


def _plain_data(tmp: Path) -> None:
    from support.local_policy import make_dataset
    from support.tiny_vla import write_tiny_prismatic

    write_tiny_prismatic(tmp / "base")
    make_dataset(tmp / "data", episodes=1, steps=3, annotate=False)
    (tmp / "emptybase").mkdir()


P = "tracevla-train-pixelvla --base {tmp}/base --data {tmp}/data --out {tmp}/o"
CASES = [
    Case(P + " --stage 2", 2, "no episode of --data", _plain_data, "stage 2 without prompts"),
    Case(P + " --stage 3", 2, "--stage", _plain_data, "stage"),
    Case(P + " --stage 1 --lr nan", 2, "--lr", _plain_data, "NaN"),
    Case(P.replace("{tmp}/base", "{tmp}/emptybase") + " --stage 1", 2, "missing: config.json",
         _plain_data, "base without files"),
    Case(P + " --stage 2 --init {tmp}/data", 2, "--init", _plain_data, "init not a stage-1 output"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import support.bad_input as bad_input
    from tracevla_ros.tools import train_pixelvla

    monkeypatch.setattr(bad_input, "entry_point", lambda name: train_pixelvla.main)
    lines = [ln for ln in check_in_process(case, tmp_path).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tracevla-train-pixelvla: error:"), lines
    assert not (tmp_path / "o").exists()


def test_cli_trains_stage_1(tiny: dict[str, Path]) -> None:
    from tracevla_ros.tools.train_pixelvla import _parser, main

    assert not [a.option_strings for a in _parser()._actions if not a.help]
    out = tiny["root"] / "cli_s1"
    assert main(["--base", str(tiny["base"]), "--data", str(tiny["data"]), "--out", str(out),
                 "--stage", "1", "--steps", "1", "--batch-size", "2", "--device", "cpu",
                 "--precision", "fp32", "--quiet"]) == 0
    conf = json.loads((out / "config.json").read_text())
    assert conf["stage"] == 1 and conf["pixelvla"]["llm_dim"] == 16


@pytest.mark.gpu
def test_stage2_bf16_on_a_gpu(trained: dict[str, Any], tiny: dict[str, Path]) -> None:
    """precision auto on CUDA: the base in bf16 (autocast), the parts and LoRA in float32,
    finite losses, the backend acts in bf16. Not run here (no GPU in CI)."""
    import torch

    from tracetrain.loop import Trainer
    from tracevla_ros.policy.config import PolicyNodeConfig
    from tracevla_ros.policy.pixelvla.backend import make_pixelvla_7b
    from tracevla_ros.policy.pixelvla.train import build, train_settings

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = _cfg(tiny, "gpu_s2", 2, init=str(tiny["root"] / "s1"), device="cuda",
               precision="auto", steps=4)
    task, model = build(cfg, torch.device("cuda"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.vla.parameters() if not p.requires_grad]
    assert all(p.dtype == torch.float32 and p.is_cuda for p in trainable)
    assert all(p.dtype == torch.bfloat16 for p in frozen if p.is_floating_point())
    losses = Trainer(train_settings(cfg, progress=False), task, model).run().losses
    assert len(losses) == 4 and all(np.isfinite(losses))
    policy = make_pixelvla_7b(PolicyNodeConfig(checkpoint=str(tiny["base"]), device="cuda",
                                               pixelvla_parts=cfg.out))
    chunk = policy.infer(_observations()[-1])
    assert chunk.values.shape == (8, 7) and np.all(np.isfinite(chunk.values))
