"""Recover a bag whose recorder died (SIGKILL, power cut), like ``ros2 bag reindex``.

``reindex(DIR)`` reads every complete record of the MCAP file (the recorder
writes chunks at least every ``flush_period_s``), cuts the partial record at
its end, appends the MCAP summary and footer (so ``rosbags`` can read it) and
rewrites ``metadata.yaml`` (rosbag2 version 9) with the topics, counts, QoS and
the ``custom_data`` (parameter file) stored early in the MCAP. A sqlite3 bag
only gets its metadata.yaml rebuilt. ``needs_reindex`` tells whether a bag
directory or .mcap file is one that was not closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tracevla_ros.bag.mcap_io import McapError, McapScan, has_footer, repair, scan
from tracevla_ros.bag.writer import (
    CUSTOM_DATA_RECORD,
    BagError,
    bag_metadata,
    mcap_topics,
    write_metadata_yaml,
)

__all__ = ["ReindexResult", "needs_reindex", "reindex", "storage_files"]


@dataclass
class ReindexResult:
    path: Path  # the bag directory (or the .mcap file)
    storage_file: Path
    was_complete: bool  # the storage file was closed properly (only metadata.yaml was rebuilt)
    message_count: int
    topics: dict[str, int] = field(default_factory=dict)  # topic -> messages
    start_ns: int = 0
    end_ns: int = 0
    lost_bytes: int = 0  # partial record cut from the end
    custom_data: dict[str, str] = field(default_factory=dict)
    note: str = ""  # where the scan stopped, when the file was cut

    def summary(self) -> str:
        dur = (self.end_ns - self.start_ns) * 1e-9 if self.message_count else 0.0
        state = ("the storage file was complete" if self.was_complete else
                 f"the storage file was not closed: {self.lost_bytes} bytes at its end "
                 f"(an unfinished record) dropped")
        return (f"{self.path}: {self.message_count} messages on {len(self.topics)} topics, "
                f"{dur:.3f} s recovered; {state}"
                + (f"; custom_data keys {sorted(self.custom_data)}" if self.custom_data else ""))


def storage_files(bag: Path) -> list[Path]:
    """The .mcap / .db3 files of a bag directory."""
    return sorted(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3") and p.is_file())


def _storage_file(bag: Path) -> Path:
    if not bag.exists():
        raise BagError(f"{bag}: no such bag directory")
    if bag.is_file():
        if bag.suffix != ".mcap":
            raise BagError(f"{bag}: not a bag (expected a rosbag2 directory or a .mcap file)")
        return bag
    files = storage_files(bag)
    if not files:
        raise BagError(f"{bag}: not a bag: it holds no .mcap or .db3 file")
    if len(files) > 1:
        raise BagError(f"{bag}: holds {len(files)} storage files ({[f.name for f in files]}); "
                       "split bags are not supported")
    return files[0]


def needs_reindex(bag: Path) -> bool:
    """A bag directory without metadata.yaml, or an MCAP file (alone or in the directory)
    without a valid footer: what a killed recorder leaves."""
    if not bag.exists():
        return False
    if bag.is_file():
        return bag.suffix == ".mcap" and not has_footer(bag)
    files = storage_files(bag)
    if not files:
        return False
    if not (bag / "metadata.yaml").is_file():
        return True
    return any(f.suffix == ".mcap" and not has_footer(f) for f in files)


def _custom_data(res: McapScan) -> dict[str, str]:
    custom = dict(res.index.metadata.get(CUSTOM_DATA_RECORD, {}))
    if not custom and "rosbag2" in res.index.metadata:  # a complete rosbag2 MCAP
        try:
            info = yaml.safe_load(res.index.metadata["rosbag2"].get("serialized_metadata", ""))
            custom = {str(k): str(v) for k, v in ((info or {}).get("custom_data") or {}).items()}
        except (yaml.YAMLError, AttributeError):
            pass
    return custom


def reindex(bag: str | Path, dry_run: bool = False) -> ReindexResult:
    """Repair the MCAP file (unless ``dry_run``) and rewrite metadata.yaml (for a
    directory). Raises BagError (one line, naming the file) when it cannot."""
    bag = Path(bag)
    f = _storage_file(bag)
    if f.suffix == ".db3":
        return _reindex_sqlite(bag, f, dry_run)
    try:
        res = repair(f, dry_run=dry_run)
    except McapError as exc:
        raise BagError(str(exc)) from None
    except OSError as exc:
        raise BagError(f"{f}: cannot read or repair it: {exc.strerror or exc}") from None
    if res.profile and res.profile != "ros2":
        raise BagError(f"{f}: an MCAP file of profile '{res.profile}', not a ros2 bag")
    idx = res.index
    topics = mcap_topics(idx)
    custom = _custom_data(res)
    if bag.is_dir() and not dry_run:
        try:
            write_metadata_yaml(bag, bag_metadata(f.name, "mcap", topics, idx.start_ns, idx.end_ns,
                                                  custom))
        except OSError as exc:
            raise BagError(f"{bag}: cannot write metadata.yaml: {exc.strerror or exc}") from None
    counts: dict[str, int] = {}
    for t in topics:
        counts[t["name"]] = counts.get(t["name"], 0) + int(t["message_count"])
    return ReindexResult(bag, f, res.complete, idx.message_count, counts, idx.start_ns, idx.end_ns,
                         res.lost_bytes, custom, res.note)


def _reindex_sqlite(bag: Path, f: Path, dry_run: bool) -> ReindexResult:
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.metadata import dump_qos_v9

    topics: list[dict[str, Any]]
    try:
        with Reader(f) as r:
            topics = [{"name": c.topic, "type": c.msgtype,
                       "serialization_format": getattr(c.ext, "serialization_format", "cdr"),
                       "offered_qos_profiles": dump_qos_v9(
                           list(getattr(c.ext, "offered_qos_profiles", []) or [])),
                       "type_description_hash": c.digest, "message_count": c.msgcount}
                      for c in r.connections]
            n = r.message_count
            start, end = (r.start_time, r.end_time - 1) if n else (0, 0)
    except Exception as exc:  # noqa: BLE001 (rosbags/sqlite raise many kinds)
        raise BagError(f"{f}: cannot read the sqlite3 storage ({type(exc).__name__}: {exc})") from None
    if bag.is_dir() and not dry_run:
        write_metadata_yaml(bag, bag_metadata(f.name, "sqlite3", topics, start, end, {}))
    return ReindexResult(bag, f, True, n, {str(t["name"]): int(t["message_count"]) for t in topics},
                         start, end)
