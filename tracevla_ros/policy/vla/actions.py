"""Action tokens -> continuous actions, the OpenVLA way (no torch, no transformers).

OpenVLA-family models (OpenVLA, TraceVLA-7B, TraceVLA-Phi3V) emit one token
per action dimension. The last 256 ids of the tokenizer's base vocabulary are
action bins: a token ``id`` is bin ``b = vocab_size - id`` (1..256), which
indexes the 255 bin centres of ``linspace(-1, 1, 256)`` at ``b - 1``, clipped
to 0..254 (ids outside the action range land on the nearest end bin).
Normalised values in [-1, 1] are unnormalised with the dataset's 1st/99th
percentiles, ``0.5 * (a + 1) * (q99 - q01) + q01``, on the dimensions whose
``mask`` is true; masked-out dimensions (the gripper) keep their normalised
value. The result is the ``ee_delta_7d`` action
``[dx, dy, dz (m), droll, dpitch, dyaw (rad), gripper]`` with gripper 1 = open.

Fine-tuning (``finetune.py``) runs the same scheme backwards: ``normalize``
(clipped to [-1, 1]) and ``encode_actions`` (``np.digitize`` over the 256 bin
edges, token ``vocab_size - bin``), so ``decode_tokens(encode_actions(a))`` is
the centre of the bin ``a`` falls in.

Whether a loaded checkpoint's ``predict_action`` already unnormalises differs
between published copies (the TraceVLA repository's copy has it commented
out), so ``classify_probe_output`` decides it from what the model returns for
known tokens; see ``tracevla_ros.policy.vla.hf``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from tracevla_ros.policy.base import EE_DELTA_7D, ActionChunk, PolicyError, validate_chunk

__all__ = [
    "ACTION_DIM",
    "N_ACTION_BINS",
    "BIN_CENTERS",
    "ActionStats",
    "token_bin_indices",
    "decode_tokens",
    "encode_actions",
    "normalize",
    "unnormalize",
    "finalize_action",
    "UNNORM_BY_MODEL",
    "UNNORM_BY_POLICY",
    "PROBE_BINS",
    "probe_token_ids",
    "classify_probe_output",
]

log = logging.getLogger(__name__)

ACTION_DIM = 7
N_ACTION_BINS = 256
_EDGES = np.linspace(-1.0, 1.0, N_ACTION_BINS)
BIN_CENTERS: np.ndarray = (_EDGES[:-1] + _EDGES[1:]) / 2.0  # (255,) float64
GRIPPER_DIM = ACTION_DIM - 1


@dataclass(frozen=True)
class ActionStats:
    """Per-dimension action statistics of one dataset (``norm_stats[key]["action"]``).

    q01, q99: (7,) float64, 1st / 99th percentiles of the training actions.
    mask:     (7,) bool, true = the dimension was normalised (and is unnormalised).
    key:      the dataset name (``unnorm_key``), e.g. ``bridge_orig``.
    """

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray
    key: str = ""

    def __post_init__(self) -> None:
        for name in ("q01", "q99", "mask"):
            v = np.asarray(getattr(self, name))
            if v.shape != (ACTION_DIM,):
                raise PolicyError(f"action statistics '{self.key}': {name} must have {ACTION_DIM} "
                                  f"values, got shape {v.shape}")
        if not (np.all(np.isfinite(self.q01)) and np.all(np.isfinite(self.q99))):
            raise PolicyError(f"action statistics '{self.key}': q01/q99 contain NaN or inf")


def token_bin_indices(token_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """(7,) int token ids -> (7,) int indices into BIN_CENTERS (clipped to 0..254)."""
    ids = np.asarray(token_ids, dtype=np.int64).ravel()
    if ids.shape != (ACTION_DIM,):
        raise PolicyError(f"expected {ACTION_DIM} action tokens, got {ids.shape[0]}")
    return np.clip(vocab_size - ids - 1, 0, BIN_CENTERS.shape[0] - 1)


def decode_tokens(token_ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """(7,) action token ids -> (7,) normalised actions in (-1, 1), float64."""
    return BIN_CENTERS[token_bin_indices(token_ids, vocab_size)]


def encode_actions(normalized: np.ndarray, vocab_size: int) -> np.ndarray:
    """(..., 7) normalised actions -> (..., 7) int64 action token ids (values clipped to [-1, 1])."""
    a = np.clip(np.asarray(normalized, dtype=np.float64), -1.0, 1.0)
    if a.shape[-1:] != (ACTION_DIM,):
        raise PolicyError(f"expected {ACTION_DIM}-d actions, got shape {a.shape}")
    return (vocab_size - np.digitize(a, _EDGES)).astype(np.int64)


def normalize(action: np.ndarray, stats: ActionStats) -> np.ndarray:
    """(..., 7) in dataset units -> (..., 7) in [-1, 1] on the masked dims (OpenVLA's
    ``BOUNDS_Q99``: ``2 (a - q01) / (q99 - q01 + 1e-8) - 1``, clipped); the others unchanged."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape[-1:] != (ACTION_DIM,):
        raise PolicyError(f"expected {ACTION_DIM}-d actions, got shape {a.shape}")
    q01 = np.asarray(stats.q01, np.float64)
    q99 = np.asarray(stats.q99, np.float64)
    scaled = np.clip(2.0 * (a - q01) / (q99 - q01 + 1e-8) - 1.0, -1.0, 1.0)
    return np.where(np.asarray(stats.mask, bool), scaled, a)


def unnormalize(normalized: np.ndarray, stats: ActionStats) -> np.ndarray:
    """(7,) normalised -> (7,) in dataset units; masked-out dims are returned unchanged."""
    a = np.asarray(normalized, dtype=np.float64).ravel()
    if a.shape != (ACTION_DIM,):
        raise PolicyError(f"expected a {ACTION_DIM}-d action, got shape {a.shape}")
    q01 = np.asarray(stats.q01, np.float64)
    q99 = np.asarray(stats.q99, np.float64)
    return np.where(np.asarray(stats.mask, bool), 0.5 * (a + 1.0) * (q99 - q01) + q01, a)


def finalize_action(action: np.ndarray, trace_used: bool) -> ActionChunk:
    """(7,) unnormalised action -> a validated one-step ``ee_delta_7d`` chunk.

    Raises PolicyError for NaN/inf (before anything else touches the values).
    The gripper dimension is not rescaled; its bin centre lies in (-1, 1) and is
    clipped to [0, 1] (1 = open; the arm controller thresholds it with
    hysteresis, where the authors' evaluation binarised it at 0.5).
    """
    a = np.asarray(action, dtype=np.float64).ravel()
    if a.shape != (ACTION_DIM,):
        raise PolicyError(f"model returned {a.size} action values, expected {ACTION_DIM}")
    if not np.all(np.isfinite(a)):
        bad = int(np.argwhere(~np.isfinite(a))[0][0])
        raise PolicyError(f"model output has a non-finite value in dim {bad}: {a[bad]}; no action is sent")
    a = a.copy()
    a[GRIPPER_DIM] = float(np.clip(a[GRIPPER_DIM], 0.0, 1.0))
    return validate_chunk(ActionChunk(values=a.astype(np.float32)[None, :], action_space=EE_DELTA_7D,
                                      trace_used=trace_used))


# --- which side unnormalises ---------------------------------------------------
UNNORM_BY_MODEL = "model"    # predict_action returns dataset units: use as is
UNNORM_BY_POLICY = "policy"  # predict_action returns normalised values: unnormalise here

# Bins chosen so that the normalised and unnormalised hypotheses differ in every
# masked dimension for any realistic statistics (none is the centre bin 127).
PROBE_BINS = np.array([10, 60, 110, 150, 190, 230, 250], dtype=np.int64)


def probe_token_ids(vocab_size: int) -> np.ndarray:
    """(7,) token ids that decode to BIN_CENTERS[PROBE_BINS]."""
    return vocab_size - 1 - PROBE_BINS


def classify_probe_output(output: np.ndarray, vocab_size: int, stats: ActionStats,
                          rtol: float = 1e-2, atol: float = 1e-4) -> str:
    """Decide who unnormalises from ``predict_action``'s answer to ``probe_token_ids``.

    Returns UNNORM_BY_MODEL when ``output`` equals the unnormalised probe
    actions, UNNORM_BY_POLICY when it equals the normalised ones. When the
    statistics make both identical either is correct (UNNORM_BY_MODEL). Any other
    output means the checkpoint decodes tokens differently from OpenVLA: raise
    rather than guess. Tolerances allow a model that computes in float32/bf16.
    """
    out = np.asarray(output, dtype=np.float64).ravel()
    if out.shape != (ACTION_DIM,):
        raise PolicyError(f"predict_action returned {out.size} values for the probe, expected {ACTION_DIM}")
    normalized = decode_tokens(probe_token_ids(vocab_size), vocab_size)
    unnormalized = unnormalize(normalized, stats)
    is_unnorm = bool(np.allclose(out, unnormalized, rtol=rtol, atol=atol))
    is_norm = bool(np.allclose(out, normalized, rtol=rtol, atol=atol))
    if is_unnorm:
        if is_norm:
            log.info("statistics '%s' make unnormalisation the identity; using the model output",
                     stats.key)
        return UNNORM_BY_MODEL
    if is_norm:
        return UNNORM_BY_POLICY
    raise PolicyError(
        "cannot tell whether the checkpoint's predict_action unnormalises: for probe tokens "
        f"{probe_token_ids(vocab_size).tolist()} it returned {np.round(out, 6).tolist()}, expected "
        f"either {np.round(normalized, 6).tolist()} (normalised) or "
        f"{np.round(unnormalized, 6).tolist()} (unnormalised with '{stats.key}'); its action "
        "decoding differs from OpenVLA's, so no action is produced with it")
