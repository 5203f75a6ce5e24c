"""``tracevla-finetune-vla``: LoRA fine-tuning of a 7B VLA (tracevla-7b, openvla) on sim episodes.

Example (GPU machine; the base checkpoint is a local directory or in the local HF cache)::

    tracevla-finetune-vla --base furonghuang-lab/tracevla_7b --data data/lift data/carrot \\
        --out runs/lora_widowx --steps 5000 --batch-size 16
    torchrun --standalone --nproc_per_node=8 -m tracevla_ros.tools.finetune_vla \\
        --base furonghuang-lab/tracevla_7b --data data/lift --out runs/lora_widowx
    tracevla-serve --backend tracevla-7b --checkpoint furonghuang-lab/tracevla_7b \\
        --adapter runs/lora_widowx

Inputs: directories written by ``tracevla-collect`` (or ``tracevla-dataset``);
``--model tracevla-7b`` also needs their traces (``tracevla-annotate``).
Output: ``OUT/`` with ``adapter_model.safetensors`` + ``adapter_config.json``
(PEFT), ``dataset_statistics.json`` (the action statistics, under
``--unnorm-key``), ``finetune.json``, ``metrics.jsonl`` and ``loss.png``. The
recipe (LoRA r = 32 on every linear layer, AdamW 5e-4, loss on the 7 action
tokens) is documented in ``tracevla_ros/policy/vla/finetune.py``; the loop is
the training core's (``tracetrain``). bf16 autocast on a GPU by default; under
``torchrun`` one process per GPU, the same global batch. Ctrl-C / SIGTERM
stops after the current step and writes ``OUT/train_state.safetensors``
(LoRA weights + optimizer + RNG); ``--resume`` continues from it. No rclpy.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Sequence

from tracevla_ros.cli import (
    ArgParser,
    existing_dir,
    finite_float,
    int_range,
    nonempty_str,
    output_dir,
    run_main,
)

from tracevla_ros.tools.train import prepare_run, run_training

PROG = "tracevla-finetune-vla"
MODEL_CHOICES = ("tracevla-7b", "openvla")  # FINETUNE_MODELS, without importing torch here


def add_vla_training_args(ap: ArgParser, unnorm_key: str) -> None:
    """The options every VLA trainer on the core shares (this one and
    ``tracevla-train-pixelvla``): LoRA, schedule, precision, device, saving, logging."""
    ap.add_argument("--lora-rank", type=int_range(1, 4096), default=32,
                    help="LoRA rank r (OpenVLA: 32)")
    ap.add_argument("--lora-alpha", type=int_range(0, 65536), default=0,
                    help="LoRA alpha (0 = min(rank, 16), OpenVLA's choice)")
    ap.add_argument("--steps", type=int_range(1, 10**9), default=5000, help="optimizer steps")
    ap.add_argument("--batch-size", type=int_range(1, 1 << 16), default=16,
                    help="global batch (split over the processes under torchrun)")
    ap.add_argument("--lr", type=finite_float(gt=0, le=1), default=5e-4,
                    help="constant AdamW learning rate")
    ap.add_argument("--grad-accum", type=int_range(1, 1024), default=1,
                    help="micro-batches per optimizer step (same result, less memory)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                    help="autocast and base weights (auto: bf16 on a GPU that has it, else fp32)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda")
    ap.add_argument("--unnorm-key", type=nonempty_str, default=unnorm_key,
                    help="name of the action statistics in dataset_statistics.json")
    ap.add_argument("--seed", type=int_range(0, 2**31 - 1), default=0,
                    help="data order, prompt draws and initialisation")
    ap.add_argument("--save-every", type=int_range(0), default=500,
                    help="steps per save + resumable state (0 = at the end)")
    ap.add_argument("--log-every", type=int_range(1), default=10,
                    help="optimizer steps per metrics.jsonl line")
    ap.add_argument("--threads", type=int_range(0, 1024), default=0,
                    help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


def training_settings(args: Any) -> dict[str, Any]:
    """The shared options as config keyword arguments (after the device is checked and the
    thread count set)."""
    prepare_run(args.device, args.threads)
    return dict(lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, steps=args.steps,
                batch_size=args.batch_size, lr=args.lr, grad_accum=args.grad_accum,
                precision=args.precision, device=args.device, seed=args.seed,
                unnorm_key=args.unnorm_key, save_every=args.save_every,
                log_every=args.log_every, resume=args.resume)


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--base", type=nonempty_str, required=True,
                    help="base checkpoint: local directory or HF repo id in the local cache "
                         "(never downloaded)")
    ap.add_argument("--model", default="tracevla-7b", choices=MODEL_CHOICES,
                    help="backend whose prompt and images the samples use")
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="dataset directories (tracevla-collect)")
    ap.add_argument("--out", type=output_dir, required=True, help="adapter directory to write")
    add_vla_training_args(ap, "tracevla_finetune")
    return ap


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from tracevla_ros.policy.vla.finetune import FinetuneConfig, check_inputs, finetune

    cfg = FinetuneConfig(base=args.base, data=tuple(str(d) for d in args.data), out=str(args.out),
                         model=args.model, **training_settings(args))
    check_inputs(cfg)  # base files, datasets, traces: before any model is loaded
    code, info = run_training(PROG, finetune, cfg, args.quiet)
    if code == 0:
        print(f"{PROG}: wrote {args.out} ({info['samples']} samples, {info['episodes']} episodes, "
              f"{info['trainable_parameters']} LoRA parameters, {info['train_seconds']} s)")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
