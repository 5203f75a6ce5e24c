"""VLA backends without weights: exact prompts, token decoding, unnormalisation, the
unnormalisation probe, statistics, checkpoint checks, image preparation.

Reference numbers: BridgeData V2 (``bridge_orig``) action statistics as published
with OpenVLA; expected actions hand-computed with exact fractions from
``0.5 * (a + 1) * (q99 - q01) + q01`` and bin centres ``-1 + (2 i + 1) / 255``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.base import Observation, PolicyError
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.registry import BACKENDS, backend_factory
from tracevla_ros.policy.vla import prompts
from tracevla_ros.policy.vla.actions import (
    UNNORM_BY_MODEL,
    UNNORM_BY_POLICY,
    ActionStats,
    classify_probe_output,
    decode_tokens,
    finalize_action,
    probe_token_ids,
    unnormalize,
)
from tracevla_ros.policy.vla.checkpoint import resolve_checkpoint, validate_checkpoint
from tracevla_ros.policy.vla.hf import load_kwargs, make_openvla, make_tracevla_7b
from tracevla_ros.policy.vla.images import prepare_pair, rlds_resize
from tracevla_ros.policy.vla.models import MODELS, prepare_inputs
from tracevla_ros.policy.vla.stats import load_norm_stats, select_action_stats

BRIDGE = {
    "action": {
        "q01": [-0.02872725307941437, -0.04170349963009357, -0.026093858778476715,
                -0.08092105075716972, -0.09288699507713317, -0.20718276381492615, 0.0],
        "q99": [0.028309678435325586, 0.040855254605412394, 0.040161586627364146,
                0.08192047759890528, 0.07792850524187081, 0.20382574498653397, 1.0],
        "mask": [True, True, True, True, True, True, False],
    }
}
VOCAB = 32000  # Llama-2 base vocabulary of OpenVLA / TraceVLA-7B (32064 padded to a multiple of 64)


def bridge_stats() -> ActionStats:
    return select_action_stats({"bridge_orig": BRIDGE}, "bridge_orig")


# --- prompts ---------------------------------------------------------------------------
def test_tracevla_7b_prompts_are_exact() -> None:
    assert prompts.tracevla_prompt("Put the carrot on the plate", has_trace=False) == (
        "In: What action should the robot take to put the carrot on the plate?\nOut:")
    assert prompts.tracevla_prompt("  put  the carrot on the plate ", has_trace=True) == (
        "In: You are given two images: one with the original robot observation, and another one "
        "marked with historical traces of the robot end effector and moving objects, separated by "
        "a special separator token. What action should the robot take to put the carrot on the "
        "plate?\nOut:")
    assert prompts.openvla_prompt("open the drawer") == (
        "In: What action should the robot take to open the drawer?\nOut:")
    with pytest.raises(PolicyError, match="instruction is empty"):
        prompts.tracevla_prompt(" \n", has_trace=True)


class Phi3Tokenizer:
    """Renders like Phi-3's chat template; records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, bool, bool]] = []

    def apply_chat_template(self, conversation: Any, tokenize: bool = True,
                            add_generation_prompt: bool = False) -> str:
        self.calls.append((conversation, tokenize, add_generation_prompt))
        text = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in conversation)
        return text + ("<|assistant|>\n" if add_generation_prompt else "")


def test_phi3_prompts_are_exact() -> None:
    tok = Phi3Tokenizer()
    assert prompts.phi3_prompt("Put the carrot on the plate", False, tok) == (
        "<|user|>\n<|image_1|><|image_2|>\nWhat action should the robot take to put the carrot "
        "on the plate?<|end|>\n<|assistant|>\n")
    assert tok.calls[-1][1:] == (False, True)  # tokenize=False, add_generation_prompt=True
    assert prompts.phi3_message("put the carrot on the plate", True) == {
        "role": "user",
        "content": "You are given two images: one with the original robot observation "
                   "<|image_1|>, and another one marked with historial traces of the robot end "
                   "effector and moving objects <|image_2|>.\nWhat action should the robot take "
                   "to put the carrot on the plate?"}


# --- tokens -> actions -----------------------------------------------------------------
IDS = np.array([31999, 31872, 31744, 31873, 29871, 32000, 31745])
# bins vocab - id = 1, 128, 256, 127, 2129, 0, 255 -> centre indices 0, 127, 254(clip), 126, 254, 0, 254
NORMALIZED = [-254 / 255, 0.0, 254 / 255, -2 / 255, 254 / 255, -254 / 255, 254 / 255]


def test_token_decoding_hand_values() -> None:
    got = decode_tokens(IDS, VOCAB)
    assert got.tolist() == pytest.approx(NORMALIZED, abs=1e-15)
    assert got[1] == 0.0 and got[0] == pytest.approx(-0.996078431372549, abs=1e-15)
    with pytest.raises(PolicyError, match="expected 7 action tokens, got 6"):
        decode_tokens(IDS[:6], VOCAB)


def test_unnormalisation_hand_values_bridge_orig() -> None:
    got = unnormalize(decode_tokens(IDS, VOCAB), bridge_stats())
    assert got.tolist() == pytest.approx([
        -0.02861541595879723,    # q01 + (q99 - q01) / 510
        -0.0004241225123405891,  # (q01 + q99) / 2
        0.040031673989313475,    # q99 - (q99 - q01) / 510
        -0.00013888080797957596,  # q01 + (253 / 510)(q99 - q01)
        0.07759357288830414,
        -0.20637686477806053,
        0.996078431372549,       # gripper: mask false, not rescaled
    ], abs=1e-15)
    chunk = finalize_action(got, trace_used=True)
    assert chunk.values.shape == (1, 7) and chunk.values.dtype == np.float32
    assert chunk.trace_used and chunk.values[0, 6] == np.float32(254 / 255)


def test_finalize_rejects_non_finite_and_clips_gripper() -> None:
    for bad in (np.nan, np.inf, -np.inf):
        a = np.zeros(7)
        a[4] = bad
        with pytest.raises(PolicyError, match="non-finite value in dim 4"):
            finalize_action(a, False)
    a = np.zeros(7)
    a[6] = -2 / 255  # a bin centre just below 0
    assert finalize_action(a, False).values[0, 6] == 0.0
    with pytest.raises(PolicyError, match="returned 8 action values"):
        finalize_action(np.zeros(8), False)


# --- who unnormalises: decision logic and the probe ------------------------------------
def test_classify_probe_output() -> None:
    stats = bridge_stats()
    norm = decode_tokens(probe_token_ids(VOCAB), VOCAB)
    assert classify_probe_output(norm, VOCAB, stats) == UNNORM_BY_POLICY
    assert classify_probe_output(unnormalize(norm, stats), VOCAB, stats) == UNNORM_BY_MODEL
    bf16ish = unnormalize(norm, stats) * (1 + 2 ** -8)  # a model computing in bf16
    assert classify_probe_output(bf16ish, VOCAB, stats) == UNNORM_BY_MODEL
    with pytest.raises(PolicyError, match="decoding differs from OpenVLA's"):
        classify_probe_output(decode_tokens(probe_token_ids(VOCAB + 64), VOCAB), VOCAB, stats)
    with pytest.raises(PolicyError, match="returned 6 values"):
        classify_probe_output(norm[:6], VOCAB, stats)


class _FakeVLA:
    """Stands in for an OpenVLA-style model: predict_action -> generate -> decode [-> unnormalise].

    ``unnormalises`` False mimics the TraceVLA repository's copy (unnormalisation
    commented out); True mimics OpenVLA's.
    """

    def __init__(self, torch: Any, unnormalises: bool) -> None:
        self.torch = torch
        self.unnormalises = unnormalises
        self.vocab_size = VOCAB

    def generate(self, input_ids: Any, max_new_tokens: int = 7, **kwargs: Any) -> Any:
        raise AssertionError("the probe must not run the real generate")

    def predict_action(self, input_ids: Any, unnorm_key: str | None = None, **kwargs: Any) -> np.ndarray:
        out = self.generate(input_ids, max_new_tokens=7, **kwargs)
        ids = out[0, -7:].cpu().numpy()
        a = decode_tokens(ids, self.vocab_size)
        return unnormalize(a, bridge_stats()) if self.unnormalises else a


@pytest.mark.parametrize("unnormalises, mode", [(True, UNNORM_BY_MODEL), (False, UNNORM_BY_POLICY)])
def test_probe_detects_both_published_behaviours(unnormalises: bool, mode: str) -> None:
    torch = pytest.importorskip("torch")
    from tracevla_ros.policy.vla.hf import stubbed_generate

    vla = _FakeVLA(torch, unnormalises)
    ids = torch.tensor([[1, 2, 3]])
    real = _FakeVLA.__dict__["generate"]
    out = stubbed_generate(vla, probe_token_ids(VOCAB), lambda: vla.predict_action(ids, "bridge_orig"), torch)
    assert classify_probe_output(out, VOCAB, bridge_stats()) == mode
    assert _FakeVLA.__dict__["generate"] is real  # the real generate is back
    with pytest.raises(AssertionError, match="must not run the real generate"):
        vla.predict_action(ids)
    # the final action is unnormalised exactly once either way
    final = out if mode == UNNORM_BY_MODEL else unnormalize(out, bridge_stats())
    assert final == pytest.approx(unnormalize(decode_tokens(probe_token_ids(VOCAB), VOCAB),
                                              bridge_stats()), abs=1e-15)


class _SuperCallingVLA(_FakeVLA):
    """Calls ``super().generate`` (bypasses anything set on the instance)."""

    def predict_action(self, input_ids: Any, unnorm_key: str | None = None, **kwargs: Any) -> np.ndarray:
        out = super().generate(input_ids, max_new_tokens=7)
        return decode_tokens(out[0, -7:].cpu().numpy(), self.vocab_size)


def test_probe_reaches_super_generate() -> None:
    torch = pytest.importorskip("torch")
    from tracevla_ros.policy.vla.hf import stubbed_generate

    vla = _SuperCallingVLA(torch, False)
    out = stubbed_generate(vla, probe_token_ids(VOCAB), lambda: vla.predict_action(torch.tensor([[1]])), torch)
    assert classify_probe_output(out, VOCAB, bridge_stats()) == UNNORM_BY_POLICY


def test_probe_refuses_a_model_that_never_generates() -> None:
    torch = pytest.importorskip("torch")
    from tracevla_ros.policy.vla.hf import stubbed_generate

    with pytest.raises(PolicyError, match="never called generate"):
        stubbed_generate(_FakeVLA(torch, True), probe_token_ids(VOCAB), lambda: np.zeros(7), torch)


# --- statistics --------------------------------------------------------------------------
def test_statistics_loading(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"norm_stats": {"fractal": BRIDGE}}))
    assert sorted(load_norm_stats(tmp_path)) == ["fractal"]  # from config.json
    (tmp_path / "dataset_statistics.json").write_text(json.dumps({"bridge_orig": BRIDGE, "fractal": BRIDGE}))
    stats = load_norm_stats(tmp_path)  # dataset_statistics.json wins
    with pytest.raises(ConfigError, match=r"'widowx' is not among .* available: \['bridge_orig', 'fractal'\]"):
        select_action_stats(stats, "widowx", "ckpt")
    s = select_action_stats(stats, "bridge_orig")
    assert s.mask.tolist() == [True] * 6 + [False] and s.q99[6] == 1.0
    nomask = {"k": {"action": {"q01": BRIDGE["action"]["q01"], "q99": BRIDGE["action"]["q99"]}}}
    assert select_action_stats(nomask, "k").mask.tolist() == [True] * 6 + [False]
    with pytest.raises(ConfigError, match="must have 7 values"):
        select_action_stats({"k": {"action": {"q01": [0.0] * 6, "q99": [1.0] * 6}}}, "k")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no action statistics: expected dataset_statistics.json"):
        load_norm_stats(empty)


# --- checkpoints ------------------------------------------------------------------------
def write_checkpoint(d: Path, shards: int = 2) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({
        "auto_map": {"AutoConfig": "configuration_prismatic.OpenVLAConfig",
                     "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction"},
        "norm_stats": {"bridge_orig": BRIDGE}}))
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {f"layer{i}.weight": n for i, n in enumerate(names)}}))
    for n in names + ["tokenizer_config.json", "tokenizer.model", "preprocessor_config.json",
                      "configuration_prismatic.py", "modeling_prismatic.py"]:
        (d / n).write_text("x")
    return d


def test_complete_checkpoint_passes_partial_names_every_missing_file(tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "ckpt", shards=3)
    assert validate_checkpoint(resolve_checkpoint(str(ckpt))) == ckpt
    (ckpt / "model-00002-of-00003.safetensors").unlink()
    (ckpt / "modeling_prismatic.py").unlink()
    (ckpt / "preprocessor_config.json").write_text("")  # empty = not there
    with pytest.raises(ConfigError) as err:
        validate_checkpoint(ckpt)
    msg = str(err.value)
    assert str(ckpt) in msg
    assert "missing: model-00002-of-00003.safetensors, preprocessor_config.json, modeling_prismatic.py" in msg
    with pytest.raises(ConfigError, match="is not a directory"):
        resolve_checkpoint(str(tmp_path / "nowhere"))


def test_hf_cache_snapshot_is_found_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"'furonghuang-lab/tracevla_7b' is not in the local Hugging "
                                          r"Face cache .*nothing is downloaded"):
        resolve_checkpoint("", "furonghuang-lab/tracevla_7b")
    repo = tmp_path / "hub" / "models--furonghuang-lab--tracevla_7b"
    blobs = write_checkpoint(repo / "blobs_src")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in blobs.iterdir():  # the cache links snapshot files to blobs
        (snap / f.name).symlink_to(f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123\n")
    got = resolve_checkpoint("", "furonghuang-lab/tracevla_7b")
    assert got == snap and validate_checkpoint(got) == snap
    (blobs / "model-00001-of-00002.safetensors").unlink()  # interrupted download: dangling link
    with pytest.raises(ConfigError, match="missing: model-00001-of-00002.safetensors"):
        validate_checkpoint(got)


def test_backend_errors_before_any_model_code(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is incomplete; missing: config.json"):
        make_tracevla_7b(PolicyNodeConfig(checkpoint=str(tmp_path)))
    ckpt = write_checkpoint(tmp_path / "ok")
    with pytest.raises(ConfigError, match=r"'unnorm_key': 'fractal' is not among"):
        make_openvla(PolicyNodeConfig(checkpoint=str(ckpt), unnorm_key="fractal"))


def test_missing_transformers_names_the_requirements_file(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails, installed or not
    ckpt = write_checkpoint(tmp_path / "ok")
    with pytest.raises(ConfigError, match=r"pip install -r requirements-vla.txt.*backend 'remote'"):
        make_tracevla_7b(PolicyNodeConfig(checkpoint=str(ckpt)))


def test_registry_entries_resolve_without_the_model_stack() -> None:
    for name in ("tracevla-7b", "tracevla-phi3", "openvla", "remote"):
        assert callable(backend_factory(name)), name
    assert set(MODELS) <= set(BACKENDS)


def test_load_kwargs() -> None:
    assert load_kwargs("prismatic", cuda=True, flash=True) == {
        "torch_dtype": "bfloat16", "trust_remote_code": True, "local_files_only": True,
        "low_cpu_mem_usage": True, "attn_implementation": "flash_attention_2"}
    assert "attn_implementation" not in load_kwargs("prismatic", cuda=True, flash=False)
    cpu = load_kwargs("prismatic", cuda=False, flash=True)
    assert cpu["torch_dtype"] == "float32" and "attn_implementation" not in cpu
    assert load_kwargs("phi3v", cuda=True, flash=False)["_attn_implementation"] == "eager"
    assert load_kwargs("phi3v", cuda=True, flash=True)["_attn_implementation"] == "flash_attention_2"


# --- images --------------------------------------------------------------------------------
def _frame(h: int = 480, w: int = 640) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)


def test_flat_image_survives_jpeg_and_resize() -> None:
    flat = np.full((480, 640, 3), (120, 60, 200), np.uint8)
    out = rlds_resize(flat, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - [120, 60, 200]).max() <= 2  # JPEG chroma rounding only


def test_pair_without_trace_repeats_the_frame_and_keeps_a_256_overlay() -> None:
    img = _frame()
    first, second = prepare_pair(img, None)
    assert first.shape == (256, 256, 3) and second is first
    overlay = np.zeros((256, 256, 3), np.uint8)
    overlay[100, 50:200] = (255, 0, 0)
    _, second = prepare_pair(img, overlay)
    assert np.array_equal(second, overlay)  # drawn at 256: used as is
    _, second = prepare_pair(img, _frame())  # drawn at camera resolution: resized
    assert second.shape == (256, 256, 3)


def test_bad_images_are_policy_errors() -> None:
    with pytest.raises(PolicyError, match=r"\(H, W, 3\) uint8 RGB, got \(480, 640, 3\) float32"):
        prepare_pair(np.zeros((480, 640, 3), np.float32), None)
    with pytest.raises(PolicyError, match="is 20x16 px; the VLA backends need >= 32 px"):
        prepare_pair(np.zeros((16, 20, 3), np.uint8), None)


def test_prepare_inputs_per_model() -> None:
    img = _frame()
    ovl = img.copy()
    ovl[200:210] = 255
    with_trace = Observation(image=img, overlay=ovl, instruction="Put the carrot on the plate")
    no_trace = Observation(image=img, overlay=None, instruction="put the carrot on the plate")

    p = prepare_inputs(MODELS["tracevla-7b"], with_trace)
    assert p.trace_used and [i.shape for i in p.images] == [(256, 256, 3)] * 2
    assert p.prompt.startswith("In: You are given two images")
    p = prepare_inputs(MODELS["tracevla-7b"], no_trace)
    assert not p.trace_used and p.images[1] is p.images[0]
    assert p.prompt == "In: What action should the robot take to put the carrot on the plate?\nOut:"

    p = prepare_inputs(MODELS["tracevla-phi3"], with_trace, Phi3Tokenizer())
    assert p.trace_used and [i.shape for i in p.images] == [(336, 336, 3)] * 2
    assert "historial traces" in p.prompt and p.prompt.endswith("<|assistant|>\n")
    p = prepare_inputs(MODELS["tracevla-phi3"], no_trace, Phi3Tokenizer())
    assert p.images[1] is p.images[0] and p.prompt.startswith("<|user|>\n<|image_1|><|image_2|>")

    p = prepare_inputs(MODELS["openvla"], with_trace)  # OpenVLA ignores the trace
    assert not p.trace_used and [i.shape for i in p.images] == [(224, 224, 3)]
    assert p.prompt == "In: What action should the robot take to put the carrot on the plate?\nOut:"


@pytest.mark.manual
@pytest.mark.gpu
def test_published_tracevla_7b_checkpoint_runs() -> None:
    """With the real weights (set TRACEVLA_7B_CHECKPOINT): one finite action per step."""
    ckpt = os.environ.get("TRACEVLA_7B_CHECKPOINT", "")
    if not ckpt:
        pytest.skip("set TRACEVLA_7B_CHECKPOINT to a local tracevla_7b checkpoint")
    policy = make_tracevla_7b(PolicyNodeConfig(checkpoint=ckpt))
    chunk = policy.infer(Observation(image=_frame(), overlay=None, instruction="put the carrot on the plate"))
    assert chunk.values.shape == (1, 7) and np.all(np.isfinite(chunk.values))
