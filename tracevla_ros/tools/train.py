"""``tracevla-train``: train the small trace-prompted policy (backend ``local``) on sim episodes.

Example (the shipped checkpoints; see README "Local policy" for the data commands)::

    tracevla-train --data data/lift data/push data/carrot --out ckpt/widowx_trace
    tracevla-train --data data/lift data/push data/carrot --out ckpt/widowx_notrace --no-trace
    torchrun --standalone --nproc_per_node=2 -m tracevla_ros.tools.train --data ... --out ...

Inputs: directories written by ``tracevla-collect`` and annotated by
``tracevla-annotate`` (``--no-trace`` needs no annotation). Output: ``CKPT/``
with ``config.json`` + ``model.safetensors`` (load with the ``local`` backend:
``policy_node`` parameter ``checkpoint: CKPT``), ``metrics.jsonl`` (one line per
``--log-every`` steps, validation at each epoch end) and ``loss.png``. CPU by
default, the GPU when one is present (``--device``); under ``torchrun`` one
process per GPU (or CPU slot), the same global batch. The recipe (trace dropout
alpha = 0.25, 256-bin soft cross-entropy, AdamW + cosine, shift augmentation) is
documented in ``tracevla_ros/policy/local/train.py``; the loop is the training
core's (``tracetrain``). Ctrl-C / SIGTERM stops after the current step and
writes ``CKPT/train_state.safetensors``; ``--resume`` continues from it (also
after a crash: the state of the last finished epoch). No rclpy.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Sequence

from tracevla_ros.cli import ArgParser, existing_dir, finite_float, int_range, output_dir, run_main

PROG = "tracevla-train"


def add_run_args(ap: ArgParser) -> None:
    """The run options of the small policies' trainers (this one and
    ``tracevla-train-pixelvla-small``): device, threads, step limit, logging, resume."""
    ap.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda")
    ap.add_argument("--threads", type=int_range(0, 1024), default=0,
                    help="torch CPU threads (0 = torch's default, i.e. OMP_NUM_THREADS)")
    ap.add_argument("--max-steps", type=int_range(0), default=0,
                    help="stop after this many steps (0 = all)")
    ap.add_argument("--log-every", type=int_range(1), default=10,
                    help="optimizer steps per metrics.jsonl line")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


def add_epoch_args(ap: ArgParser, epochs: int, seed_help: str) -> None:
    """The schedule options of the small policies' trainers: epochs, batch, lr, seed and
    the model's image side (checked to be a multiple of 16 by :func:`parse_epoch_args`)."""
    ap.add_argument("--epochs", type=int_range(1, 100000), default=epochs,
                    help="passes over the training samples")
    ap.add_argument("--batch-size", type=int_range(1, 1 << 20), default=64,
                    help="global batch (split over the processes under torchrun)")
    ap.add_argument("--lr", type=finite_float(gt=0, le=10), default=1e-3, help="peak AdamW lr")
    ap.add_argument("--seed", type=int_range(0, 2**31 - 1), default=0, help=seed_help)
    ap.add_argument("--image-size", type=int_range(16, 1024), default=96,
                    help="model image side (px, multiple of 16)")


def parse_epoch_args(ap: ArgParser, argv: Sequence[str] | None) -> Any:
    """Parse (one-line error for an image side that is not a multiple of 16) and set up
    logging."""
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.image_size % 16:
        ap.error(f"argument --image-size: {args.image_size} is not a multiple of 16")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    return args


def prepare_run(device: str, threads: int) -> None:
    """Check the device (an unknown or absent one fails before any data is read) and set
    the torch thread count (0 = leave torch's default)."""
    import torch

    from tracetrain.device import resolve_device

    resolve_device(device)
    if threads > 0:
        torch.set_num_threads(threads)


def run_training(prog: str, train: Callable[..., dict[str, Any]], cfg: Any, quiet: bool
                 ) -> tuple[int, dict[str, Any]]:
    """Run ``train(cfg, progress, stop)`` with the stop signals wired; (exit status, info).
    A stop prints how to continue and returns 128 + the signal."""
    from tracevla_ros.stopping import StopRequest, install_stop_signals

    stop = StopRequest()
    install_stop_signals(stop)
    info = train(cfg, progress=not quiet, stop=lambda: stop.reason)
    if info.get("stopped"):
        print(f"{prog}: stopped ({info['stopped']}) after step {info['step']}; continue with "
              "--resume", file=sys.stderr)
        return stop.exit_code, info
    return 0, info


def report_epochs(prog: str, out: Any, info: dict[str, Any]) -> None:
    """The one line a finished run of an epoch-based trainer prints."""
    last = info["history"][-1] if info["history"] else {}
    print(f"{prog}: wrote {out} ({info['samples']} samples, {info['episodes']} "
          f"episodes, {info['train_seconds']} s, last epoch {last})")


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="dataset directories (tracevla-collect)")
    ap.add_argument("--out", type=output_dir, required=True, help="checkpoint directory to write")
    ap.add_argument("--no-trace", action="store_true",
                    help="baseline: the same network with the no-trace form always")
    add_epoch_args(ap, 12, "model initialisation, data order, dropout and shifts")
    ap.add_argument("--trace-dropout", type=finite_float(ge=0, le=1), default=0.25, help="alpha")
    ap.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16"),
                    help="autocast (auto: bf16 on a GPU that has it, else fp32)")
    ap.add_argument("--grad-accum", type=int_range(1, 1024), default=1,
                    help="micro-batches per optimizer step (same result, less memory)")
    add_run_args(ap)
    return ap


def _main(argv: Sequence[str] | None) -> int:
    args = parse_epoch_args(_parser(), argv)
    from tracevla_ros.policy.local.train import TrainConfig, train

    prepare_run(args.device, args.threads)
    cfg = TrainConfig(data=tuple(str(d) for d in args.data), out=str(args.out),
                      no_trace=args.no_trace, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, seed=args.seed, trace_dropout=args.trace_dropout,
                      image_size=args.image_size, device=args.device, max_steps=args.max_steps,
                      resume=args.resume, log_every=args.log_every, grad_accum=args.grad_accum,
                      precision=args.precision)
    code, info = run_training(PROG, train, cfg, args.quiet)
    if code == 0:
        report_epochs(PROG, args.out, info)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
