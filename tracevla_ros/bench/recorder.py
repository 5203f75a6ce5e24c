"""``tracevla-bench recorder``: bag size (MB per minute) and write CPU of the recorder's
MCAP chunk compressions (none, zstd, lz4) on a realistic stream.

The stream is what the sim stack records: the 256x256 rgb8 sim camera (the
expert acting, so the scene moves) at ``--camera-hz``, the LK tracker's traces
at 5 Hz, policy action chunks at 5 Hz and joint states at 50 Hz. It is made
once, then written by ``BagRecorder`` with each compression (flush period 1 s,
1 MiB chunks, fsync off so the disk does not dominate the timing).

    tracevla-bench recorder --seconds 60
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from tracevla_ros.cli import ArgParser, finite_float, require, robot_task

MS = 1_000_000


def make_stream(seconds: float, camera_hz: float, robot: str = "widowx",
                seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, int, bytes]]]:
    """([(topic, msgtype)], [(topic, receive time ns, cdr)]) of ``seconds`` of the sim stack."""
    from tracevla_ros.bag import messages as bm
    from tracevla_ros.sim.env import SimEnv
    from tracevla_ros.sim.experts import ExpertEpisodes
    from tracevla_ros.tracking import IncrementalTracker, TrackerConfig

    env = SimEnv(robot=robot, seed=seed, control_hz=camera_hz)
    expert = ExpertEpisodes(env, seed)
    tracker = IncrementalTracker(TrackerConfig(backend="lk", observe_rate_hz=camera_hz,
                                               control_rate_hz=5.0))
    t0 = 1_700_000_000 * 1_000_000_000
    period = int(round(1e9 / camera_hz))
    frames = int(round(seconds * camera_hz))
    step_every = max(1, int(round(camera_hz / 5.0)))
    out: list[tuple[str, int, bytes]] = [("/instruction", t0 - period,
                                          bm.string_msg(env.instruction)[1])]
    steps: list[int] = []
    for i in range(frames):
        stamp = t0 + i * period
        image = env.render()
        out.append(("/camera/image_raw", stamp + 2 * MS, bm.image_msg(image, stamp)[1]))
        for k in range(int(round(50 / camera_hz))):  # 50 Hz joint states
            js = env.joint_state()
            ts = stamp + k * 20 * MS
            out.append(("/joint_states", ts + 1 * MS, bm.joint_state_msg(js.names, js.position, ts)[1]))
        tracker.observe(image, stamp * 1e-9)
        action = expert.step()  # applied to the sim; the chunk below records it
        if i % step_every == step_every - 1:
            res = tracker.step()
            steps.append(stamp)
            out.append(("/trace", stamp + 30 * MS, bm.visual_trace_msg(
                stamp, res.valid, res.points, res.visible, steps[-len(res.step_stamps):],
                (image.shape[1], image.shape[0]), 5.0)[1]))
            chunk = np.tile(np.asarray(action, np.float32).reshape(1, -1), (4, 1))
            out.append(("/policy/action", stamp + 60 * MS,
                        bm.policy_action_msg(stamp, chunk, "expert", True, 0.03)[1]))
    env.close()
    out.sort(key=lambda m: m[1])
    topics = [("/instruction", bm.STRING), ("/camera/image_raw", bm.IMAGE),
              ("/joint_states", bm.JOINT_STATE), ("/trace", bm.VISUAL_TRACE),
              ("/policy/action", bm.POLICY_ACTION)]
    return topics, out


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench recorder", description=__doc__)
    ap.add_argument("--seconds", type=finite_float(ge=1, le=3600), default=60.0,
                    help="length of the stream (s)")
    ap.add_argument("--camera-hz", type=finite_float(ge=0.5, le=100), default=10.0,
                    help="camera frame rate (Hz)")
    ap.add_argument("--robot", default="widowx", help="sim robot: widowx or fr3")
    ap.add_argument("--compressions", default="none,zstd,lz4",
                    help="comma-separated chunk compressions to measure")
    args = ap.parse_args(argv)
    robot_task(args.robot)
    comps = [c.strip() for c in args.compressions.split(",") if c.strip()]
    require(bool(comps) and set(comps) <= {"none", "zstd", "lz4"},
            f"--compressions '{args.compressions}': give a comma list of none, zstd, lz4")
    from tracevla_ros.bag.writer import BagRecorder

    t = time.perf_counter()
    topics, stream = make_stream(args.seconds, args.camera_hz, args.robot)
    make_s = time.perf_counter() - t
    raw = sum(len(d) for _, _, d in stream)
    minutes = args.seconds / 60.0
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_recorder_") as tmp:
        for comp in args.compressions.split(","):
            path = Path(tmp) / comp
            c0 = time.process_time()
            w0 = time.perf_counter()
            with BagRecorder(path, compression=comp, flush_period_s=1.0, fsync=False) as bag:
                for topic, msgtype in topics:
                    bag.add_topic(topic, msgtype)
                for topic, t_ns, data in stream:
                    bag.write(topic, t_ns, data)
            cpu = time.process_time() - c0
            wall = time.perf_counter() - w0
            size = sum(p.stat().st_size for p in path.iterdir())
            results[comp] = {"bytes": size, "mb_per_min": round(size / 1e6 / minutes, 2),
                             "ratio_vs_raw": round(size / raw, 3),
                             "write_cpu_s_per_min": round(cpu / minutes, 2),
                             "write_wall_s": round(wall, 2)}
    return {
        "benchmark": "recorder",
        "stream": {"seconds": args.seconds, "camera": f"256x256 rgb8 at {args.camera_hz:g} Hz "
                   f"({args.robot} sim, expert acting)", "traces_hz": 5.0, "actions_hz": 5.0,
                   "joint_states_hz": 50.0, "messages": len(stream),
                   "raw_mb_per_min": round(raw / 1e6 / minutes, 2), "make_s": round(make_s, 1)},
        "compressions": results,
        "command": "tracevla-bench recorder " + " ".join(argv),
    }
