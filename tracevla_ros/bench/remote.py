"""``tracevla-bench remote``: round-trip latency of the remote backend over loopback.

Example::

    tracevla-bench remote --requests 300 --size 256

Starts ``tracevla-serve`` as a subprocess with the no-motion backend
(``tracevla_ros.policy.remote.hold:make_hold_policy``), then times
``RemotePolicy.infer`` for a two-image request (frame + overlay, (S, S, 3)
uint8 each) from this process: the protocol, the sockets and both processes,
without any model time. Reports p50/p95/max in ms after ``--warmup`` requests.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time

import numpy as np

from tracevla_ros.cli import ArgParser, int_range

from tracevla_ros.policy.base import Observation
from tracevla_ros.policy.remote.client import RemotePolicy

HOLD = "tracevla_ros.policy.remote.hold:make_hold_policy"


def _start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "tracevla_ros.tools.serve", "--backend", HOLD,
                             "--port", "0", "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    end = time.monotonic() + 30.0
    while time.monotonic() < end and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if "serving" in line:
                return proc, int(line.rsplit(":", 1)[1])
    proc.kill()
    raise RuntimeError("tracevla-serve did not start")


def main(argv: list[str]) -> dict:
    ap = ArgParser("tracevla-bench remote", description=__doc__)
    ap.add_argument("--requests", type=int_range(1, 1_000_000), default=300,
                    help="timed requests")
    ap.add_argument("--warmup", type=int_range(0, 100_000), default=20,
                    help="untimed requests first")
    ap.add_argument("--size", type=int_range(16, 4096), default=256,
                    help="image side (px), two images per request")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    obs = Observation(image=img, overlay=img.copy(), instruction="put the carrot on the plate",
                      proprio=np.zeros(7, np.float32))
    proc, port = _start_server()
    try:
        client = RemotePolicy("127.0.0.1", port, timeout_s=5.0)
        for _ in range(args.warmup):
            client.infer(obs)
        ms = np.empty(args.requests)
        for i in range(args.requests):
            t0 = time.perf_counter()
            client.infer(obs)
            ms[i] = (time.perf_counter() - t0) * 1e3
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    return {"benchmark": "remote", "transport": "tcp loopback", "backend": "hold",
            "image_size": args.size, "images_per_request": 2,
            "request_bytes": int(2 * img.nbytes), "requests": args.requests,
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "max_ms": round(float(ms.max()), 3), "mean_ms": round(float(ms.mean()), 3)}
