"""``tracevla-train-pixelvla-small``: train the small PixelVLA (backend ``pixelvla``) on sim episodes.

Example (the README's experiment)::

    python -m tracevla_ros.tools.train_pixelvla_small --data data/px/* --out ck/pixelvla --threads 1
    python -m tracevla_ros.tools.train_pixelvla_small --data data/px/* --out ck/pixelvla_discrete \
        --decoder discrete --threads 1

Inputs: ``tracevla-collect --masks`` directories. Output: ``CKPT/config.json`` +
``model.safetensors`` (``policy_node`` backend ``pixelvla``, parameter ``checkpoint``),
``metrics.jsonl``, ``loss.png``. The recipe (prompt kinds and dropout, chunk labels,
L1 or 256-bin loss) is in ``tracevla_ros/policy/pixelvla_small/train.py``; the loop is
the training core's (``tracetrain``). Ctrl-C / SIGTERM stops after the current step;
``--resume`` continues. No rclpy.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from tracevla_ros.cli import ArgParser, existing_dir, finite_float, int_range, output_dir, run_main

PROG = "tracevla-train-pixelvla-small"


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="dataset directories (tracevla-collect --masks)")
    ap.add_argument("--out", type=output_dir, required=True, help="checkpoint directory to write")
    ap.add_argument("--decoder", choices=("continuous", "discrete"), default="continuous",
                    help="continuous chunk (L1) or 256-bin discrete chunk (soft CE)")
    ap.add_argument("--chunk", type=int_range(1, 64), default=8, help="actions per prediction")
    ap.add_argument("--epochs", type=int_range(1, 100000), default=8)
    ap.add_argument("--batch-size", type=int_range(1, 1 << 20), default=64)
    ap.add_argument("--lr", type=finite_float(gt=0, le=10), default=1e-3, help="peak AdamW lr")
    ap.add_argument("--seed", type=int_range(0, 2**31 - 1), default=0)
    ap.add_argument("--prompt-dropout", type=finite_float(ge=0, le=1), default=0.3,
                    help="probability of training a sample without its prompt")
    ap.add_argument("--image-size", type=int_range(16, 1024), default=96,
                    help="model image side (px, multiple of 16)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda")
    ap.add_argument("--threads", type=int_range(0, 1024), default=0,
                    help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--max-steps", type=int_range(0), default=0,
                    help="stop after this many steps (0 = all)")
    ap.add_argument("--log-every", type=int_range(1), default=10,
                    help="optimizer steps per metrics.jsonl line")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.image_size % 16:
        _parser().error(f"argument --image-size: {args.image_size} is not a multiple of 16")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    import torch

    from tracetrain.device import resolve_device

    from tracevla_ros.policy.pixelvla_small.train import PixelTrainConfig, train
    from tracevla_ros.stopping import StopRequest, install_stop_signals

    resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = PixelTrainConfig(data=tuple(str(d) for d in args.data), out=str(args.out),
                           decoder=args.decoder, chunk=args.chunk, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           prompt_dropout=args.prompt_dropout, image_size=args.image_size,
                           device=args.device, max_steps=args.max_steps, resume=args.resume,
                           log_every=args.log_every)
    stop = StopRequest()
    install_stop_signals(stop)
    info = train(cfg, progress=not args.quiet, stop=lambda: stop.reason)
    if info.get("stopped"):
        print(f"{PROG}: stopped ({info['stopped']}) after step {info['step']}; continue with "
              f"--resume", file=sys.stderr)
        return stop.exit_code
    last = info["history"][-1] if info["history"] else {}
    print(f"{PROG}: wrote {args.out} ({info['samples']} samples, {info['episodes']} "
          f"episodes, {info['train_seconds']} s, last epoch {last})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
