"""``tracevla-replay BAG --out DIR``: run the tracker and the policy over a recorded bag.

    tracevla-replay /tmp/demo/bag --out /tmp/replay
    tracevla-replay robot_bag --out r --policy local --instruction "put the carrot on the plate"
    tracevla-replay robot_bag --out r --image-topic /cam/color/image_raw/compressed --speed 1

Reads rosbag2 bags (directory with metadata.yaml, sqlite3 or MCAP; or a bare
.mcap/.db3 file) recorded on a robot, by ``recorder_node`` or by
``tracevla-demo``: camera images (raw or compressed), the instruction and,
when present, joint states, the tracker's traces and the policy's actions.
Topics are found by message type (flags override). The tracker runs with the
recorded run's parameters (see ``tracevla_ros.replay.config``), at the frames
the recorded tracker stepped at; the policy acts where the recorded one did.

Writes ``DIR/report.json`` (steps, trace validity ratio, latency p50/p95 per
stage, trace and action agreement with the recording, whether the recording
was reproduced), ``DIR/overlay.mp4``, ``DIR/actions.png`` (replayed vs
recorded actions) and ``DIR/latency.png``.

Exit codes: 0 done; 1 nothing to report (no tracker step, the policy never
called or every call failed: report.json says so, "complete": false); 2 the
bag, an option or the configuration is unusable (one line on stderr says why;
a report written before a mid-bag failure is kept and marked incomplete);
128 + signal when stopped by SIGINT/SIGTERM/SIGHUP (130/143; the partial
report is kept, marked incomplete).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tracevla_ros.cli import (
    ArgParser,
    UsageError,
    dumps_json,
    existing_file,
    finite_float,
    nonempty_str,
    output_dir,
    run_main,
)
from tracevla_ros.replay.config import ReplayOptions, parse_overrides
from tracevla_ros.stopping import StopRequest, install_stop_signals

PROG = "tracevla-replay"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = ArgParser(PROG, description=__doc__.split("\n\n")[0],
                   epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("bag", type=Path, help="rosbag2 directory (or a .mcap / .db3 file)")
    ap.add_argument("--out", type=output_dir, required=True, help="output directory (created)")
    g = ap.add_argument_group("topics (default: detected by message type)")
    for role, what in (("image", "camera image (sensor_msgs/Image or CompressedImage)"),
                       ("instruction", "instruction (std_msgs/String)"),
                       ("joint-states", "joint states (sensor_msgs/JointState)"),
                       ("action", "recorded actions (tracevla_ros/PolicyAction)"),
                       ("trace", "recorded traces (tracevla_ros/VisualTrace)"),
                       ("prompt", "visual prompts given to the policy (tracevla_ros/VisualPrompt; "
                                  "held as policy_node holds them)")):
        g.add_argument(f"--{role}-topic", default="", metavar="TOPIC", help=what)
    g = ap.add_argument_group("configuration")
    g.add_argument("--config", type=existing_file, default=None,
                   help="ROS 2 parameter file (default: stored in the bag, params.yaml beside "
                        "it, else config/<robot>.yaml)")
    g.add_argument("--robot", choices=("widowx", "fr3"), default="",
                   help="robot whose config/<robot>.yaml to use (default: from the bag)")
    g.add_argument("--tracker-param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one tracker_node parameter (repeatable), e.g. lk_window=15")
    g.add_argument("--policy", type=nonempty_str, default="auto",
                   help="auto (the recorded one if it runs offline), none (tracker only), a "
                        "registered backend (e.g. local) or module:function")
    g.add_argument("--checkpoint", default=None,
                   help="checkpoint for learned backends (default: the recorded run's)")
    g.add_argument("--device", default=None,
                   help="torch device: auto, cpu, cuda (default: the recorded run's)")
    g.add_argument("--instruction", type=nonempty_str, default=None,
                   help="instruction to use instead of the recorded one (default: recorded)")
    g = ap.add_argument_group("replay")
    g.add_argument("--schedule", choices=("auto", "recorded", "timer"), default="auto",
                   help="tracker steps: at the recorded traces' frames, or by tracker_node's own "
                        "per-frame schedule ('timer'; auto: recorded when the bag has traces)")
    g.add_argument("--act-at", choices=("auto", "recorded", "steps"), default="auto",
                   help="policy calls: at the recorded actions' frames, or every tracker step "
                        "(auto: recorded when the bag has actions)")
    g.add_argument("--speed", type=finite_float(ge=0), default=0.0,
                   help="0 = as fast as possible (default); 1 = the recorded rate; 2 = twice")
    g.add_argument("--action-tol", type=finite_float(ge=0), default=1e-5,
                   help="max abs action difference that counts as reproduced")
    g.add_argument("--no-video", action="store_true", help="do not write overlay.mp4")
    g.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    from tracevla_ros.replay.run import REPORT, ReplayError, replay

    opts = ReplayOptions(
        bag=args.bag, out=args.out,
        topics={"image": args.image_topic, "instruction": args.instruction_topic,
                "joint_states": args.joint_states_topic, "action": args.action_topic,
                "trace": args.trace_topic, "prompt": args.prompt_topic},
        config=args.config, robot=args.robot,
        tracker_overrides=parse_overrides(args.tracker_param),
        policy=args.policy, checkpoint=args.checkpoint, device=args.device,
        instruction=args.instruction, schedule=args.schedule, act_at=args.act_at,
        speed=args.speed, action_tol=args.action_tol, video=not args.no_video,
        plots=not args.no_plots, progress=not args.quiet)
    # a stop signal ends the stream where it is; report.json is then written, marked
    # incomplete, and the exit status is 128 + the signal
    install_stop_signals(StopRequest(), interrupt=True)
    try:
        report = replay(opts)  # BagError/ConfigError: one line, exit 2
    except ReplayError as exc:  # the bag cannot give what the options ask for
        raise UsageError(str(exc)) from None
    keys = ("frames", "steps", "trace_valid_ratio", "real_time_factor", "reproduced", "complete")
    print(dumps_json({k: report.get(k) for k in keys}, indent=None))
    if not report.get("complete", False):
        print(f"{PROG}: error: {report.get('error')}; see {args.out / REPORT}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
