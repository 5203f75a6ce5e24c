"""``tracevla-train``: train the small trace-prompted policy (backend ``local``) on sim episodes.

Example (the shipped checkpoints; see README "Local policy" for the data commands)::

    tracevla-train --data data/lift data/push data/carrot --out ckpt/widowx_trace
    tracevla-train --data data/lift data/push data/carrot --out ckpt/widowx_notrace --no-trace

Inputs: directories written by ``tracevla-collect`` and annotated by
``tracevla-annotate`` (``--no-trace`` needs no annotation). Output: ``CKPT/``
with ``config.json`` + ``model.safetensors`` (load with the ``local`` backend:
``policy_node`` parameter ``checkpoint: CKPT``), ``train_log.jsonl`` (one line
per epoch) and ``loss_curve.png``. CPU by default, the GPU when one is present
(``--device``). The recipe (trace dropout alpha = 0.25, 256-bin soft
cross-entropy, AdamW + cosine, shift augmentation) is documented in
``tracevla_ros/policy/local/train.py``. ``--resume`` continues an interrupted
run from its last finished epoch (``CKPT/resume/``, removed when a run ends).
No rclpy.
"""

from __future__ import annotations

import argparse
import logging
import sys

from tracevla_ros.sim.dataset import DatasetError
from tracevla_ros.tracking.offline import TraceFileError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tracevla-train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="dataset directories (tracevla-collect)")
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--no-trace", action="store_true",
                    help="baseline: the same network with the no-trace form always")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trace-dropout", type=float, default=0.25, help="alpha")
    ap.add_argument("--image-size", type=int, default=96, help="model image side (px, multiple of 16)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0 = torch's default, i.e. OMP_NUM_THREADS)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = all)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.epochs < 1 or args.batch_size < 1:
        print("tracevla-train: --epochs and --batch-size must be >= 1", file=sys.stderr)
        return 2
    if not 0.0 <= args.trace_dropout <= 1.0:
        print("tracevla-train: --trace-dropout must be in [0, 1]", file=sys.stderr)
        return 2
    import torch

    from tracevla_ros.policy.local.train import TrainConfig, train

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(data=tuple(args.data), out=args.out, no_trace=args.no_trace,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      trace_dropout=args.trace_dropout, image_size=args.image_size,
                      device=args.device, max_steps=args.max_steps, resume=args.resume)
    try:
        info = train(cfg, progress=not args.quiet)
    except (DatasetError, TraceFileError, FileNotFoundError, ValueError) as exc:
        print(f"tracevla-train: {exc}", file=sys.stderr)
        return 2
    last = info["history"][-1] if info["history"] else {}
    print(f"tracevla-train: wrote {args.out} ({info['samples']} samples, {info['episodes']} "
          f"episodes, {info['train_seconds']} s, last epoch {last})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
