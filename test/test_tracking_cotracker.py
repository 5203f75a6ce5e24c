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


def test_cotracker3_tracks_a_synthetic_clip() -> None:
    pytest.importorskip("torch", reason="torch not installed: CoTracker3 backend unavailable")
    pytest.importorskip("cotracker", reason="cotracker package not installed "
                        "(pip install -e a clone of facebookresearch/co-tracker)")
    ckpt = os.environ.get("TRACEVLA_COTRACKER_CKPT", "")
    if not ckpt or not os.path.isfile(ckpt):
        pytest.skip(f"no CoTracker3 checkpoint: set TRACEVLA_COTRACKER_CKPT (got '{ckpt}')")
    from tracevla_ros.tracking.evaluate import evaluate
    from tracevla_ros.tracking.synthetic import SyntheticScene

    cfg = TrackerConfig(preset="paper", backend="cotracker3", cotracker_checkpoint=ckpt,
                        grid_size=20)
    report = evaluate(SyntheticScene.default(256, 256), cfg, n_steps=30)
    print(report.as_dict())
    assert report.valid_steps > 0 and np.isfinite(report.median_error_px)
    assert report.median_error_px < 2.0
