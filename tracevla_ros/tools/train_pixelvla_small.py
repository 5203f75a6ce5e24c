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

import sys
from typing import Sequence

from tracevla_ros.cli import ArgParser, existing_dir, finite_float, int_range, output_dir, run_main

from tracevla_ros.tools.train import (
    add_epoch_args,
    add_run_args,
    parse_epoch_args,
    prepare_run,
    report_epochs,
    run_training,
)

PROG = "tracevla-train-pixelvla-small"


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="dataset directories (tracevla-collect --masks)")
    ap.add_argument("--out", type=output_dir, required=True, help="checkpoint directory to write")
    ap.add_argument("--decoder", choices=("continuous", "discrete"), default="continuous",
                    help="continuous chunk (L1) or 256-bin discrete chunk (soft CE)")
    ap.add_argument("--chunk", type=int_range(1, 64), default=8, help="actions per prediction")
    add_epoch_args(ap, 8, "model initialisation, data order, prompt draws and shifts")
    ap.add_argument("--prompt-dropout", type=finite_float(ge=0, le=1), default=0.3,
                    help="probability of training a sample without its prompt")
    add_run_args(ap)
    return ap


def _main(argv: Sequence[str] | None) -> int:
    args = parse_epoch_args(_parser(), argv)
    from tracevla_ros.policy.pixelvla_small.train import PixelTrainConfig, train

    prepare_run(args.device, args.threads)
    cfg = PixelTrainConfig(data=tuple(str(d) for d in args.data), out=str(args.out),
                           decoder=args.decoder, chunk=args.chunk, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           prompt_dropout=args.prompt_dropout, image_size=args.image_size,
                           device=args.device, max_steps=args.max_steps, resume=args.resume,
                           log_every=args.log_every)
    code, info = run_training(PROG, train, cfg, args.quiet)
    if code == 0:
        report_epochs(PROG, args.out, info)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
