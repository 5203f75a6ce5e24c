"""``tracevla-bag``: inspect and recover rosbag2 bags written by recorder_node.

    tracevla-bag reindex /data/run1      # the recorder was killed: recover what it wrote
    tracevla-bag info /data/run1         # topics, message counts, duration
    tracevla-bag info /data/run1 --json

``reindex`` is ``ros2 bag reindex`` for a bag whose recorder died (SIGKILL,
power cut): it keeps every complete MCAP chunk (the recorder writes one at
least every ``flush_period_s``), cuts the unfinished one at the end, appends
the MCAP summary and rewrites metadata.yaml, with the topics' QoS and the
parameter file (custom_data) the recorder stored at the start. A bag that was
closed properly only gets its metadata.yaml rewritten.

Exit codes: 0 done; 2 bad input (no such directory, not a bag, an empty or
unrecoverable file): one line on stderr says why; 128 + signal when stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tracevla_ros.cli import ArgParser, dumps_json, run_main

PROG = "tracevla-bag"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    ap = ArgParser(PROG, description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND",
                            parser_class=ArgParser)
    p = sub.add_parser("reindex", help="recover a bag whose recorder was killed (repair the MCAP, "
                       "rewrite metadata.yaml)", description="Recover a bag whose recorder was "
                       "killed: keep every complete chunk, rewrite metadata.yaml.")
    p.add_argument("bag", type=Path, help="rosbag2 directory (or a bare .mcap file, repaired alone)")
    p.add_argument("--dry-run", action="store_true",
                   help="only report what would be recovered; change nothing")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p = sub.add_parser("info", help="topics, message counts and duration of a bag",
                       description="Topics, message counts and duration of a bag (also of one "
                       "that was not closed: it is scanned, not changed).")
    p.add_argument("bag", type=Path, help="rosbag2 directory or .mcap / .db3 file")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return ap.parse_args(argv)


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(dumps_json(result, indent=None))
        return
    for key in ("bag", "storage", "state", "messages", "duration_s", "start_ns"):
        if key in result:
            print(f"{key + ':':<13}{result[key]}")
    print("topics:")
    for name, t in result["topics"].items():
        print(f"  {name}  {t['type']}  {t['count']} msgs")
    if result.get("custom_data_keys"):
        print(f"{'custom_data:':<13}{', '.join(result['custom_data_keys'])}")


def _info(bag: Path) -> dict[str, Any]:
    from tracevla_ros.bag.reader import BagReader
    from tracevla_ros.bag.reindex import needs_reindex, reindex
    from tracevla_ros.bag.writer import BagError

    if not bag.exists():
        raise BagError(f"{bag}: no such bag")
    if needs_reindex(bag):
        r = reindex(bag, dry_run=True)
        from tracevla_ros.bag.mcap_io import scan

        idx = scan(r.storage_file).index
        types = {ch.topic: idx.schemas[ch.schema_id].name if ch.schema_id in idx.schemas else ""
                 for ch in idx.channels.values()}
        return {"bag": str(bag), "storage": "mcap",
                "state": "not closed (the recorder was killed?): run tracevla-bag reindex",
                "messages": r.message_count, "start_ns": r.start_ns,
                "duration_s": round((r.end_ns - r.start_ns) * 1e-9, 3) if r.message_count else 0.0,
                "topics": {k: {"type": types.get(k, ""), "count": n} for k, n in r.topics.items()},
                "custom_data_keys": sorted(r.custom_data)}
    with BagReader(bag) as b:
        return {"bag": str(bag), "storage": b.storage, "state": "complete",
                "messages": b.message_count, "start_ns": b.start_ns,
                "duration_s": round((b.end_ns - b.start_ns) * 1e-9, 3) if b.message_count else 0.0,
                "topics": {t.name: {"type": t.msgtype, "count": t.count}
                           for t in sorted(b.topics.values(), key=lambda t: t.name)},
                "custom_data_keys": sorted(b.custom_data)}


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    from tracevla_ros.bag.reindex import reindex

    if args.command == "info":  # BagError: one line, exit 2
        _print(_info(args.bag), args.json)
        return 0
    r = reindex(args.bag, dry_run=args.dry_run)
    if args.json:
        print(dumps_json({"bag": str(r.path), "storage_file": str(r.storage_file),
                          "was_complete": r.was_complete, "messages": r.message_count,
                          "topics": r.topics, "start_ns": r.start_ns, "end_ns": r.end_ns,
                          "lost_bytes": r.lost_bytes, "custom_data_keys": sorted(r.custom_data),
                          "dry_run": args.dry_run}, indent=None))
    else:
        print(("would recover " if args.dry_run else "reindexed ") + r.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
