"""TraceGen model: config validation, shapes, the published sizes, encoders, transforms."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tracevla_ros.config import ConfigError  # noqa: E402

from tracegen_ros.model import EncoderUnavailableError, TraceGenConfig, TraceGenModel  # noqa: E402
from tracegen_ros.model.decoder import TraceDecoder, patchify, unpatchify  # noqa: E402
from tracegen_ros.model.encoders import WordTextEncoder, build_vocab  # noqa: E402
from tracegen_ros.transforms import (  # noqa: E402
    depth_ratio_rescale,
    grid_keypoints,
    increments_to_trace,
    trace_to_increments,
)

TINY = dict(image_size=32, d_model=32, num_heads=2, num_layers=1, conv_channels=(8, 16),
            rgb_encoder_dims=(16,), depth_encoder_dims=(16,), cond_dim=32, text_encoder_dim=16,
            vocab=("push", "the", "block", "left", "right"))


def test_config_validation_names_the_key() -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        TraceGenConfig(patch_size=3)
    with pytest.raises(ConfigError, match="patch_t"):
        TraceGenConfig(patch_t=5)
    with pytest.raises(ConfigError, match="rgb_encoder_dims"):
        TraceGenConfig(rgb_encoder_dims=(64,))  # conv gives conv_channels[-1] = 128
    with pytest.raises(ConfigError, match="attention"):
        TraceGenConfig(attention="full")
    with pytest.raises(ConfigError, match="unknown TraceGen preset"):
        TraceGenConfig.from_preset("huge")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['d_modle'\]"):
        TraceGenConfig.from_dict({"d_modle": 64})
    with pytest.raises(ConfigError, match="key 'num_layers' expects int, got str 'two'"):
        TraceGenConfig.from_dict({"num_layers": "two"})


def test_config_dict_round_trip() -> None:
    cfg = TraceGenConfig.from_preset("small", **TINY)
    assert TraceGenConfig.from_dict(cfg.to_dict()) == cfg
    pub = TraceGenConfig.from_preset("published")
    assert TraceGenConfig.from_dict(pub.to_dict()) == pub
    assert pub.tokens_per_step == 100 and pub.token_steps == 16 and pub.pretrained_encoders


def test_patchify_round_trip_and_layout() -> None:
    x = torch.arange(2 * 400 * 32 * 3, dtype=torch.float32).reshape(2, 400, 32, 3)
    p = patchify(x, 20, 2, 4)
    assert p.shape == (2, 8, 100, 2 * 2 * 4 * 3)
    # token (t=0, s=0) holds keypoints 0, 1, 20, 21 (a 2x2 grid patch), steps 0..3
    expect = x[0, [0, 1, 20, 21]][:, :4].reshape(-1)
    assert torch.equal(p[0, 0, 0], expect)
    assert torch.equal(unpatchify(p, 20, 2, 4, 3), x)


@pytest.mark.parametrize("attention", ["factorised", "joint"])
def test_small_model_forward_shapes(attention: str) -> None:
    cfg = TraceGenConfig.from_preset("small", attention=attention, **TINY)
    model = TraceGenModel(cfg)
    rgb, depth = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32) * 2
    cond = model.encode(rgb, depth, model.tokenize(["push the block left", "unknown words"]))
    assert cond.image.shape == (2, 64, 32)  # two stride-2 stages: 32 px -> 8 x 8 tokens
    tokens, mask = cond.tokens()
    assert tokens.shape[0] == 2 and mask.shape == tokens.shape[:2]
    x = torch.randn(2, 400, 32, 3)
    tau = torch.tensor([0.2, 0.7])
    v = model.velocity(x, tau, cond).detach()
    assert v.shape == x.shape
    # adaLN-Zero output head: an untrained decoder outputs zeros, i.e. X1_hat = 0 (the mean
    # increment) in the default 'data' parametrisation, whose velocity is then -x / (1 - tau)
    assert torch.allclose(v, -x / (1 - tau).view(2, 1, 1, 1))
    skip = TraceGenModel(TraceGenConfig.from_preset("small", attention=attention,
                                                    prediction="velocity", input_skip=True, **TINY))
    v2 = skip.velocity(x, tau, skip.encode(rgb, depth, skip.tokenize(["push", "push"]))).detach()
    assert torch.allclose(v2, -x)  # the input skip starts at -1: velocity -x, X1_hat = 0
    out = model.sample(cond, steps=3, guidance=2.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 400, 32, 3) and torch.isfinite(out).all()


def test_null_text_replaces_only_dropped_rows() -> None:
    model = TraceGenModel(TraceGenConfig.from_preset("small", **TINY))
    cond = model.encode(torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32),
                        model.tokenize(["push the block left", "push the block right"]))
    dropped = cond.without_text(torch.tensor([True, False]))
    assert torch.equal(dropped.text[1], cond.text[1])
    assert torch.equal(dropped.text[0, 0], model.null_text.detach())
    assert dropped.text_mask[0].tolist() == [True] + [False] * (cond.text.shape[1] - 1)


def _published_decoder_params(cfg: TraceGenConfig) -> int:
    d, h = cfg.d_model, cfg.d_model // cfg.num_heads
    hidden = int(d * cfg.mlp_ratio)
    attn = (d * d + d) + (2 * d * d + 2 * d) + (d * d + d) + 2 * 2 * h  # q, kv, out, qk-norm
    mlp = d * hidden + hidden + hidden * d + d
    block = attn + mlp + d * 12 * d + 12 * d
    patch = cfg.patch_size ** 2 * cfg.patch_t * 3
    head = (patch * d + d) + (cfg.cond_dim * d + d) + (256 * d + d) + (d * d + d) + (d * d + d)
    out = (d * 2 * d + 2 * d) + (d * patch + patch)
    return cfg.num_layers * block + head + out


def test_published_decoder_sizes_on_meta_device() -> None:
    cfg = TraceGenConfig.from_preset("published")
    with torch.device("meta"):
        dec = TraceDecoder(cfg)
        x = torch.empty(1, 400, 32, 3)
        cond = torch.empty(1, 576 + 64, cfg.cond_dim)
        v = dec(x, torch.empty(1), cond, torch.ones(1, 640, dtype=torch.bool))
    n = sum(p.numel() for p in dec.parameters())
    assert n == _published_decoder_params(cfg)
    assert 20e6 < n < 35e6  # a 4-layer, 512-wide transformer with 12-way adaLN
    assert v.shape == (1, 400, 32, 3)


def test_published_encoders_absent_is_a_clear_error(tmp_path) -> None:
    cfg = TraceGenConfig.from_preset("published", rgb_encoder_paths=(str(tmp_path / "none"), ""))
    with pytest.raises(EncoderUnavailableError, match="local checkpoint directory not found"):
        TraceGenModel(cfg)
    # a directory that exists but transformers is missing (or the weights are not there)
    (tmp_path / "dino").mkdir()
    cfg = TraceGenConfig.from_preset("published", rgb_encoder_paths=(str(tmp_path / "dino"), ""))
    with pytest.raises((EncoderUnavailableError, OSError, ValueError)):
        TraceGenModel(cfg)


def test_word_text_encoder_truncates_and_maps_unknown_words() -> None:
    vocab = build_vocab(["Push the block LEFT.", "push the block right"])
    assert vocab == ("block", "left", "push", "right", "the")
    enc = WordTextEncoder(vocab, 16, 1, max_tokens=3)
    tok = enc.tokenize(["push the block left", "fly", ""])
    assert tok.truncated == [True, False, False]
    assert tok.ids[0].tolist() == [2 + vocab.index(w) for w in ("push", "the", "block")]
    assert tok.ids[1].tolist() == [1, 0, 0]  # <unk>
    assert tok.mask[2].tolist() == [True, False, False]
    assert enc(tok.ids, tok.mask).shape == (3, 3, 16)


def test_trace_increments_round_trip_with_gaps() -> None:
    rng = np.random.default_rng(0)
    h, w = 48, 64
    kp = grid_keypoints(h, w, 20)
    traj = np.empty((400, 32, 3), np.float32)
    traj[:, :, :2] = kp[:, None] + np.cumsum(rng.normal(0, 0.5, (400, 32, 2)), axis=1)
    traj[:, 0, :2] = kp
    traj[:, :, 2] = 1.0 + np.cumsum(rng.normal(0, 0.01, (400, 32)), axis=1)
    valid = np.ones((400, 32), bool)
    valid[3, 10:12] = False  # interior gap: interpolated, counted
    valid[4, 20:] = False  # trailing: held, not counted
    traj_in = traj.copy()
    traj_in[~valid] = -np.inf
    inc, mask = trace_to_increments(traj_in, valid, kp, w, h)
    assert inc[:, 0, :2].max() == 0.0 and np.allclose(inc[:, 0, 2], traj[:, 0, 2])
    assert mask[3, 10:13].all() and not mask[4, 20:].any() and mask[4, :20].all()
    back = increments_to_trace(inc, kp, w, h)
    assert np.allclose(back[valid], traj[valid], atol=1e-4)  # valid steps exactly
    # the interior gap is rebuilt by linear interpolation between steps 9 and 12
    assert np.allclose(back[3, 10], traj[3, 9] + (traj[3, 12] - traj[3, 9]) / 3, atol=1e-4)


def test_depth_ratio_rescale_maps_to_sensor_depth() -> None:
    h, w = 60, 80
    kp = grid_keypoints(h, w, 20)
    traj = np.zeros((400, 32, 3), np.float32)
    traj[:, :, :2] = kp[:, None]
    traj[:, :, 2] = 0.5  # predicted depth: half the truth, constant
    traj[:, 16:, 2] = 0.4  # a motion towards the camera by 20 %
    sensor = np.full((h, w), 1.0, np.float32)
    sensor[:, :5] = 0.0  # a missing band: those keypoints take their neighbours' ratio
    out = depth_ratio_rescale(traj, sensor, sigma_px=6.0)
    assert np.allclose(out[:, 0, 2], 1.0, atol=1e-4)
    assert np.allclose(out[:, 20, 2], 0.8, atol=1e-4)
    assert np.array_equal(out[..., :2], traj[..., :2])


def test_depth_ratio_does_not_bleed_across_depth_edges() -> None:
    """A near object (0.6 m) on a far table (1.2 m), predicted 10 % too far everywhere:
    every keypoint comes back to its own sensor depth, edges included."""
    h, w = 80, 80
    kp = grid_keypoints(h, w, 20)
    sensor = np.full((h, w), 1.2, np.float32)
    sensor[20:50, 30:60] = 0.6
    truth = sensor[np.rint(kp[:, 1]).astype(int), np.rint(kp[:, 0]).astype(int)]
    traj = np.zeros((400, 32, 3), np.float32)
    traj[:, :, :2] = kp[:, None]
    traj[:, :, 2] = 1.1 * truth[:, None]
    out = depth_ratio_rescale(traj, sensor, sigma_px=8.0, sigma_m=0.05)
    assert np.allclose(out[:, 0, 2], truth, atol=1e-3)
    assert np.allclose(out[:, -1, 2], truth, atol=1e-3)


def test_spatial_softmax_finds_the_peak_and_reaches_the_decoder() -> None:
    from tracegen_ros.model.tracegen import spatial_softmax

    h, w = 4, 6
    fused = torch.full((1, h * w, 2), -50.0)
    fused[0, 1 * w + 5, 0] = 50.0  # channel 0 peaks at row 1, column 5 (the right edge)
    fused[0, 3 * w + 0, 1] = 50.0  # channel 1 at the bottom-left corner
    xy = spatial_softmax(fused, (h, w))  # (1, 4): x of both channels, then y of both
    np.testing.assert_allclose(xy[0].numpy(), [1.0, -1.0, -1.0 / 3.0, 1.0], atol=1e-5)

    cfg = TraceGenConfig.from_preset("small", **TINY)
    assert cfg.spatial_keypoints  # the small preset's default
    assert not TraceGenConfig.from_dict({k: v for k, v in cfg.to_dict().items()
                                         if k != "spatial_keypoints"}).spatial_keypoints
    model = TraceGenModel(cfg)
    cond = model.encode(torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32),
                        model.tokenize(["push the block left", "push the block right"]))
    assert cond.spatial is not None and cond.spatial.shape == (2, 2 * cfg.cond_dim)
    assert torch.equal(cond.without_text().spatial, cond.spatial)  # guidance drops text only
    assert cond.concat(cond).spatial.shape == (4, 2 * cfg.cond_dim)
    for lin in (model.decoder.out, model.decoder.ada_out[1]):  # adaLN-Zero: c is invisible at init
        lin.weight.data.normal_(std=0.1)
    x, tau = torch.zeros(2, cfg.num_keypoints, cfg.horizon, 3), torch.full((2,), 0.5)
    moved = type(cond)(**{**cond.__dict__, "spatial": cond.spatial + 0.5})
    assert not torch.allclose(model.velocity(x, tau, cond), model.velocity(x, tau, moved))


def test_increment_stats_over_moving_keypoints() -> None:
    from tracegen_ros.transforms import increment_stats

    rng = np.random.default_rng(0)
    inc = np.zeros((2, 10, 5, 3), np.float32)
    inc[:, :, 0] = 0.5  # step 0: start positions, statistics over the whole grid either way
    inc[:, 0, 1:, :2] = 0.05 + 0.01 * rng.standard_normal((2, 4, 2))  # one keypoint moves
    mask = np.ones((2, 10, 5), bool)
    m_all, s_all = increment_stats([inc[0], inc[1]], [mask[0], mask[1]])
    m_mov, s_mov = increment_stats([inc[0], inc[1]], [mask[0], mask[1]], moving_min=0.1)
    np.testing.assert_allclose(m_mov[0], m_all[0])
    mover = inc[:, 0, 1:, :2].reshape(-1, 2)
    np.testing.assert_allclose(m_mov[1, :2], mover.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s_mov[1, :2], mover.std(0), rtol=1e-4)
    assert (m_all[1, :2] < m_mov[1, :2]).all()  # the static 90 % no longer dilute the mean
    # nothing moves that far: the whole grid's statistics
    np.testing.assert_allclose(increment_stats([inc[0]], [mask[0]], moving_min=10.0)[1],
                               increment_stats([inc[0]], [mask[0]])[1])
