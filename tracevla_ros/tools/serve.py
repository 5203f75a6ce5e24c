"""``tracevla-serve``: serve one policy backend over TCP for the ``remote`` backend.

Run it on the GPU machine; the robot computer's policy_node uses
``backend: remote`` with ``server_host``/``server_port``. Example::

    export TRACEVLA_TOKEN=$(openssl rand -hex 16)   # same value on the robot computer
    tracevla-serve --backend tracevla-7b --checkpoint furonghuang-lab/tracevla_7b \\
        --host 0.0.0.0 --port 8765 --token-env TRACEVLA_TOKEN

The token only keeps other clients out; it travels unencrypted, so across an
untrusted network use an SSH tunnel (``ssh -L 8765:127.0.0.1:8765 gpu-host``
and keep the default ``--host 127.0.0.1``) or a VPN.

``--backend`` takes a registered name (tracevla-7b, tracevla-phi3, openvla) or
``package.module:function``. Binds 127.0.0.1 unless ``--host`` says otherwise
(then use a token, or an SSH tunnel). Prints ``tracevla-serve: serving <name>
on <host>:<port>`` once the model is loaded; SIGINT/SIGTERM stop it cleanly.
No rclpy here.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from tracevla_ros.config import ConfigError
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.registry import make_policy
from tracevla_ros.policy.remote.protocol import DEFAULT_MAX_FRAME
from tracevla_ros.policy.remote.server import PolicyServer

log = logging.getLogger("tracevla-serve")

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _parser() -> argparse.ArgumentParser:
    d = PolicyNodeConfig()
    ap = argparse.ArgumentParser(prog="tracevla-serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", required=True, help="registered backend or package.module:function")
    ap.add_argument("--checkpoint", default="", help="local checkpoint dir or HF repo id in the "
                    "local cache (empty: the backend's published repo); never downloaded")
    ap.add_argument("--adapter", default="", help="LoRA adapter dir from tracevla-finetune-vla "
                    "(backends openvla, tracevla-7b); merged into the weights at load")
    ap.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--unnorm-key", default=d.unnorm_key, help="dataset statistics for the actions")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    ap.add_argument("--port", type=int, default=d.server_port, help="TCP port (0 = any free port)")
    ap.add_argument("--token-env", default="", help="environment variable holding the shared token")
    ap.add_argument("--max-frame-mb", type=float, default=DEFAULT_MAX_FRAME / 2**20,
                    help="largest accepted frame (MiB)")
    ap.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        if args.backend == "remote":
            raise ConfigError("--backend remote would forward to another server; serve a model")
        token = None
        if args.token_env:
            token = os.environ.get(args.token_env, "")
            if not token:
                raise ConfigError(f"--token-env: environment variable '{args.token_env}' is not "
                                  "set or empty")
        elif args.host not in _LOOPBACK:
            log.warning("binding %s without --token-env: anyone who can reach the port can "
                        "query the policy", args.host)
        cfg = PolicyNodeConfig(backend=args.backend, checkpoint=args.checkpoint, device=args.device,
                               unnorm_key=args.unnorm_key, adapter=args.adapter)
        policy = make_policy(cfg)
        server = PolicyServer(policy, args.host, args.port, token, int(args.max_frame_mb * 2**20))
    except (ConfigError, OSError) as exc:
        print(f"tracevla-serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    host, port = server.address
    print(f"tracevla-serve: serving {policy.name} on {host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    thread.join(timeout=5.0)
    log.info("stopped after %d requests", server.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
