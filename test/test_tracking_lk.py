"""LK backend: accuracy on a known shift, forward-backward loss, leaving the image."""

from __future__ import annotations

import numpy as np

from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.frames import make_frame
from tracevla_ros.tracking.lk import LKBackend
from tracevla_ros.tracking.synthetic import noise_texture
from tracevla_ros.tracking.tracker import grid_points


def _texture(h: int = 200, w: int = 240) -> np.ndarray:
    return noise_texture(h, w, np.random.default_rng(5)).astype(np.uint8)


def test_dense_track_recovers_integer_shifts() -> None:
    tex = _texture()
    shifts = [(0, 0), (3, 2), (7, 5), (12, 7)]  # cumulative (dx, dy) px
    crop = [tex[40 - dy: 40 - dy + 120, 40 - dx: 40 - dx + 160] for dx, dy in shifts]
    frames = [make_frame(np.ascontiguousarray(c), float(i), False) for i, c in enumerate(crop)]
    backend = LKBackend(TrackerConfig())
    q = grid_points(160, 120, 8)
    q = q[(q[:, 0] > 20) & (q[:, 0] < 130) & (q[:, 1] > 20) & (q[:, 1] < 95)]
    tracks, visible = backend.track(frames, q)
    assert visible.all()
    for t, (dx, dy) in enumerate(shifts):
        err = np.linalg.norm(tracks[t] - (q + [dx, dy]), axis=1)
        assert np.median(err) < 0.1 and err.max() < 0.5, (t, err.max())
    # forward-only tracking + verify gives the same tracks and passes them all
    t2, v2 = backend.track(frames, q, fb_check=False)
    np.testing.assert_allclose(t2, tracks, atol=1e-3)
    assert backend.verify(frames, t2).all()


def test_unrelated_frame_loses_points() -> None:
    a = make_frame(_texture(), 0.0, False)
    b = make_frame(noise_texture(200, 240, np.random.default_rng(99)).astype(np.uint8), 1.0, False)
    backend = LKBackend(TrackerConfig())
    q = grid_points(240, 200, 10)
    new, ok = backend.track_step(a, b, q)
    assert ok.mean() < 0.2
    np.testing.assert_array_equal(new[~ok], q[~ok])  # lost points keep their position


def test_points_leaving_the_image_are_lost() -> None:
    tex = _texture()
    a = make_frame(np.ascontiguousarray(tex[:, 20:220]), 0.0, False)
    b = make_frame(np.ascontiguousarray(tex[:, 0:200]), 1.0, False)  # content moves +20 px
    q = np.array([[190.0, 100.0], [100.0, 100.0]], np.float32)
    new, ok = LKBackend(TrackerConfig()).track_step(a, b, q)
    assert not ok[0] and ok[1]
    assert abs(new[1, 0] - 120.0) < 0.2


def test_static_prefilter_keeps_only_changed_regions() -> None:
    tex = _texture()
    frames = []
    for i in range(4):
        img = tex[:120, :160].copy()
        img[40:80, 40:80] = tex[40:80, 40 + 2 * i: 80 + 2 * i]  # a patch slides inside
        frames.append(make_frame(img, float(i), False))
    q = grid_points(160, 120, 16)
    cand = LKBackend(TrackerConfig()).candidates(frames, q)
    inside = (q[:, 0] > 30) & (q[:, 0] < 90) & (q[:, 1] > 30) & (q[:, 1] < 90)
    assert cand[(q[:, 0] > 45) & (q[:, 0] < 75) & (q[:, 1] > 45) & (q[:, 1] < 75)].all()
    assert not cand[~inside].any()
    assert LKBackend(TrackerConfig(prefilter_gray=0.0)).candidates(frames, q).all()


def test_few_points_are_tracked_in_a_crop_with_the_same_result(monkeypatch: object) -> None:
    big = noise_texture(520, 700, np.random.default_rng(8)).astype(np.uint8)
    a = make_frame(np.ascontiguousarray(big[20:500, 30:670]), 0.0, False)  # 640 x 480
    b = make_frame(np.ascontiguousarray(big[14:494, 21:661]), 1.0, False)  # content moves (+9, +6)
    q = np.array([[300.0, 200.0], [320.5, 210.25], [310.0, 240.0], [290.0, 230.0], [305.0, 215.0]],
                 np.float32)
    backend = LKBackend(TrackerConfig())
    assert backend._crop(b, q) is not None  # 5 clustered points: a crop, not the frame
    cropped, ok_c = backend.track_step(a, b, q)
    monkeypatch.setattr(backend, "_crop", lambda frame, p0: None)  # type: ignore[attr-defined]
    full, ok_f = backend.track_step(a, b, q)
    assert ok_c.all() and ok_f.all()
    np.testing.assert_allclose(cropped, full, atol=0.02)
    np.testing.assert_allclose(cropped, q + [9.0, 6.0], atol=0.1)
