"""Tracking quality against synthetic ground truth (LK backend, 256 x 256, 5 Hz policy).

Each case pools 4 scenes (seeds 0, 3, 4, 5; 100 policy steps each). Measured
with the default LK settings (window 11, 3 levels, fb 1 px, residual 5 grey
levels) on OpenCV 5.0; the second row of each case is seeds 1, 2, 6, 7:

=========== ======== ========== ========= ============ =========
sequence    preset   median px  p90 px    on movers    lost
=========== ======== ========== ========= ============ =========
clean       paper    0.055      0.32      0.93         0.18
                     0.052      0.40      0.91         0.23
clean       authors  0.055      0.16      0.975        0.04
                     0.053      0.33      1.00         0.08
occlusion   paper    0.055      0.36      0.91         0.21
                     0.053      0.48      0.92         0.27
occlusion   authors  0.050      0.30      0.975        0.12
                     0.050      0.28      0.99         0.11
=========== ======== ========== ========= ============ =========

Thresholds: median < 0.2 px, p90 < 1.0 px, on movers >= 0.85 (paper) / 0.9
(authors). The misses are background grid points at a mover's edge that LK
drags by 1-3 px per step (active by the kappa = 1 px rule) while the movers
are slow, near the turning points of their paths.
"""

from __future__ import annotations

import pytest

from tracevla_ros.tracking.config import TrackerConfig
from tracevla_ros.tracking.evaluate import evaluate
from tracevla_ros.tracking.synthetic import SyntheticScene

SEEDS = (0, 3, 4, 5)


@pytest.mark.parametrize("occluder, preset, min_on_movers", [
    (False, "paper", 0.85),
    (False, "authors", 0.90),
    (True, "paper", 0.85),
    (True, "authors", 0.90),
])
def test_lk_tracking_error_and_active_points_on_movers(occluder: bool, preset: str,
                                                        min_on_movers: float) -> None:
    scenes = [SyntheticScene.default(256, 256, occluder=occluder, seed=s) for s in SEEDS]
    report = evaluate(scenes, TrackerConfig(preset=preset), n_steps=100)
    print(preset, "occluder" if occluder else "clean", report.as_dict())
    assert report.num_positions > 1000 and report.num_sampled >= 80
    assert report.median_error_px < 0.2
    assert report.p90_error_px < 1.0
    assert report.on_mover_fraction >= min_on_movers
    assert report.valid_steps >= 0.9 * report.steps


def test_no_camera_noise_gives_subpixel_error() -> None:
    scene = SyntheticScene.default(256, 256, noise_sigma=0.0, seed=1)
    report = evaluate(scene, TrackerConfig(preset="paper"), n_steps=100)
    print(report.as_dict())
    assert report.median_error_px < 0.1 and report.p90_error_px < 1.0
