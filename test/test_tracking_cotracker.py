"""CoTracker3 backend: clear errors without weights; a real run when package + checkpoint exist.

Set TRACEVLA_COTRACKER_CKPT to a local CoTracker3 online checkpoint
(scaled_online.pth) to run the model test; it is never downloaded.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tracevla_ros.tracking.backend import make_backend
from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.cotracker import CheckpointMissingError


def test_missing_checkpoint_error_names_the_path(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "nope", "scaled_online.pth")
    with pytest.raises(CheckpointMissingError, match="nope/scaled_online.pth"):
        make_backend(TrackerConfig(backend="cotracker3", cotracker_checkpoint=path))


def test_cotracker3_backend_contract_on_a_synthetic_clip() -> None:
    """Shapes, dtypes and query handling of the online predictor path (any weights:
    checked with randomly initialised weights, ~25 s per clip on 2 CPU cores)."""
    pytest.importorskip("torch", reason="torch not installed: CoTracker3 backend unavailable")
    pytest.importorskip("cotracker", reason="cotracker package not installed "
                        "(pip install -e a clone of facebookresearch/co-tracker)")
    ckpt = os.environ.get("TRACEVLA_COTRACKER_CKPT", "")
    if not ckpt or not os.path.isfile(ckpt):
        pytest.skip(f"no CoTracker3 checkpoint: set TRACEVLA_COTRACKER_CKPT (got '{ckpt}')")
    from tracevla_ros.tracking.frames import make_frame
    from tracevla_ros.tracking.synthetic import SyntheticScene
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
