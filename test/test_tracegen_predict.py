"""TraceGenPredictor and tracegen-predict: input checks, truncation warning, outputs."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tracegen_ros.checkpoint import save_checkpoint  # noqa: E402
from tracegen_ros.model import TraceGenConfig, TraceGenModel  # noqa: E402
from tracegen_ros.predict import TraceGenInputError, TraceGenPredictor, main  # noqa: E402

TINY = dict(image_size=32, d_model=32, num_heads=2, num_layers=1, conv_channels=(8, 16),
            rgb_encoder_dims=(16,), depth_encoder_dims=(16,), cond_dim=32, text_encoder_dim=16,
            patch_size=4, max_text_tokens=6, vocab=("push", "the", "block", "left"))
H, W = 48, 64
K = np.array([[60.0, 0, 31.5], [0, 60.0, 23.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def predictor() -> TraceGenPredictor:
    torch.manual_seed(0)
    model = TraceGenModel(TraceGenConfig.from_preset("small", **TINY))
    # a non-trivial increment scale so the untrained (zero-velocity) model still
    # predicts depth: step-0 mean z = 0.7 m, everything else zero
    mean = torch.zeros(32, 3)
    mean[0, 2] = 0.7
    model.set_normalisation(mean, torch.full((32, 3), 1e-3))
    return TraceGenPredictor(model, device="cpu")


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth = np.full((H, W), 1.4, np.float32)
    return rgb, depth


def test_prediction_layout_and_depth_rescaling(predictor: TraceGenPredictor) -> None:
    rgb, depth = _inputs()
    traj = predictor.predict(rgb, depth, K, "push the block left", steps=4, seed=1)
    assert traj.shape == (400, 32, 3) and traj.dtype == np.float32
    grid = predictor.grid_keypoints(H, W)
    assert np.allclose(traj[:, 0, :2], grid, atol=0.05 * W)
    # predicted z (about 0.7 m) was rescaled to the 1.4 m sensor depth
    assert np.allclose(traj[:, 0, 2], 1.4, atol=0.01)
    same = predictor.predict(rgb, depth, K, "push the block left", steps=4, seed=1)
    assert np.array_equal(traj, same)  # seeded


def test_bad_inputs_raise_typed_errors(predictor: TraceGenPredictor) -> None:
    rgb, depth = _inputs()
    cases = [
        (dict(depth_m=None), "depth is missing"),
        (dict(depth_m=np.zeros((H, W), np.float32)), "all zero"),
        (dict(depth_m=np.full((H, W), np.nan, np.float32)), "all zero"),
        (dict(depth_m=np.ones((H // 2, W // 2), np.float32)), "mismatched RGB/depth sizes"),
        (dict(depth_m=np.full((H, W), 1400.0, np.float32)), "millimetres"),
        (dict(rgb=rgb.astype(np.float32)), "uint8"),
        (dict(rgb=rgb[..., 0]), r"\(H, W, 3\)"),
        (dict(K=np.eye(2)), "3x3"),
        (dict(instruction="  "), "non-empty"),
        (dict(steps=0), "steps"),
        (dict(guidance=-1.0), "guidance"),
        (dict(temperature=-0.5), "temperature"),
    ]
    for change, match in cases:
        kw = dict(rgb=rgb, depth_m=depth, K=K, instruction="push the block", steps=2)
        kw.update(change)
        with pytest.raises(TraceGenInputError, match=match):
            predictor.predict(**kw)  # type: ignore[arg-type]


def test_long_instruction_is_truncated_with_a_warning(predictor: TraceGenPredictor,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    rgb, depth = _inputs()
    with caplog.at_level(logging.WARNING, logger="tracegen_ros.predict"):
        predictor.predict(rgb, depth, K, "push the block left", steps=1)
        assert not caplog.records
        predictor.predict(rgb, depth, K, "push the block left and then push it left again", steps=1)
    assert any("truncated" in r.getMessage() and "6 tokens" in r.getMessage()
               for r in caplog.records)


def test_cli_writes_trace3d_npz_and_overlay(predictor: TraceGenPredictor, tmp_path: Path) -> None:
    ck = save_checkpoint(predictor.model, tmp_path / "ck")
    rgb, depth = _inputs()
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.savez(tmp_path / "d.npz", depth=(depth * 1000).astype(np.uint16))
    rc = main(["--checkpoint", str(ck), "--rgb", str(tmp_path / "rgb.png"),
               "--depth", str(tmp_path / "d.npz"), "--intrinsics", "60,60,31.5,23.5",
               "--instruction", "push the block", "--out", str(tmp_path / "o"), "--steps", "2"])
    assert rc == 0
    with np.load(tmp_path / "o" / "trace.npz") as z:
        assert int(z["num_keypoints"]) == 400 and int(z["length"]) == 32
        assert z["points"].shape == (400 * 32 * 3,) and z["valid"].shape == (400 * 32,)
        assert int(z["coordinates"]) == 0 and (int(z["image_width"]), int(z["image_height"])) == (W, H)
        assert np.array_equal(z["points"].reshape(400, 32, 3), z["traj"])
    overlay = cv2.imread(str(tmp_path / "o" / "overlay.png"))
    assert overlay is not None and overlay.shape == (H, W, 3)
    # a bad input is a clean exit code, not a traceback
    np.savez(tmp_path / "z.npz", depth=np.zeros((H, W), np.uint16))
    assert main(["--checkpoint", str(ck), "--rgb", str(tmp_path / "rgb.png"), "--depth",
                 str(tmp_path / "z.npz"), "--intrinsics", "60,60,31.5,23.5", "--instruction",
                 "push", "--out", str(tmp_path / "o2")]) == 2


def test_temperature_zero_is_deterministic(predictor: TraceGenPredictor) -> None:
    rgb, depth = _inputs()
    a = predictor.predict(rgb, depth, K, "push the block", steps=3, seed=1, temperature=0.0)
    b = predictor.predict(rgb, depth, K, "push the block", steps=3, seed=2, temperature=0.0)
    c = predictor.predict(rgb, depth, K, "push the block", steps=3, seed=2, temperature=1.0)
    assert np.array_equal(a, b) and not np.array_equal(b, c)


def test_shipped_fr3_checkpoint_loads_and_predicts(repo_root: Path) -> None:
    ck = repo_root / "tracegen_ros" / "checkpoints" / "fr3_small"
    if not (ck / "model.safetensors").is_file():
        pytest.skip(f"no shipped checkpoint at {ck}")
    pred = TraceGenPredictor.from_checkpoint(ck, device="cpu")
    assert pred.cfg.grid_size == 20 and pred.cfg.horizon == 32 and "ball" in pred.cfg.vocab
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    depth = np.full((256, 256), 1.2, np.float32)
    K256 = np.array([[274.5, 0, 127.5], [0, 274.5, 127.5], [0, 0, 1]])
    traj = pred.predict(rgb, depth, K256, "put the ball in the box", steps=5)
    assert traj.shape == (400, 32, 3) and np.isfinite(traj).all()
    assert np.allclose(traj[:, 0, :2], pred.grid_keypoints(256, 256), atol=13.0)
    assert np.allclose(traj[:, 0, 2], 1.2, atol=0.01)  # rescaled to the sensor depth


def test_export_half_precision_round_trip(predictor: TraceGenPredictor, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tracegen_ros.checkpoint import CheckpointError, export_checkpoint, load_checkpoint

    src = save_checkpoint(predictor.model, tmp_path / "src")
    dst = export_checkpoint(src, tmp_path / "dst", half=True, config_updates={"default_temperature": 0.3})
    tensors = load_file(str(dst / "model.safetensors"))
    assert tensors["decoder.in_proj.weight"].dtype == torch.float16
    assert tensors["inc_std"].dtype == torch.float32
    model, _ = load_checkpoint(dst)
    assert model.cfg.default_temperature == 0.3
    a = predictor.model.decoder.in_proj.weight.detach()
    assert torch.allclose(model.decoder.in_proj.weight, a, atol=1e-3)
    with pytest.raises(CheckpointError, match="architecture"):
        export_checkpoint(src, tmp_path / "bad", config_updates={"num_layers": 2})
