"""Dataset statistics of a checkpoint (``norm_stats``) and the ``unnorm_key`` choice.

OpenVLA-family checkpoints ship the statistics of every training dataset, as
``dataset_statistics.json`` in the checkpoint directory and/or as the
``norm_stats`` entry of ``config.json``; both map a dataset name (the
``unnorm_key``, ``bridge_orig`` for the WidowX / BridgeData V2) to
``{"action": {"q01": [...], "q99": [...], "mask": [...], ...}, ...}``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.vla.actions import ACTION_DIM, GRIPPER_DIM, ActionStats

__all__ = ["STATS_FILE", "load_norm_stats", "select_action_stats", "compute_norm_stats"]

log = logging.getLogger(__name__)

STATS_FILE = "dataset_statistics.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read dataset statistics from {path}: {exc}") from exc


def load_norm_stats(checkpoint_dir: Path) -> dict[str, Any]:
    """All datasets' statistics: ``dataset_statistics.json``, else ``config.json``'s ``norm_stats``.

    Raises ConfigError naming both places when neither has them.
    """
    stats_path = checkpoint_dir / STATS_FILE
    if stats_path.is_file():
        stats = _read_json(stats_path)
        where = str(stats_path)
    else:
        cfg_path = checkpoint_dir / "config.json"
        cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
        stats = cfg.get("norm_stats") if isinstance(cfg, dict) else None
        where = f"{cfg_path} (norm_stats)"
        if not stats:
            raise ConfigError(f"checkpoint {checkpoint_dir} has no action statistics: expected "
                              f"{STATS_FILE} or a 'norm_stats' entry in config.json")
    if not isinstance(stats, dict) or not stats:
        raise ConfigError(f"{where}: expected a non-empty mapping dataset name -> statistics")
    return stats


def select_action_stats(norm_stats: dict[str, Any], unnorm_key: str, source: str = "") -> ActionStats:
    """``norm_stats[unnorm_key]["action"]`` as ActionStats; ConfigError lists the available keys.

    A missing ``mask`` means the OpenVLA convention of this action space: the six
    motion dimensions are normalised, the gripper is not.
    """
    where = f" in {source}" if source else ""
    if unnorm_key not in norm_stats:
        raise ConfigError(f"parameter 'unnorm_key': '{unnorm_key}' is not among the dataset "
                          f"statistics{where}; available: {sorted(norm_stats)}")
    entry = norm_stats[unnorm_key]
    action = entry.get("action") if isinstance(entry, dict) else None
    if not isinstance(action, dict) or "q01" not in action or "q99" not in action:
        raise ConfigError(f"statistics '{unnorm_key}'{where} have no action q01/q99")
    q01 = np.asarray(action["q01"], dtype=np.float64)
    q99 = np.asarray(action["q99"], dtype=np.float64)
    if q01.shape != (ACTION_DIM,) or q99.shape != (ACTION_DIM,):
        raise ConfigError(f"statistics '{unnorm_key}'{where}: q01/q99 must have {ACTION_DIM} values "
                          f"(ee_delta_7d), got {q01.shape} and {q99.shape}")
    if "mask" in action:
        mask = np.asarray(action["mask"], dtype=bool)
        if mask.shape != (ACTION_DIM,):
            raise ConfigError(f"statistics '{unnorm_key}'{where}: mask must have {ACTION_DIM} values")
    else:
        mask = np.ones(ACTION_DIM, bool)
        mask[GRIPPER_DIM] = False
        log.info("statistics '%s' have no mask: the gripper is not unnormalised", unnorm_key)
    if not (np.all(np.isfinite(q01)) and np.all(np.isfinite(q99))):
        raise ConfigError(f"statistics '{unnorm_key}'{where}: q01/q99 contain NaN or inf")
    return ActionStats(q01=q01, q99=q99, mask=mask, key=unnorm_key)


def compute_norm_stats(actions: np.ndarray, episodes: int) -> dict[str, Any]:
    """One dataset's entry of ``norm_stats`` from its (N, 7) ``ee_delta_7d`` actions, in
    OpenVLA's layout: ``{"action": {mean, std, min, max, q01, q99, mask}, "num_transitions",
    "num_trajectories"}``. The mask normalises the six motion dimensions, not the gripper
    (as for ``bridge_orig``); q01/q99 are numpy's linear-interpolation quantiles."""
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != ACTION_DIM or a.shape[0] == 0:
        raise ConfigError(f"action statistics need (N, {ACTION_DIM}) actions with N >= 1, got "
                          f"shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ConfigError("the dataset's actions contain NaN or inf; fix the data before "
                          "computing statistics")
    mask = np.ones(ACTION_DIM, bool)
    mask[GRIPPER_DIM] = False
    return {"action": {"mean": a.mean(0).tolist(), "std": a.std(0).tolist(),
                       "min": a.min(0).tolist(), "max": a.max(0).tolist(),
                       "q01": np.quantile(a, 0.01, axis=0).tolist(),
                       "q99": np.quantile(a, 0.99, axis=0).tolist(), "mask": mask.tolist()},
            "num_transitions": int(a.shape[0]), "num_trajectories": int(episodes)}
