"""CoTracker3 backend: clear errors without weights; the online window/lag bookkeeping
and mixed dense/sparse backends without the cotracker package; the incremental online
path with randomly initialised weights when the package is installed.

Set TRACEVLA_COTRACKER_CKPT to a local CoTracker3 online checkpoint
(scaled_online.pth) to run the released-weights contract test; it is never downloaded.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pytest

from tracevla_ros.config import ConfigError
from tracevla_ros.tracking.backend import make_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.cotracker import CheckpointMissingError, OnlineWindowPlan
from tracevla_ros.tracking.frames import Frame
from tracevla_ros.tracking.lk import LKBackend
from tracevla_ros.tracking.synthetic import SyntheticScene
from tracevla_ros.tracking.tracker import IncrementalTracker


def test_missing_checkpoint_error_names_the_path(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "nope", "scaled_online.pth")
    with pytest.raises(CheckpointMissingError, match="nope/scaled_online.pth"):
        make_backend(TrackerConfig(backend="cotracker3", cotracker_checkpoint=path))
    with pytest.raises(CheckpointMissingError, match="nope/scaled_online.pth"):
        IncrementalTracker(TrackerConfig(dense_backend="cotracker3", cotracker_checkpoint=path))


# ------------------------------------------------ window / lag bookkeeping (no torch)
def test_plan_runs_one_window_every_step_frames_after_the_first_full_window() -> None:
    plan = OnlineWindowPlan(16)
    assert plan.step == 8
    due = []
    for i in range(40):
        plan.feed()
        if plan.full_window_due():
            due.append((plan.fed, plan.window()))
            plan.commit()
        assert not plan.full_window_due()
    # windows [0,16), [8,24), [16,32), [24,40): upstream's online_demo cadence
    assert due == [(16, (0, 16)), (24, (8, 24)), (32, (16, 32)), (40, (24, 40))]
    assert plan.final == 32 and plan.processed == 40
    assert plan.pending_final() == 8 and plan.lag_frames() == 0


def test_plan_lag_in_hold_and_provisional_modes() -> None:
    plan = OnlineWindowPlan(8)
    lags = []
    for _ in range(20):
        plan.feed()
        if plan.full_window_due():
            plan.commit()
        lags.append(plan.lag_frames())
    # hold: newest estimate is 1..3 frames old between windows, 0 right after one
    assert lags == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0]
    assert max(lags[8:]) == OnlineWindowPlan.lag_bounds(8, "hold")["newest_stale"][1]
    # provisional: the partial window [ind, fed) runs uncommitted
    plan.feed()
    assert not plan.full_window_due() and plan.window() == (plan.ind, plan.fed)
    assert plan.window()[1] - plan.window()[0] >= plan.step  # upstream needs >= step frames
    ind = plan.ind
    plan.provisional()
    assert plan.lag_frames() == 0 and plan.ind == ind  # state not advanced
    with pytest.raises(RuntimeError):
        plan.commit()
    assert OnlineWindowPlan.lag_bounds(16, "provisional") == {
        "final_after": (8, 15), "newest_stale": (0, 0)}
    with pytest.raises(ValueError):
        OnlineWindowPlan(7)


def test_config_dense_and_sparse_default_to_backend() -> None:
    cfg = TrackerConfig(backend="lk")
    assert cfg.dense_backend == "" and cfg.dense_backend_name == "lk"
    assert cfg.sparse_backend_name == "lk"
    mixed = TrackerConfig(dense_backend="cotracker3", sparse_backend="lk")
    assert (mixed.dense_backend_name, mixed.sparse_backend_name) == ("cotracker3", "lk")
    assert TrackerConfig(backend="cotracker3").replace(backend="lk").dense_backend_name == "lk"
    for bad in ({"dense_backend": "raft"}, {"sparse_backend": "x"},
                {"cotracker_window_len": 7}, {"cotracker_lag": "late"}):
        with pytest.raises(ConfigError):
            TrackerConfig(**bad)  # type: ignore[arg-type]


class _Recording(LKBackend):
    """LK that records which calls it got (stands in for a second backend)."""

    def __init__(self, cfg: TrackerConfig, name: str) -> None:
        super().__init__(cfg)
        self.name = name
        self.calls: dict[str, int] = {"track": 0, "track_step": 0, "keep": 0}
        self.kept: list[np.ndarray] = []

    def track(self, frames: Sequence[Frame], queries: np.ndarray,
              fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        self.calls["track"] += 1
        self._in_track = True  # LK's track() steps frame to frame itself
        try:
            return super().track(frames, queries, fb_check)
        finally:
            self._in_track = False

    def track_step(self, prev: Frame, frame: Frame, points: np.ndarray,
                   fb_check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        if not getattr(self, "_in_track", False):
            self.calls["track_step"] += 1
        return super().track_step(prev, frame, points, fb_check)

    def keep(self, frames: Sequence[Frame], tracks: np.ndarray, visible: np.ndarray) -> None:
        self.calls["keep"] += 1
        self.kept.append(np.asarray(tracks).copy())


def test_mixed_backends_dense_pass_on_one_sparse_steps_on_the_other() -> None:
    cfg = TrackerConfig(preset="paper", grid_size=24, redraw_steps=10)
    dense, sparse = _Recording(cfg, "dense"), _Recording(cfg, "sparse")
    tracker = IncrementalTracker(cfg, backend=sparse, dense_backend=dense)
    images, stamps = SyntheticScene.default(160, 160).sequence(fps=5.0, n_frames=30)
    res = [tracker.process(img, t) for img, t in zip(images, stamps)]
    dense_steps = [r.step_index for r in res if r is not None and r.dense]
    assert dense_steps == [6, 16, 26]
    assert dense.calls["track"] == 3 and dense.calls["track_step"] == 0
    assert sparse.calls["track"] == 0 and sparse.calls["track_step"] > 0
    assert sparse.calls["keep"] == sum(1 for r in res if r is not None and r.dense and r.valid)
    first = next(r for r in res if r is not None and r.dense and r.valid)
    assert first.tracker == "dense+sparse"
    # keep() got the chosen dense tracks: (N, M, 2), the trace is (M, N, 2)
    np.testing.assert_array_equal(sparse.kept[0].transpose(1, 0, 2), first.points)


# ------------------------------------------------ the incremental path (cotracker installed)
class _CountingPredictor:
    """Wraps CoTrackerOnlinePredictor: counts initialisations and model windows, and
    marks every point visible (random weights give meaningless visibility)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.inits = 0
        self.windows = 0
        self.log: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, video_chunk: Any, is_first_step: bool = False, **kw: Any) -> Any:
        if is_first_step:
            self.inits += 1
            self.log.append("init")
            return self.inner(video_chunk, is_first_step=True, **kw)
        self.windows += 1
        self.log.append(f"window{video_chunk.shape[1]}")
        tracks, vis = self.inner(video_chunk, **kw)
        return tracks, vis | True


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch = pytest.importorskip("torch", reason="torch not installed: CoTracker3 unavailable")
    pytest.importorskip("cotracker", reason="cotracker package not installed "
                        "(pip install -e a clone of facebookresearch/co-tracker)")
    from cotracker.models.build_cotracker import build_cotracker

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("ckpt") / "random_online_w8.pth")
    torch.save(build_cotracker(None, offline=False, window_len=8).state_dict(), path)
    return path


@pytest.mark.parametrize("mode", ["provisional", "hold"])
def test_incremental_session_across_a_dense_requery(random_checkpoint: str, mode: str) -> None:
    """Random weights, window 8 (step 4), model input 64x64 to keep it to seconds:
    one init per dense pass + one per sparse session, exactly at re-queries; at most one
    model window per ordinary step (provisional: exactly one; hold: one per 4 frames);
    the M points continue from their last positions (no re-initialisation between)."""
    import torch

    torch.set_num_threads(1)
    cfg = TrackerConfig(preset="paper", backend="cotracker3", grid_size=3, num_points=2,
                        kappa_px=0.0, redraw_steps=6, cotracker_window_len=8,
                        cotracker_lag=mode,
                        cotracker_checkpoint=random_checkpoint)
    tracker = IncrementalTracker(cfg)
    backend = tracker.backend
    assert tracker.dense_backend is backend
    backend.predictor.interp_shape = (64, 64)  # type: ignore[attr-defined]
    counter = _CountingPredictor(backend.predictor)  # type: ignore[attr-defined]
    backend.predictor = counter  # type: ignore[attr-defined]
    images, stamps = SyntheticScene.default(64, 64).sequence(fps=5.0, n_frames=15)
    prev = None
    for s, (img, t) in enumerate(zip(images, stamps)):
        inits, windows = counter.inits, counter.windows
        pts_before = None if tracker._pts is None else tracker._pts.copy()
        r = tracker.process(img, t)
        assert r is not None
        if s < cfg.history - 1:
            assert (counter.inits, counter.windows) == (0, 0)
        elif r.dense:
            # dense pass (init + one window over the 6-frame buffer) and the sparse
            # session of the 2 kept points (init, frames replayed, no window yet)
            assert r.valid, r.reason
            assert counter.inits - inits == 2
            assert counter.log[-3:] == ["init", "window6", "init"]
        else:
            assert r.valid
            assert counter.inits == inits, "re-initialised at an ordinary step"
            info = backend.last_info  # type: ignore[attr-defined]
            assert not info.reinit
            assert counter.windows - windows == info.model_calls
            if mode == "provisional":
                assert info.model_calls == 1, "an ordinary step is one model window"
                assert info.lag_frames == 0
            else:
                plan = backend.session.plan  # type: ignore[attr-defined]
                committed = plan.processed == plan.fed
                assert info.model_calls == int(committed) and not info.provisional
                assert info.lag_frames == plan.fed - plan.processed
            # the trace slides: the old positions carry over unchanged
            assert prev is not None
            np.testing.assert_array_equal(r.points[:, :-1], prev.points[:, 1:])
            assert pts_before is not None
            np.testing.assert_array_equal(prev.points[:, -1], pts_before)
            assert np.isfinite(r.points).all()
        prev = r
    dense_steps = [6, 12]
    assert counter.inits == 2 * len(dense_steps)
    session = backend.session  # type: ignore[attr-defined]
    assert session is not None and session.plan.fed == cfg.history + 15 - 12
    assert session.plan.ind == 4  # the full window [0, 8) was committed, [4, 9) pending


def test_cotracker3_backend_contract_with_a_local_checkpoint() -> None:
    """Shapes, dtypes and query handling with the released weights (TRACEVLA_COTRACKER_CKPT)."""
    pytest.importorskip("torch", reason="torch not installed: CoTracker3 backend unavailable")
    pytest.importorskip("cotracker", reason="cotracker package not installed "
                        "(pip install -e a clone of facebookresearch/co-tracker)")
    ckpt = os.environ.get("TRACEVLA_COTRACKER_CKPT", "")
    if not ckpt or not os.path.isfile(ckpt):
        pytest.skip(f"no CoTracker3 checkpoint: set TRACEVLA_COTRACKER_CKPT (got '{ckpt}')")
    from tracevla_ros.tracking.frames import make_frame
    from tracevla_ros.tracking.tracker import grid_points

    backend = make_backend(TrackerConfig(backend="cotracker3", cotracker_checkpoint=ckpt))
    assert backend.needs_color
    images, times = SyntheticScene.default(128, 128).sequence(fps=5.0, n_frames=6)
    frames = [make_frame(img, t, keep_color=True) for img, t in zip(images, times)]
    queries = grid_points(128, 128, 4)
    tracks, visible = backend.track(frames, queries)
    assert tracks.shape == (6, 16, 2) and tracks.dtype == np.float32
    assert visible.shape == (6, 16) and visible.dtype == bool
    np.testing.assert_array_equal(tracks[0], queries)
    assert np.isfinite(tracks).all()


def test_dense_pass_of_one_full_window_matches_the_predictor(random_checkpoint: str) -> None:
    """A buffer of exactly one full window is read from the committed model state; it
    equals the predictor's own output for that window (random weights, 64x64 model input)."""
    import torch

    from tracevla_ros.tracking.frames import make_frame
    from tracevla_ros.tracking.tracker import grid_points

    torch.set_num_threads(1)
    backend = make_backend(TrackerConfig(backend="cotracker3", cotracker_window_len=8,
                                         cotracker_checkpoint=random_checkpoint))
    pred = backend.predictor  # type: ignore[attr-defined]
    pred.interp_shape = (64, 64)
    images, times = SyntheticScene.default(64, 64).sequence(fps=5.0, n_frames=8)
    frames = [make_frame(img, t, keep_color=True) for img, t in zip(images, times)]
    q = grid_points(64, 64, 3)
    tracks, visible = backend.track(frames, q)
    video = torch.stack([torch.from_numpy(f.color).permute(2, 0, 1).float() for f in frames])[None]
    q3 = torch.from_numpy(np.concatenate([np.zeros((9, 1), np.float32), q], 1))[None]
    pred(video_chunk=video[:, :1], is_first_step=True, queries=q3)
    ref_t, ref_v = pred(video_chunk=video)
    ref = ref_t[0].numpy()
    ref[0] = q
    vis = ref_v[0].numpy()
    vis[0] = True
    np.testing.assert_array_equal(tracks, ref)
    np.testing.assert_array_equal(visible, vis)


def test_bench_tracker_reports_the_backend_pair() -> None:
    """``tracevla-bench tracker`` with the mixed-backend options (LK only: runs on CI)."""
    from tracevla_ros.bench.tracker import main

    out = main(["--frames", "10", "--size", "96", "--grid-size", "12",
                "--dense-backend", "lk", "--sparse-backend", "lk"])
    assert out["backend"] == "lk" and out["config"]["dense_backend"] == "lk"
    assert "model_windows" not in out  # no CoTracker3 in this run: no torch report
