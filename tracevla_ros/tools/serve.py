"""``tracevla-serve``: serve one policy backend over TCP for the ``remote`` backend.

Run it on the GPU machine; the robot computer's policy_node uses
``backend: remote`` with ``server_host``/``server_port``. Example::

    export TRACEVLA_TOKEN=$(openssl rand -hex 16)   # same value on the robot computer
    tracevla-serve --backend tracevla-7b --checkpoint furonghuang-lab/tracevla_7b \\
        --host 0.0.0.0 --port 8765 --token-env TRACEVLA_TOKEN

The token only keeps other clients out; it travels unencrypted, so across an
untrusted network use an SSH tunnel (``ssh -L 8765:127.0.0.1:8765 gpu-host``
and keep the default ``--host 127.0.0.1``) or a VPN.

``--affordance-backend robopoint-hf --affordance-checkpoint DIR`` also (or only)
answers affordance questions for ``affordance_node`` with ``backend: remote``.

``--backend`` takes a registered name (tracevla-7b, tracevla-phi3, openvla) or
``package.module:function``. Binds 127.0.0.1 unless ``--host`` says otherwise
(then use a token, or an SSH tunnel). Prints ``tracevla-serve: serving <name>
on <host>:<port>`` once the model is loaded; SIGINT/SIGTERM/SIGHUP stop it
(the open connections are closed; exit status 128 + the signal). No rclpy here.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from tracevla_ros.cli import (
    ArgParser,
    UsageError,
    finite_float,
    int_range,
    nonempty_str,
    require,
    run_main,
)
from tracevla_ros.policy.config import PolicyNodeConfig
from tracevla_ros.policy.registry import make_policy
from tracevla_ros.policy.remote.protocol import DEFAULT_MAX_FRAME
from tracevla_ros.policy.remote.server import PolicyServer
from tracevla_ros.stopping import StopRequest, install_stop_signals

log = logging.getLogger("tracevla-serve")

PROG = "tracevla-serve"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _parser() -> ArgParser:
    d = PolicyNodeConfig()
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--backend", default="", help="registered policy backend or "
                    "package.module:function ('' = serve only --affordance-backend)")
    ap.add_argument("--affordance-backend", default="", help="also answer affordance questions "
                    "(AFFORD frames) with this backend: robopoint-hf, small or package.module:function")
    ap.add_argument("--affordance-checkpoint", default="", help="local checkpoint of the "
                    "affordance backend (robopoint-hf: an HF-llava directory)")
    ap.add_argument("--checkpoint", default="", help="local checkpoint dir or HF repo id in the "
                    "local cache ('' = the backend's published repo); never downloaded")
    ap.add_argument("--adapter", default="", help="LoRA adapter dir from tracevla-finetune-vla "
                    "(backends openvla, tracevla-7b; '' = none); merged into the weights at load")
    ap.add_argument("--pixelvla-parts", default="", help="backend pixelvla-7b: the "
                    "tracevla-train-pixelvla output dir on top of --checkpoint (OpenVLA)")
    ap.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--unnorm-key", default=d.unnorm_key, help="dataset statistics for the actions")
    ap.add_argument("--host", type=nonempty_str, default="127.0.0.1",
                    help="address to bind (loopback only by default)")
    ap.add_argument("--port", type=int_range(0, 65535), default=d.server_port,
                    help="TCP port (0 = any free port)")
    ap.add_argument("--token-env", default="",
                    help="environment variable holding the shared token ('' = no token)")
    ap.add_argument("--max-frame-mb", type=finite_float(gt=0, le=4096),
                    default=DEFAULT_MAX_FRAME / 2**20, help="largest accepted frame (MiB)")
    ap.add_argument("--log-level", type=str.upper, choices=_LOG_LEVELS, default="INFO",
                    help="logging level")
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    require(bool(args.backend or args.affordance_backend),
            "give --backend (a policy) and/or --affordance-backend (an affordance model)")
    require(args.backend != "remote" and args.affordance_backend != "remote",
            "--backend remote would forward to another server; serve a model backend")
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        require(bool(token), f"--token-env: environment variable '{args.token_env}' is not set "
                "or empty; export it (the same value on the robot computer)")
    elif args.host not in _LOOPBACK:
        log.warning("binding %s without --token-env: anyone who can reach the port can "
                    "query the policy", args.host)
    stop = StopRequest()
    install_stop_signals(stop)  # also while the model loads: checked once it is loaded
    cfg = PolicyNodeConfig(backend=args.backend, checkpoint=args.checkpoint, device=args.device,
                           unnorm_key=args.unnorm_key, adapter=args.adapter,
                           pixelvla_parts=args.pixelvla_parts)
    policy = make_policy(cfg) if args.backend else None
    affordance = None
    if args.affordance_backend:
        from tracevla_ros.affordance.backend import make_backend
        from tracevla_ros.affordance.config import AffordanceNodeConfig

        affordance = make_backend(AffordanceNodeConfig(backend=args.affordance_backend,
                                                       checkpoint=args.affordance_checkpoint,
                                                       device=args.device))
    try:
        server = PolicyServer(policy, args.host, args.port, token,  # type: ignore[arg-type]
                              int(args.max_frame_mb * 2**20), affordance=affordance)
    except OSError as exc:
        raise UsageError(f"--host {args.host} --port {args.port}: cannot listen there "
                         f"({exc.strerror or exc}); choose another port or host") from None
    thread = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    thread.start()
    host, port = server.address
    print(f"{PROG}: serving {server.name} on {host}:{port}", flush=True)
    while not stop:
        time.sleep(0.2)
    log.info("%s: shutting down", stop.reason)
    server.shutdown()
    thread.join(timeout=5.0)
    log.info("stopped after %d requests", server.requests)
    return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
