"""tracegen-train on a tiny generated dataset: loss falls, resume, checkpoint round trip/errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from tracevla_ros.config import ConfigError  # noqa: E402

from tracegen_ros.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from tracegen_ros.synthetic import write_dataset  # noqa: E402
from tracegen_ros.train import TrainOptions, train  # noqa: E402

TINY_SET = ("image_size=32", "d_model=32", "num_heads=2", "num_layers=1", "conv_channels=[8,16]",
            "rgb_encoder_dims=[16]", "depth_encoder_dims=[16]", "cond_dim=32",
            "text_encoder_dim=16", "patch_size=4")
STEPS = 80


def _opts(data: Path, out: Path, steps: int, **kw: object) -> TrainOptions:
    base = dict(data=[data], out=out, overrides=TINY_SET, steps=steps, batch_size=8, lr=3e-3,
                warmup=5, save_every=40, log_every=10, progress=False, threads=1)
    base.update(kw)
    return TrainOptions(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("tg")
    data = write_dataset(root / "data", episodes=8, frames_per_episode=3, size=48)
    out = root / "ckpt"
    summary = train(_opts(data, out, STEPS))
    return data, out, summary


def _losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(int(r["step"]), float(r["loss"])) for r in rows]


def test_loss_falls_and_outputs_are_written(trained: tuple[Path, Path, dict]) -> None:
    _, out, summary = trained
    losses = [v for _, v in _losses(out)]
    assert len(losses) == STEPS // 10
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    assert last < 0.9 * first, losses
    for name in ("model.safetensors", "config.json", "loss.png", "train_state.safetensors",
                 "metrics.jsonl"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["heldout_episodes"] == ["episode_000006", "episode_000007"]
    assert summary["train_samples"] == 18 and summary["heldout_samples"] == 6


def test_resume_continues_from_the_saved_step(trained: tuple[Path, Path, dict], tmp_path: Path) -> None:
    data, out, _ = trained
    out2 = tmp_path / "resumed"
    shutil.copytree(out, out2)
    with (out2 / "metrics.jsonl").open("a") as f:  # a row logged after the last save, then stopped
        f.write(json.dumps({"step": STEPS + 5, "loss": 9.9}) + "\n")
    summary = train(_opts(data, out2, STEPS + 20))
    assert [s for s, _ in _losses(out2)].count(STEPS + 5) == 0  # dropped on resume
    assert summary["start_step"] == STEPS
    assert [s for s, _ in _losses(out2)][-2:] == [STEPS + 10, STEPS + 20]
    assert summary["step"] == STEPS + 20
    with pytest.raises(ConfigError, match="another config"):
        train(_opts(data, out2, STEPS + 30, overrides=TINY_SET + ("d_model=64",)))


def test_checkpoint_round_trip(trained: tuple[Path, Path, dict]) -> None:
    _, out, _ = trained
    model, meta = load_checkpoint(out)
    saved = load_file(str(out / "model.safetensors"))
    state = model.own_state_dict()
    assert set(saved) == set(state)
    assert all(torch.equal(saved[k], state[k]) for k in saved)
    assert meta["step"] == STEPS
    assert float(model.inc_std.min()) > 0  # normalisation statistics travel with the weights
    # the same weights give the same velocities
    model2, _ = load_checkpoint(out / "model.safetensors")
    rgb, depth = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    x, tau = torch.randn(1, 400, 32, 3), torch.tensor([0.3])
    with torch.no_grad():
        v1 = model.velocity(x, tau, model.encode(rgb, depth, model.tokenize(["push the block up"])))
        v2 = model2.velocity(x, tau, model2.encode(rgb, depth, model2.tokenize(["push the block up"])))
    assert torch.equal(v1, v2)


def _edit_config(src: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(src, dst)
    body = json.loads((dst / "config.json").read_text())
    for k, v in changes.items():
        if k == "format":
            body["format"] = v
        else:
            body["config"][k] = v
    (dst / "config.json").write_text(json.dumps(body))
    return dst


def test_config_that_does_not_match_the_weights_is_refused(trained: tuple[Path, Path, dict],
                                                            tmp_path: Path) -> None:
    _, out, _ = trained
    with pytest.raises(CheckpointError, match=r"does not match.*wrong shape \[decoder"):
        load_checkpoint(_edit_config(out, tmp_path / "a", d_model=64, num_heads=2))
    with pytest.raises(CheckpointError, match=r"does not match.*missing \[.*decoder\.blocks\.1"):
        load_checkpoint(_edit_config(out, tmp_path / "b", num_layers=2))
    with pytest.raises(CheckpointError, match=r"config.json: config: unknown key.*new_field"):
        load_checkpoint(_edit_config(out, tmp_path / "c", new_field=1))
    with pytest.raises(CheckpointError, match=r"config.json: config: key 'num_layers' expects "
                                              r"int, got str 'two'"):
        load_checkpoint(_edit_config(out, tmp_path / "f", num_layers="two"))
    dst = _edit_config(out, tmp_path / "e")
    body = json.loads((dst / "config.json").read_text())
    del body["config"]["prediction"]
    (dst / "config.json").write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['prediction'\]"):
        load_checkpoint(dst)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(_edit_config(out, tmp_path / "d", format="other/v9"))
    with pytest.raises(CheckpointError, match="version 9, this code reads version 1"):
        load_checkpoint(_edit_config(out, tmp_path / "g", format="tracegen_ros/checkpoint/v9"))


def test_nan_statistics_are_refused(trained: tuple[Path, Path, dict], tmp_path: Path) -> None:
    """Issue 18: NaN in the stored normalisation statistics made every step fail later."""
    from safetensors.torch import save_file

    _, out, _ = trained
    dst = tmp_path / "nan"
    shutil.copytree(out, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    tensors["inc_std"][0, 1] = float("nan")
    save_file(tensors, str(dst / "model.safetensors"))
    with pytest.raises(CheckpointError, match="'inc_std' holds 1 NaN/inf"):
        load_checkpoint(dst)


def test_pickle_and_missing_checkpoints_are_refused(tmp_path: Path) -> None:
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, pt)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(pt)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"missing \['config.json', 'model.safetensors'\]"):
        load_checkpoint(tmp_path / "empty")


def test_evaluation_scores_an_oracle_at_zero(trained: tuple[Path, Path, dict]) -> None:
    from tracegen_ros.data import list_samples, load_sample
    from tracegen_ros.evaluate import evaluate_samples, no_motion_trace

    data, _, _ = trained
    paths = list_samples(data, split="val")

    class Oracle:
        def __init__(self, still: bool) -> None:
            self.still = still

        def predict(self, rgb, depth_m, K, instruction, steps=100, guidance=None, seed=0):  # type: ignore[no-untyped-def]
            s = next(load_sample(p) for p in paths if np.array_equal(load_sample(p).rgb, rgb))
            return no_motion_trace(s.traj) if self.still else s.traj

    exact = evaluate_samples(Oracle(False), paths, steps=1)
    assert exact["samples"] == 6 and exact["model"]["all"]["epe_px"] == 0.0  # type: ignore[index]
    assert exact["model"]["moving"]["epe_m"] == 0.0  # type: ignore[index]
    # the synthetic block moves 12 px; the no-motion baseline misses it by exactly that
    assert exact["no_motion"]["moving"]["epe_px"] == pytest.approx(12.0, abs=1e-3)  # type: ignore[index]
    still = evaluate_samples(Oracle(True), paths, steps=1)
    for part in ("all", "moving"):
        assert still["model"][part] == still["no_motion"][part]  # type: ignore[index]
    assert still["model"]["gripper"]["samples"] == 0  # synthetic data has no end effector  # type: ignore[index]


def test_bench_reports_timing_size_and_accuracy(trained: tuple[Path, Path, dict]) -> None:
    from tracegen_ros.bench.tracegen import main as bench  # tracevla-bench tracegen (entry point)

    data, out, _ = trained
    res = bench(["--checkpoint", str(out), "--data", str(data), "--steps", "2,3", "--repeats", "1",
                 "--eval-steps", "2", "--max-samples", "3", "--threads", "1"])
    assert set(res["prediction_time"]) == {"2", "3"}
    assert res["parameters"]["total"] > 0 and res["published_decoder_parameters"] > 20e6
    assert res["accuracy"]["samples"] == 3
    assert np.isfinite(res["accuracy"]["model"]["all"]["epe_px"])


def test_keypoint_weights_favour_moving_and_gripper_keypoints() -> None:
    from types import SimpleNamespace

    from tracegen_ros.train import keypoint_weights

    traj = np.zeros((4, 5, 3), np.float32)
    traj[:, :, 2] = 1.0
    traj[:, :, 0] = [[10], [60], [110], [160]]  # four static keypoints on a row ...
    traj[1, :, 1] = np.linspace(0, 10, 5)  # ... the second moves 10 px, the third 40 px
    traj[2, :, 1] = np.linspace(0, 40, 5)
    valid = np.ones((4, 5), bool)
    valid[3, 0] = False  # unknown at step 0: never "on the gripper"
    ee = np.array([[112.0, 0.0, 1.02]] * 5, np.float32)  # the end effector starts at keypoint 2
    smp = SimpleNamespace(traj=traj, valid_steps=valid, ee_uvz=ee)
    np.testing.assert_allclose(keypoint_weights(smp, 0.0, 0.0), [1, 1, 1, 1])
    np.testing.assert_allclose(keypoint_weights(smp, 4.0, 0.0), [1, 3, 5, 1])  # full weight at 20 px
    np.testing.assert_allclose(keypoint_weights(smp, 4.0, 10.0), [1, 3, 15, 1])
    smp.ee_uvz = None  # real videos: no end effector known, only the motion weight
    np.testing.assert_allclose(keypoint_weights(smp, 0.0, 10.0), [1, 1, 1, 1])


def test_data_space_loss_with_weights_trains(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", episodes=4, frames_per_episode=2, size=48)
    summary = train(_opts(data, tmp_path / "d", 20, loss="data", moving_weight=4.0, save_every=20))
    assert np.isfinite(summary["val_loss"])
    meta = json.loads((tmp_path / "d" / "config.json").read_text())["meta"]
    assert (meta["loss"], meta["moving_weight"]) == ("data", 4.0)
    with pytest.raises(ConfigError, match="prediction = 'data'"):
        train(_opts(data, tmp_path / "v", 2, loss="data", overrides=TINY_SET + ("prediction=velocity",)))
    with pytest.raises(ConfigError, match="--loss"):
        train(_opts(data, tmp_path / "w", 2, loss="huber"))
    with pytest.raises(ConfigError, match="--stats-moving-min"):
        train(_opts(data, tmp_path / "s", 2, stats_moving_min=-0.1))


def test_fill_gripper_tracks_continues_lost_steps_with_the_end_effector() -> None:
    from types import SimpleNamespace

    from tracegen_ros.train import fill_gripper_tracks

    traj = np.zeros((2, 5, 3), np.float32)
    traj[:, :, 2] = 1.0
    traj[0, :, 0] = 100.0 + np.arange(5) * 3.0  # on the gripper, tracked for 3 steps
    traj[1, :, 0] = 10.0  # background, lost at the end too
    valid = np.ones((2, 5), bool)
    valid[:, 3:] = False
    ee = np.zeros((5, 3), np.float32)
    ee[:, 0] = 101.0 + np.arange(5) * 4.0  # the hand moves 4 px per step, and down 1 cm
    ee[:, 2] = 1.0 - 0.01 * np.arange(5)
    smp = SimpleNamespace(traj=traj, valid_steps=valid, ee_uvz=ee)
    filled, fvalid = fill_gripper_tracks(smp)
    assert fvalid[0].all() and not fvalid[1, 3:].any()  # only the gripper keypoint is filled
    np.testing.assert_allclose(filled[0, :3], traj[0, :3])  # tracked steps untouched
    np.testing.assert_allclose(filled[0, 3:, 0], [106.0 + 4.0, 106.0 + 8.0])
    np.testing.assert_allclose(filled[0, 3:, 2], [0.99, 0.98], atol=1e-6)
    assert valid[0, 3:].sum() == 0  # the sample itself is not modified
    smp.ee_uvz = None  # real videos: nothing to fill from
    assert fill_gripper_tracks(smp)[1] is valid
