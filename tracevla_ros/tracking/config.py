"""``TrackerConfig``: every parameter of the incremental trace tracker, with presets.

Presets
-------
Two published settings of TraceVLA visual trace prompting disagree, so both are
shipped as named presets (``PRESETS``):

* ``"paper"`` -- the paper (arXiv 2412.10345): a K=40 dense grid, M=5 points,
  N=6 steps of history, dense re-query every 20 steps.
* ``"authors"`` -- the authors' released inference code (``TraceProcessor``):
  a 30x30 grid, M=5, a 10-frame buffer (first trace at step 10), re-query every
  25 steps, retry after more than 5 untraced steps, kappa = 1.0 px of mean
  per-step L1 motion, the last 10 positions drawn for WidowX (15 for the Google
  robot: use ``history=15, draw_length=15``).

How a preset and explicit values combine: the preset-governed fields
(``PRESET_FIELDS``) default to ``-1``, meaning "take the preset's value". Any
value >= 0 given explicitly (constructor, YAML, launch override) wins. After
construction every field holds its resolved value, so ``cfg.grid_size`` is
never -1. ``TrackerConfig.from_preset("paper", num_points=8)`` is the same as
``TrackerConfig(preset="paper", num_points=8)``.

Why the default preset is ``"authors"``: the released TraceVLA checkpoints
were evaluated (SimplerEnv and the real WidowX) with traces produced by the
authors' inference code, so its buffer length, grid and re-query schedule
reproduce the trace statistics the policy was actually scored with; the
paper's numbers describe the method, not the released pipeline. It is also the
cheaper one (900 instead of 1600 dense queries, a dense pass every 25 instead
of 20 steps). Choose ``"paper"`` to reproduce the paper's description.

Activity measure (kappa): a dense track is *active* when the MEAN over the
window of its per-step L1 pixel displacement, ``mean_t(|dx_t| + |dy_t|)``,
exceeds ``kappa_px`` -- the measure of the authors' code (not the total path
length, not the L2 norm). With fewer than M active tracks the step is
untraced (the authors' code needs strictly more than M; we accept exactly M).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from tracevla_ros.config import ConfigError, check, param

__all__ = ["TrackerConfig", "PRESETS", "PRESET_FIELDS", "DEFAULT_PRESET", "FROM_PRESET"]

FROM_PRESET = -1
DEFAULT_PRESET = "authors"

# The values each preset sets; every other field has one default for both.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "grid_size": 40,
        "num_points": 5,
        "history": 6,
        "redraw_steps": 20,
        "untraced_retry_steps": 6,
        "kappa_px": 1.0,
        "draw_length": 6,
    },
    "authors": {
        "grid_size": 30,
        "num_points": 5,
        "history": 10,
        "redraw_steps": 25,
        "untraced_retry_steps": 6,
        "kappa_px": 1.0,
        "draw_length": 10,
    },
}
PRESET_FIELDS: tuple[str, ...] = tuple(PRESETS["paper"])

_BACKENDS = ("lk", "cotracker3")


@dataclass(frozen=True)
class TrackerConfig:
    """Parameters of ``IncrementalTracker`` and ``tracker_node`` (one ROS parameter each)."""

    preset: str = param(DEFAULT_PRESET, "base parameter set: 'paper' or 'authors'; "
                        "explicit values >= 0 of the preset fields override it")
    # --- preset-governed (-1 = take the preset's value) -----------------------------
    grid_size: int = param(FROM_PRESET, "K: the dense re-query tracks a K x K grid "
                           "(paper 40, authors 30; -1 = preset)", unit="points per side")
    num_points: int = param(FROM_PRESET, "M: points drawn in the trace (both presets 5; "
                            "-1 = preset)", unit="points")
    history: int = param(FROM_PRESET, "N: policy steps of history in the buffer and in the "
                         "trace; no trace until N steps were seen (paper 6, authors 10; "
                         "-1 = preset)", unit="policy steps")
    redraw_steps: int = param(FROM_PRESET, "dense re-query every this many policy steps "
                              "while traced (paper 20, authors 25; -1 = preset)",
                              unit="policy steps")
    untraced_retry_steps: int = param(FROM_PRESET, "while untraced, retry the dense query "
                                      "after this many steps (authors: after >5, i.e. 6; "
                                      "-1 = preset)", unit="policy steps")
    kappa_px: float = param(float(FROM_PRESET), "kappa: a track is active when its mean "
                            "per-step L1 displacement over the window exceeds this "
                            "(authors 1.0; -1 = preset)", unit="px per policy step")
    draw_length: int = param(FROM_PRESET, "positions drawn per point, newest last, "
                             "<= history (WidowX 10, Google robot 15; -1 = preset)",
                             unit="policy steps")
    requery_min_visible: int = param(1, "re-query early (before redraw_steps) when fewer "
                                     "than this many traced points are still tracked; 1 = "
                                     "only when all are lost", unit="points")
    # --- shared -----------------------------------------------------------------------
    backend: str = param("lk", "point tracker backend: 'lk' (OpenCV pyramidal "
                         "Lucas-Kanade, CPU, no weights) or 'cotracker3'")
    dense_backend: str = param("", "backend of the dense K x K re-query ('' = backend); "
                               "e.g. 'cotracker3' with sparse_backend 'lk'")
    sparse_backend: str = param("", "backend that tracks the M traced points between "
                                "dense re-queries ('' = backend)")
    seed: int = param(0, "seed of the random choice of M active points (reproducible runs)")
    control_rate_hz: float = param(5.0, "policy step rate, shared with the policy node; "
                                   "the history is sampled at this rate", unit="Hz")
    observe_rate_hz: float = param(0.0, "tracker_node: rate at which camera frames are "
                                   "tracked between policy steps; 0 = only at policy steps",
                                   unit="Hz")
    lk_window: int = param(11, "Lucas-Kanade window side (odd); cost ~ window^2 per point: "
                           "11 halves the dense pass against OpenCV's 15 and was as "
                           "accurate on the synthetic evaluation (fewer windows straddle "
                           "object edges); raise it for weakly textured scenes", unit="px")
    lk_levels: int = param(3, "Lucas-Kanade pyramid levels above the base image; 3 covers "
                           "~8x the window of motion between two frames", unit="levels")
    lk_max_iter: int = param(30, "Lucas-Kanade iterations per level (stop criterion)")
    lk_epsilon: float = param(0.01, "Lucas-Kanade stop when the update is below this", unit="px")
    fb_threshold_px: float = param(1.0, "forward-backward check: a point is lost when "
                                   "tracking it forward then back misses its start by more "
                                   "than this", unit="px")
    lk_max_residual: float = param(5.0, "a Lucas-Kanade step is rejected (point lost) when "
                                   "the mean absolute grey difference between the patch "
                                   "and its match exceeds this: catches points an object "
                                   "sweeps over; 0 = off", unit="grey levels")
    prefilter_gray: float = param(4.0, "dense re-query skips grid points whose lk_window "
                                  "neighbourhood never changes by more than this mean "
                                  "absolute grey difference between consecutive buffer "
                                  "frames (they did not move); ~1.8x what sigma=2 camera "
                                  "noise gives; raise it for noisier cameras, 0 = track "
                                  "every grid point", unit="grey levels")
    cotracker_checkpoint: str = param("", "cotracker3 backend: local path of the CoTracker3 "
                                      "online checkpoint (e.g. scaled_online.pth); never "
                                      "downloaded")
    cotracker_device: str = param("cpu", "cotracker3 backend: torch device ('cpu', 'cuda')")
    cotracker_window_len: int = param(16, "cotracker3 backend: online window; the model "
                                      "runs one window every window_len/2 frames; must match "
                                      "the checkpoint (scaled_online.pth: 16)", unit="frames")
    cotracker_lag: str = param("provisional", "cotracker3 backend: newest frame before its "
                               "window is complete: 'provisional' runs the partial window "
                               "uncommitted (one model window per step, current position), "
                               "'hold' keeps the last processed frame's position (one window "
                               "per window_len/2 frames, up to window_len/2-1 frames stale)")
    opencv_threads: int = param(1, "tracker_node: cv2.setNumThreads for the node process; "
                                "1 measured faster than 2 for this workload (small LK calls) "
                                "and leaves a core to the policy; -1 = OpenCV's default")
    publish_overlay: bool = param(True, "tracker_node: also publish the overlaid image "
                                  "'image_trace' (rgb8) for rviz")

    def __post_init__(self) -> None:
        check(self.preset in PRESETS, "preset", f"must be one of {sorted(PRESETS)}, "
              f"got '{self.preset}'")
        base = PRESETS[self.preset]
        for name in PRESET_FIELDS:
            value = getattr(self, name)
            check(value == FROM_PRESET or value >= 0, name,
                  f"must be >= 0, or -1 to take the '{self.preset}' preset value; got {value}")
            if value == FROM_PRESET:
                object.__setattr__(self, name, type(value)(base[name]))
        check(self.grid_size >= 2, "grid_size", "must be >= 2")
        check(self.num_points >= 1, "num_points", "must be >= 1")
        check(self.grid_size ** 2 >= self.num_points, "grid_size",
              f"must give at least num_points={self.num_points} grid points")
        check(self.history >= 2, "history", "must be >= 2 (a trace needs two positions)")
        check(self.redraw_steps >= 1, "redraw_steps", "must be >= 1")
        check(self.untraced_retry_steps >= 1, "untraced_retry_steps", "must be >= 1")
        check(self.kappa_px >= 0.0, "kappa_px", "must be >= 0")
        check(1 <= self.requery_min_visible <= self.num_points, "requery_min_visible",
              f"must be in [1, num_points={self.num_points}]")
        check(2 <= self.draw_length <= self.history, "draw_length",
              f"must be in [2, history={self.history}] (the trace holds history positions)")
        check(self.backend in _BACKENDS, "backend", f"must be one of {list(_BACKENDS)}, "
              f"got '{self.backend}'")
        for name in ("dense_backend", "sparse_backend"):
            value = getattr(self, name)
            check(value == "" or value in _BACKENDS, name,
                  f"must be '' (= backend) or one of {list(_BACKENDS)}, got '{value}'")
        check(self.cotracker_window_len >= 2 and self.cotracker_window_len % 2 == 0,
              "cotracker_window_len", "must be an even number >= 2")
        check(self.cotracker_lag in ("provisional", "hold"), "cotracker_lag",
              f"must be 'provisional' or 'hold', got '{self.cotracker_lag}'")
        check(self.control_rate_hz > 0.0, "control_rate_hz", "must be > 0")
        check(self.observe_rate_hz >= 0.0, "observe_rate_hz", "must be >= 0 (0 = off)")
        check(self.lk_window >= 5 and self.lk_window % 2 == 1, "lk_window",
              "must be an odd number >= 5")
        check(0 <= self.lk_levels <= 6, "lk_levels", "must be in [0, 6]")
        check(self.lk_max_iter >= 1, "lk_max_iter", "must be >= 1")
        check(self.lk_epsilon > 0.0, "lk_epsilon", "must be > 0")
        check(self.fb_threshold_px > 0.0, "fb_threshold_px", "must be > 0")
        check(self.lk_max_residual >= 0.0, "lk_max_residual", "must be >= 0 (0 = off)")
        check(self.opencv_threads >= -1, "opencv_threads", "must be >= 1, or -1 for the default")
        check(self.prefilter_gray >= 0.0, "prefilter_gray", "must be >= 0 (0 = off)")

    @property
    def dense_backend_name(self) -> str:
        """The backend of the dense re-query (``dense_backend``, or ``backend`` when '')."""
        return self.dense_backend or self.backend

    @property
    def sparse_backend_name(self) -> str:
        """The backend of the M traced points (``sparse_backend``, or ``backend`` when '')."""
        return self.sparse_backend or self.backend

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TrackerConfig":
        """The ``name`` preset with ``overrides`` applied (unknown keys raise ConfigError)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown TrackerConfig parameter(s) {unknown}; known: {sorted(known)}")
        return cls(preset=name, **overrides)

    def replace(self, **changes: Any) -> "TrackerConfig":
        """A copy with ``changes``; preset fields keep their resolved values unless changed."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Mapping[str, Any]:
        """Resolved values, for logs and benchmark reports."""
        return dataclasses.asdict(self)
