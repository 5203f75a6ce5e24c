"""Issue 15 (3-5): segmentation auto-annotation, prompt sampling, the distractor task, the
small PixelVLA (both decoders, with/without prompt), chunk execution, backend, trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
torch = pytest.importorskip("torch")

from tracevla_ros.control.chunking import ChunkConfig, ChunkExecutor  # noqa: E402
from tracevla_ros.policy.base import Observation  # noqa: E402
from tracevla_ros.policy.prompt import PromptError  # noqa: E402
from tracevla_ros.policy.prompt_sampling import mask_box, sample_prompt  # noqa: E402
from tracevla_ros.sim.dataset import pack_mask, unpack_masks  # noqa: E402
from tracevla_ros.sim.env import SimEnv  # noqa: E402
from tracevla_ros.sim.experts import run_expert_episode  # noqa: E402


def _project(env: SimEnv, p: np.ndarray) -> tuple[float, float]:
    t, r = env.camera_pose()
    x, y, z = r.T @ (p - t)
    k = env.camera_info()
    return k.fx * x / z + k.cx, k.fy * y / z + k.cy


def test_target_mask_is_where_the_object_projects() -> None:
    with SimEnv("widowx", "lift_cube", seed=3) as env:
        target, gripper = env.masks()
        assert target.shape == gripper.shape == (256, 256) and target.dtype == bool
        assert 50 < target.sum() < 2000 and gripper.sum() > 200
        assert not np.any(target & gripper)
        u, v = _project(env, env.object_pose("cube").pos)
        rows, cols = np.nonzero(target)
        assert target[int(round(v)), int(round(u))]
        assert abs(cols.mean() - u) < 5 and abs(rows.mean() - v) < 5
        # the gripper mask covers the projected fingertip site region
        gu, gv = _project(env, env.ee_pose()[0])
        grows, gcols = np.nonzero(gripper)
        assert np.min(np.hypot(gcols - gu, grows - gv)) < 8


def test_mask_pack_roundtrip() -> None:
    m = np.random.default_rng(0).random((256, 256)) < 0.3
    assert np.array_equal(unpack_masks(np.stack([pack_mask(m)] * 2), 256, 256)[1], m)


def _blob() -> np.ndarray:
    m = np.zeros((64, 80), bool)
    m[10:30, 20:50] = True  # a rectangle
    m[30:40, 20:28] = True  # and a leg: an L, not convex
    return m


@pytest.mark.parametrize("seed", range(5))
def test_prompt_sampler(seed: int) -> None:
    m = _blob()
    rng = np.random.default_rng(seed)
    h, w = m.shape
    p = sample_prompt(m, "point", rng)
    assert p is not None and p.kinds() == ("point",) and 1 <= len(p.points) <= 3
    for x, y in p.pixel_points():
        assert m[int(round(y)), int(round(x))]
    box = sample_prompt(m, "box", rng)
    assert box is not None
    assert np.allclose(box.pixel_boxes()[0], mask_box(m)) and mask_box(m) == (20, 10, 49, 39)
    line = sample_prompt(m, "line", rng)
    assert line is not None
    x0, y0, x1, y1 = line.pixel_lines()[0]
    for t in np.linspace(0, 1, 50):
        assert m[int(round(y0 + t * (y1 - y0))), int(round(x0 + t * (x1 - x0)))]
    mk = sample_prompt(m, "mask", rng)
    assert mk is not None and np.array_equal(mk.mask, m) and mk.image_size == (w, h)
    assert sample_prompt(np.zeros_like(m), "point", rng) is None
    with pytest.raises(PromptError, match="kind"):
        sample_prompt(m, "scribble", rng)


def _lift(env: SimEnv, name: str, z: float) -> None:
    bid = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, name)
    adr = env.model.jnt_qposadr[env.model.body_jntadr[bid]]
    env.data.qpos[adr + 2] = z
    mujoco.mj_forward(env.model, env.data)


def test_distractor_task_success_only_for_the_target() -> None:
    with SimEnv("widowx", "lift_target_cube", seed=0) as env:
        assert env.instruction == "pick up the cube"
        targets = set()
        for seed in range(8):
            env.reset(seed)
            targets.add(env.task.target)
            other = "cube_b" if env.task.target == "cube" else "cube"
            assert not env.success()
            _lift(env, other, 0.12)
            assert not env.success()  # the wrong cube
            _lift(env, other, 0.0155)
            _lift(env, env.task.target, 0.12)
            assert env.success()
            # the prompt's mask is the target's, not the twin's
            env.reset(seed)
            target, _ = env.masks()
            u, v = _project(env, env.object_pose(env.task.target).pos)
            assert target[int(round(v)), int(round(u))]
            u2, v2 = _project(env, env.object_pose(other).pos)
            assert not target[int(round(v2)), int(round(u2))]
        assert targets == {"cube", "cube_b"}  # which cube is random per seed
        ok, _ = run_expert_episode(env, 5)
        assert ok


def test_chunk_executor_first_k_and_ensemble() -> None:
    chunk = np.arange(8 * 2, dtype=float).reshape(8, 2)
    ex = ChunkExecutor(ChunkConfig("first_k", k=3))
    assert ex.needs_chunk()
    ex.add(chunk)
    got = [ex.next_action() for _ in range(3)]
    assert np.allclose(got, chunk[:3]) and ex.needs_chunk()
    ex = ChunkExecutor(ChunkConfig("ensemble", ensemble_m=0.5))
    ex.add(np.zeros((4, 2)))
    assert np.allclose(ex.next_action(), 0.0)
    ex.add(np.ones((4, 2)))  # step 1: the old chunk's [1] = 0, the new one's [0] = 1
    preds, w = ex.weights()
    assert np.allclose(preds, [[0, 0], [1, 1]])
    assert np.allclose(w, np.array([1.0, np.exp(-0.5)]) / (1 + np.exp(-0.5)))
    assert np.allclose(ex.next_action(), w[1])
    for _ in range(3):  # the first chunk (4 steps) expires; only the second remains at step 4
        ex.add(np.full((4, 2), 2.0))
        ex.next_action()
    preds, _ = ex.weights()
    assert len(preds) == 3  # chunks planned at steps 2, 3 and 4 would cover step 5
    with pytest.raises(ValueError):
        ChunkConfig("ensemble", ensemble_m=float("nan"))


def _collect(tmp: Path) -> Path:
    from tracevla_ros.tools.collect import main as collect

    out = tmp / "data"
    assert collect(["--robot", "widowx", "--task", "lift_target_cube", "--episodes", "2",
                    "--masks", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from tracevla_ros.tools.train_pixelvla_small import main as train

    tmp = tmp_path_factory.mktemp("px")
    data = _collect(tmp)
    cks = []
    for dec in ("continuous", "discrete"):
        ck = tmp / dec
        assert train(["--data", str(data), "--out", str(ck), "--decoder", dec, "--max-steps", "3",
                      "--batch-size", "8", "--threads", "1", "--quiet"]) == 0
        cks.append(ck)
    return data, cks[0], cks[1]


def test_collect_records_masks(mini: tuple[Path, Path, Path]) -> None:
    from tracevla_ros.sim.dataset import list_episodes, load_episode

    ep = load_episode(list_episodes(mini[0])[0])
    assert ep.target_mask is not None and ep.gripper_mask is not None
    assert ep.target_mask.shape == (len(ep), 256, 256) and ep.target_mask[0].sum() > 50
    assert json.loads((ep.path / "meta.json").read_text())["target"] in ("cube", "cube_b")


def test_model_shapes_and_losses() -> None:
    from tracevla_ros.policy.pixelvla_small.model import PixelModelConfig, PixelVLANet
    from tracevla_ros.policy.pixelvla_small.train import pixel_loss

    torch.manual_seed(0)
    b, s = 3, 32
    images = torch.randint(0, 255, (b, s, s, 3), dtype=torch.uint8)
    words = torch.tensor([[2, 3, 0, 0]] * b)
    proprio = torch.zeros(b, 8)
    empty = torch.zeros(b, s, s, dtype=torch.uint8)
    marked = empty.clone()
    marked[:, 10:16, 10:16] = 255
    for dec, shape in (("continuous", (b, 8, 7)), ("discrete", (b, 8, 7, 256))):
        net = PixelVLANet(PixelModelConfig(image_size=s, width=32, depth=1, max_words=4,
                                           decoder=dec))
        out = net(images, empty, words, proprio)
        assert out.shape == shape
        assert not torch.allclose(out, net(images, marked, words, proprio))  # the prompt matters
        labels = (torch.zeros(b, 8, 7) if dec == "continuous"
                  else torch.full((b, 8, 7), 128, dtype=torch.long))
        loss = pixel_loss(out, labels, dec, 1.5)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert net.encoder[0][0].weight.grad is not None
    assert out.shape[-1] == 256
    cont = PixelVLANet(PixelModelConfig(image_size=s, width=32, depth=1, max_words=4))
    assert cont(images, empty, words, proprio).abs().max() <= 1.0  # tanh: normalised actions


def test_backend_returns_a_chunk(mini: tuple[Path, Path, Path]) -> None:
    from tracevla_ros.policy.config import PolicyNodeConfig
    from tracevla_ros.policy.registry import make_policy

    with SimEnv("widowx", "lift_target_cube", seed=1) as env:
        image = env.render()
        target, _ = env.masks()
        prop = env.joint_state().position.astype(np.float32)
    for ck in mini[1:]:
        policy = make_policy(PolicyNodeConfig(backend="pixelvla", checkpoint=str(ck), device="cpu"))
        for prompt in (sample_prompt(target, "point", np.random.default_rng(0)), None):
            chunk = policy.infer(Observation(image, None, "pick up the cube", prop, prompt=prompt))
            assert chunk.values.shape == (8, 7) and chunk.values.dtype == np.float32
            assert np.all((chunk.values[:, 6] >= 0) & (chunk.values[:, 6] <= 1))
    info = json.loads((mini[1] / "config.json").read_text())
    assert info["pixel"]["decoder"] == "continuous" and info["training"]["history"][-1]["step"] == 3
    assert info["training"]["episode_seeds"]["lift_target_cube"] == [0, 1]


def test_bench_runs_prompt_and_noprompt(mini: tuple[Path, Path, Path]) -> None:
    from tracevla_ros.bench.policy import main

    out = main(["--backend", "pixelvla", "--checkpoint", str(mini[1]), "--episodes", "1",
                "--tasks", "lift_target_cube", "--exec", "first_k", "--k", "4"])
    assert set(out["checkpoints"]) == {"prompt", "noprompt"}
    for name in ("prompt", "noprompt"):
        c = out["checkpoints"][name]
        assert c["execution"] == "first_4" and c["chunk"] == 8
        t = c["tasks"]["lift_target_cube"]
        assert t["episodes"] == 1 and not t["errors"] and 1 <= t["mean_length"] <= 40
        # one inference per 4 executed steps
        assert c["latency_ms"]["policy_infer"]["n"] == -(-int(t["mean_length"]) // 4)
    assert "overall" in out["prompt_minus_noprompt"]


def test_bench_affordance_prompt_comes_from_the_affordance_model(
        mini: tuple[Path, Path, Path]) -> None:
    """--prompt affordance: the affordance model answers once per episode (on its first
    frame) and its best points are the prompt; the run sits beside the ground truth and none."""
    from tracevla_ros.bench.policy import main

    out = main(["--backend", "pixelvla", "--checkpoint", str(mini[1]), "--episodes", "2",
                "--tasks", "lift_cube", "--prompt", "affordance", "--prompt-kind", "point",
                "--affordance-points", "2", "--k", "8"])
    assert set(out["checkpoints"]) == {"affordance", "prompt", "noprompt"}
    aff = out["checkpoints"]["affordance"]
    assert aff["prompt"] == "affordance" and out["checkpoints"]["prompt"]["prompt"] == "point"
    assert aff["affordance_no_answer_episodes"] == 0  # the shipped model always answers
    assert 0.0 <= aff["affordance_points_on_target"] <= 1.0
    assert set(out["affordance_minus_noprompt"]) == {"lift_cube"}
    assert not aff["tasks"]["lift_cube"]["errors"]


def test_bench_through_the_controller_core(mini: tuple[Path, Path, Path]) -> None:
    """--controller: the steps go through widowx_controller_node's core with the YAML's
    chunk execution (ACT ensembling) and trajectory_time_s (0.1 s): a query every step."""
    from tracevla_ros.bench.policy import main

    out = main(["--backend", "pixelvla", "--checkpoint", str(mini[1]), "--episodes", "1",
                "--tasks", "lift_cube", "--prompt", "gt", "--prompt-kind", "box", "--controller"])
    c = out["checkpoints"]["prompt"]
    assert c["execution"] == "controller ensemble_m0.1, trajectory 0.1 s"
    t = c["tasks"]["lift_cube"]
    assert not t["errors"] and 1 <= t["mean_length"] <= 40
    assert c["latency_ms"]["policy_infer"]["n"] == int(t["mean_length"])


def test_bench_through_the_controller_core_first_k(mini: tuple[Path, Path, Path],
                                                    tmp_path: Path, repo_root: Path) -> None:
    """--controller with chunk_execution first_k in --params: one query per 8 executed steps."""
    from tracevla_ros.bench.policy import main

    params = tmp_path / "widowx.yaml"
    params.write_text((repo_root / "config" / "widowx.yaml").read_text().replace(
        "    chunk_execution: ensemble ", "    chunk_execution: first_k "))
    out = main(["--backend", "pixelvla", "--checkpoint", str(mini[1]), "--episodes", "1",
                "--tasks", "lift_cube", "--prompt", "gt", "--prompt-kind", "box", "--controller",
                "--params", str(params)])
    c = out["checkpoints"]["prompt"]
    assert c["execution"] == "controller first_8, trajectory 0.1 s"
    t = c["tasks"]["lift_cube"]
    assert not t["errors"] and 1 <= t["mean_length"] <= 40
    assert c["latency_ms"]["policy_infer"]["n"] == -(-int(t["mean_length"]) // 8)


def test_trainer_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tracevla_ros.tools.train_pixelvla_small import main as train

    (tmp_path / "d").mkdir()
    base = ["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")]
    for extra, phrase in ((["--prompt-dropout", "2"], "--prompt-dropout"),
                          (["--decoder", "bins"], "--decoder"),
                          (["--image-size", "40"], "multiple of 16"),
                          (["--lr", "nan"], "--lr")):
        assert train(base + extra) == 2
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err


def test_prompt_token_geometry() -> None:
    from tracevla_ros.policy.pixelvla_small.model import prompt_features
    from tracevla_ros.policy.pixelvla_small.transforms import PixelConfig, rasterize_prompt

    m = np.zeros((90, 90), bool)
    m[20:41, 50:71] = True
    raster = rasterize_prompt(sample_prompt(m, "box", np.random.default_rng(0)), 9, PixelConfig(line_px=1))
    assert raster[2, 5] == 255 and raster[0, 0] == 0
    f = prompt_features(torch.from_numpy(np.stack([raster, np.zeros_like(raster)])))
    g = np.linspace(-1, 1, 9)
    present, cx, cy, x0, y0, x1, y1 = f[0, :7].tolist()
    assert present == 1 and x0 == pytest.approx(g[5]) and x1 == pytest.approx(g[7])
    assert y0 == pytest.approx(g[2]) and y1 == pytest.approx(g[4]) and x0 < cx < x1
    assert torch.all(f[1] == 0)  # no prompt: all zeros


def test_shipped_checkpoint_loads_and_acts() -> None:
    from tracevla_ros.policy.pixelvla_small.backend import PixelVLAPolicy

    policy = PixelVLAPolicy("", device="cpu")  # tracevla_ros/policy/checkpoints/widowx_pixelvla
    assert policy.pixel.chunk == 8 and policy.pixel.decoder == "continuous"
    with SimEnv("widowx", "lift_target_cube", seed=100000) as env:
        target, _ = env.masks()
        obs = Observation(env.render(), None, env.instruction,
                          env.joint_state().position.astype(np.float32),
                          prompt=sample_prompt(target, "mask", np.random.default_rng(0)))
    assert policy.infer(obs).values.shape == (8, 7)
    seeds = policy.checkpoint.training["episode_seeds"]
    assert set(seeds) == {"lift_cube", "lift_target_cube", "push_block_right",
                          "put_carrot_on_plate"} and max(max(v) for v in seeds.values()) < 100000
