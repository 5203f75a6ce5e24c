"""The local policy: shared transforms, trace dropout, checkpoints, backend, trainer (no ROS)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from support.local_policy import INSTRUCTIONS, SIZE, make_dataset, make_tiny_checkpoint  # noqa: E402

from tracevla_ros.config import ConfigError  # noqa: E402
from tracevla_ros.policy.base import Observation, PolicyError  # noqa: E402
from tracevla_ros.policy.config import PolicyNodeConfig  # noqa: E402
from tracevla_ros.policy.local import transforms as T  # noqa: E402
from tracevla_ros.policy.local.checkpoint import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
)
from tracevla_ros.policy.registry import make_policy  # noqa: E402


def _cfg(**kw: object) -> T.TransformConfig:
    base = dict(source_size=(64, 48), image_size=32, vocab=T.build_vocab(["pick up the cube"]),
                max_words=4, proprio_mean=(0.0, 1.0), proprio_std=(1.0, 2.0),
                action_low=(-0.04, -0.04, -0.02, -0.1, -0.1, -0.2, 0.0),
                action_high=(0.04, 0.04, 0.02, 0.1, 0.1, 0.2, 1.0))
    base.update(kw)
    return T.TransformConfig(**base)  # type: ignore[arg-type]


# --- transforms ----------------------------------------------------------------------
def test_action_normalisation_exact_values_and_round_trip() -> None:
    cfg = _cfg()
    a = np.array([[-0.04, 0.0, 0.02, 0.05, -0.1, 0.2, 1.0]])
    np.testing.assert_allclose(T.normalize_action(a, cfg), [[-1, 0, 1, 0.5, -1, 1, 1]], atol=1e-12)
    np.testing.assert_allclose(T.unnormalize_action(T.normalize_action(a, cfg), cfg), a, atol=1e-12)
    # Values outside [low, high] clip to the edges.
    assert T.normalize_action(np.array([1.0, -1, 0, 0, 0, 0, 2.0]), cfg)[[0, 1, 6]].tolist() == [1, -1, 1]
    # Bins: edges map to the first/last bin, bin centres map back to themselves.
    bins = T.action_to_bins(a, cfg)
    assert bins[0].tolist() == [0, 128, 255, 192, 0, 255, 255]
    every = np.tile(np.arange(256)[:, None], (1, 7))
    np.testing.assert_array_equal(T.action_to_bins(T.bins_to_action(every, cfg), cfg), every)
    # A value is decoded within half a bin width.
    rng = np.random.default_rng(0)
    x = rng.uniform(cfg.action_low, cfg.action_high, size=(100, 7))
    width = (np.array(cfg.action_high) - np.array(cfg.action_low)) / 256
    assert np.all(np.abs(T.bins_to_action(T.action_to_bins(x, cfg), cfg) - x) <= width / 2 + 1e-7)


def test_action_stats_fix_the_gripper_range() -> None:
    acts = np.zeros((50, 7))
    acts[:, 0] = np.linspace(-1, 1, 50)
    acts[:, 6] = 1.0
    low, high = T.action_stats(acts)
    assert low[6] == 0.0 and high[6] == 1.0 and low[0] < -0.9 and high[0] > 0.9


def test_decode_logits_rejects_non_finite_and_bad_shape() -> None:
    cfg = _cfg()
    z = np.zeros((7, 256), np.float32)
    z[:, 128] = 5.0
    out = T.decode_logits(z, cfg)
    assert out.shape == (1, 7) and 0.0 <= out[0, 6] <= 1.0
    z[3, 7] = np.nan
    with pytest.raises(PolicyError, match=r"NaN/inf logits in action dims \[3\]"):
        T.decode_logits(z, cfg)
    with pytest.raises(PolicyError, match="model output shape"):
        T.decode_logits(np.zeros((6, 256)), cfg)


def test_instruction_encoding() -> None:
    cfg = _cfg()
    ids = T.encode_instruction("Pick up the RED cube, please now", cfg)
    vocab = list(cfg.vocab)
    assert ids.tolist() == [vocab.index("pick"), vocab.index("up"), vocab.index("the"), 1]  # red: unk
    with pytest.raises(PolicyError, match="no words"):
        T.encode_instruction(" ,. ", cfg)


def test_frame_and_proprio_checks() -> None:
    cfg = _cfg()
    good = np.zeros((48, 64, 3), np.uint8)
    assert T.check_frame(good, cfg) is good
    with pytest.raises(PolicyError, match="trained on 64x48"):
        T.check_frame(np.zeros((64, 64, 3), np.uint8), cfg)
    with pytest.raises(PolicyError, match="uint8 RGB"):
        T.check_frame(good.astype(np.float32), cfg)
    with pytest.raises(PolicyError, match="uint8 RGB"):
        T.check_frame(np.zeros((48, 64), np.uint8), cfg)
    np.testing.assert_allclose(T.normalize_proprio(np.array([1.0, 5.0]), cfg), [1.0, 2.0])
    with pytest.raises(PolicyError, match="needs the 2 JointState positions"):
        T.normalize_proprio(np.zeros(3), cfg)
    with pytest.raises(PolicyError, match="NaN"):
        T.normalize_proprio(np.array([np.nan, 0.0]), cfg)


def test_observation_to_inputs_two_image_forms() -> None:
    cfg = _cfg()
    img = np.full((48, 64, 3), 10, np.uint8)
    ov = np.full((48, 64, 3), 200, np.uint8)
    x = T.observation_to_inputs(img, ov, "pick up the cube", np.zeros(2), cfg)
    assert x.images.shape == (2, 32, 32, 3) and x.images.dtype == np.uint8
    assert x.images[0].max() == 10 and x.images[1].min() == 200  # [original, overlay]
    no = T.observation_to_inputs(img, None, "pick up the cube", np.zeros(2), cfg)
    np.testing.assert_array_equal(no.images[0], no.images[1])  # no-trace form
    base = T.observation_to_inputs(img, ov, "pick up the cube", np.zeros(2), _cfg(use_trace=False))
    np.testing.assert_array_equal(base.images[0], base.images[1])  # baseline ignores overlays


def test_trace_dropout() -> None:
    rng = np.random.default_rng(0)
    assert not T.trace_dropout_mask(1000, 0.0, rng).any()
    assert T.trace_dropout_mask(1000, 1.0, rng).all()
    rate = T.trace_dropout_mask(20000, 0.25, rng).mean()
    assert abs(rate - 0.25) < 0.015
    with pytest.raises(ValueError, match="alpha"):
        T.trace_dropout_mask(3, 1.5, rng)
    imgs = np.zeros((400, 2, 4, 4, 3), np.uint8)
    imgs[:, 1] = 255
    out = T.trace_dropout(imgs, 0.5, np.random.default_rng(1))
    dropped = out[:, 1].reshape(400, -1).max(axis=1) == 0
    assert 150 < dropped.sum() < 250
    np.testing.assert_array_equal(out[dropped, 1], out[dropped, 0])  # replaced by the original
    assert (out[~dropped, 1] == 255).all()


# --- checkpoint + backend ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def _obs(instruction: str = INSTRUCTIONS[0], size: int = SIZE, overlay: bool = True) -> Observation:
    img = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Observation(image=img, overlay=img.copy() if overlay else None,
                       instruction=instruction, proprio=np.zeros(8, np.float32))


def test_checkpoint_round_trip(tiny_ckpt: Path) -> None:
    from tracevla_ros.policy.local.checkpoint import save_checkpoint

    a = load_checkpoint(tiny_ckpt)
    assert sorted(p.name for p in tiny_ckpt.iterdir()) == \
        ["config.json", "loss.png", "metrics.jsonl", "model.safetensors"]
    copy = save_checkpoint(tiny_ckpt.parent / "copy", a.model, a.transforms, a.training)
    b = load_checkpoint(copy)
    assert b.transforms == a.transforms and b.model_config == a.model_config
    x = T.observation_to_inputs(_obs().image, None, INSTRUCTIONS[0], np.zeros(8), a.transforms)
    args = (torch.from_numpy(x.images)[None], torch.from_numpy(x.words)[None],
            torch.from_numpy(x.proprio)[None])
    with torch.no_grad():
        torch.testing.assert_close(a.model(*args), b.model(*args), rtol=0, atol=0)
    info = json.loads((tiny_ckpt / "config.json").read_text())
    assert info["training"]["episode_seeds"] == {"task0": [1000], "task1": [1001]}


def test_checkpoint_refuses_pickle_missing_files_and_mismatch(tiny_ckpt: Path, tmp_path: Path) -> None:
    pkl = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, pkl)
    with pytest.raises(CheckpointError, match=r"pickle files \(\.pt\) are refused"):
        load_checkpoint(pkl)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"missing \['model.safetensors'\].*config.json and "
                                              r"model.safetensors"):
        load_checkpoint(broken)
    # A pickle renamed to model.safetensors is not unpickled: safetensors rejects it.
    shutil.copy(pkl, broken / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(broken)
    # Config describing another network than the tensors.
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_ckpt, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["model"]["width"] = 64
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match the network"):
        load_checkpoint(wrong)
    cfg["model"]["width"] = 32
    cfg["model"]["new_knob"] = 1
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: model: unknown key.*new_knob"):
        load_checkpoint(wrong)
    del cfg["model"]["new_knob"]
    cfg["model"]["depth"] = "two"  # issue 18: was a TypeError traceback from torch
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: model: key 'depth' expects int, "
                                              r"got str 'two'"):
        load_checkpoint(wrong)
    cfg["model"]["depth"] = 1
    cfg["transforms"]["proprio_mean"][2] = float("nan")  # NaN statistics: every step would fail
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"transforms: key 'proprio_mean\[2\]' is nan"):
        load_checkpoint(wrong)
    cfg["transforms"]["proprio_mean"][2] = 0.0
    cfg["format"] = "tracevla_local_policy/v2"
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="version 2, this code reads version 1.*newer code"):
        load_checkpoint(wrong)
    cfg["format"] = "something/v0"
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format 'something/v0'"):
        load_checkpoint(wrong)
    assert issubclass(CheckpointError, ConfigError)  # policy_node fails to start cleanly


def test_backend_shape_and_bad_inputs(tiny_ckpt: Path) -> None:
    policy = make_policy(PolicyNodeConfig(backend="local", checkpoint=str(tiny_ckpt), device="cpu"))
    assert policy.name == "local"
    chunk = policy.infer(_obs())
    assert chunk.values.shape == (1, 7) and chunk.values.dtype == np.float32
    assert np.all(np.isfinite(chunk.values)) and 0.0 <= chunk.values[0, 6] <= 1.0
    assert chunk.trace_used and not policy.infer(_obs(overlay=False)).trace_used
    cfg = policy.transforms  # type: ignore[attr-defined]
    low, high = np.array(cfg.action_low), np.array(cfg.action_high)
    assert np.all(chunk.values[0] >= low - 1e-6) and np.all(chunk.values[0] <= high + 1e-6)
    with pytest.raises(PolicyError, match="trained on 64x64 frames"):
        policy.infer(_obs(size=96))
    with pytest.raises(PolicyError, match="instruction is empty"):
        policy.infer(_obs(instruction="  "))
    with pytest.raises(PolicyError, match="none of the words"):
        policy.infer(_obs(instruction="fly over moons"))
    bad = Observation(image=np.zeros((SIZE, SIZE, 3), np.uint8), overlay=None,
                      instruction=INSTRUCTIONS[0], proprio=np.zeros(3, np.float32))
    with pytest.raises(PolicyError, match="proprio has 3 values"):
        policy.infer(bad)
    with pytest.raises(PolicyError, match="uint8 RGB"):
        Observation(image=np.zeros((SIZE, SIZE, 3), np.float32), overlay=None,  # type: ignore[arg-type]
                    instruction="x")


def test_backend_rejects_nan_model_output(tiny_ckpt: Path) -> None:
    from tracevla_ros.policy.local.backend import LocalPolicy

    policy = LocalPolicy(tiny_ckpt, device="cpu")
    with torch.no_grad():
        policy.checkpoint.model.head.bias[5] = float("nan")
    with pytest.raises(PolicyError, match="NaN/inf logits in action dims"):
        policy.infer(_obs())


def test_shipped_default_resolves() -> None:
    from tracevla_ros.policy.local.checkpoint import CHECKPOINTS_DIR, DEFAULT_CHECKPOINT

    assert resolve_checkpoint("") == CHECKPOINTS_DIR / DEFAULT_CHECKPOINT
    assert resolve_checkpoint("widowx_notrace") == CHECKPOINTS_DIR / "widowx_notrace"


# --- trainer ------------------------------------------------------------------------
def test_trainer_loss_falls_and_data_is_shared_with_serving(tmp_path: Path) -> None:
    from tracevla_ros.policy.local.train import TrainConfig, load_training_data, train

    data = make_dataset(tmp_path / "data", episodes=2, steps=14)
    d = load_training_data([str(data)], 32, 12, use_trace=True)
    assert d.images.shape == (28, 2, 32, 32, 3) and d.has_trace.sum() > 0
    assert not d.has_trace[:5].any()  # N = 6: no trace before step 5
    # The trainer's sample is exactly what the backend's transform makes of the same step.
    from tracevla_ros.sim.dataset import list_episodes, load_episode
    from tracevla_ros.tracking.offline import load_traces

    ep_dir = list_episodes(data)[0]
    ep, (tr, _) = load_episode(ep_dir), load_traces(ep_dir)
    t = int(np.flatnonzero(tr.valid)[0])
    x = T.observation_to_inputs(ep.rgb[t], tr.overlays[t], ep.instruction, ep.joint_positions[t],
                                d.transforms)
    np.testing.assert_array_equal(x.images, d.images[t])
    np.testing.assert_array_equal(x.words, d.words[t])
    np.testing.assert_allclose(x.proprio, d.proprio[t])
    cfg = TrainConfig(data=(str(data),), out=str(tmp_path / "ck"), epochs=8, batch_size=28,
                      image_size=32, lr=3e-3, val_fraction=0.0, device="cpu", shift_px=0,
                      trace_dropout=0.0, model={"width": 32, "depth": 1, "heads": 2,
                                                 "channels": (8, 16)})
    info = train(cfg, progress=False)
    losses = [h["train_loss"] for h in info["history"]]
    assert len(losses) == 8 and losses[-1] < 0.9 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # falls every epoch
    assert (tmp_path / "ck" / "loss.png").stat().st_size > 1000
    assert not (tmp_path / "ck" / "train_state.safetensors").exists()  # removed when a run ends
    assert len((tmp_path / "ck" / "metrics.jsonl").read_text().splitlines()) == 8


def test_trainer_is_deterministic_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tracevla_ros.policy.local.train as tr

    data = make_dataset(tmp_path / "data", episodes=4, steps=10)
    common = dict(data=(str(data),), epochs=2, batch_size=8, image_size=32, device="cpu",
                  model={"width": 32, "depth": 1, "heads": 2, "channels": (8, 16)})
    a = tr.train(tr.TrainConfig(out=str(tmp_path / "a"), **common), progress=False)  # type: ignore[arg-type]
    b = tr.train(tr.TrainConfig(out=str(tmp_path / "b"), **common), progress=False)  # type: ignore[arg-type]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert not (tmp_path / "a" / "train_state.safetensors").exists()  # a finished run cleans up
    # Interrupted during epoch 2 (after epoch 1 was saved), then resumed: the same weights.
    real_eval = tr.evaluate
    calls = []

    def interrupt(*args: object, **kw: object) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_eval(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tr, "evaluate", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tr.train(tr.TrainConfig(out=str(tmp_path / "c"), **common), progress=False)  # type: ignore[arg-type]
    assert (tmp_path / "c" / "train_state.safetensors").is_file()
    monkeypatch.setattr(tr, "evaluate", real_eval)
    c = tr.train(tr.TrainConfig(out=str(tmp_path / "c"), resume=True, **common), progress=False)  # type: ignore[arg-type]
    assert [h["train_loss"] for h in c["history"]] == [h["train_loss"] for h in a["history"]]
    wa = load_checkpoint(tmp_path / "a").model.state_dict()
    wc = load_checkpoint(tmp_path / "c").model.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wc[k])
    from tracevla_ros.tools.train import main

    assert main(["--data", str(data), "--out", str(tmp_path / "d"), "--resume", "--quiet"]) == 2


def test_trainer_needs_traces_unless_no_trace(tmp_path: Path) -> None:
    from tracevla_ros.tools.train import main

    data = make_dataset(tmp_path / "data", episodes=1, steps=6, annotate=False)
    assert main(["--data", str(data), "--out", str(tmp_path / "ck"), "--quiet"]) == 2
    rc = main(["--data", str(data), "--out", str(tmp_path / "ck"), "--no-trace", "--epochs", "1",
               "--image-size", "32", "--max-steps", "1", "--quiet"])
    assert rc == 0
    assert load_checkpoint(tmp_path / "ck").transforms.use_trace is False
