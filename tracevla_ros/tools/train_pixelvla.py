"""``tracevla-train-pixelvla``: PixelVLA's two training stages on an OpenVLA checkpoint.

Example (GPU machine; the base is a local directory or in the local HF cache)::

    tracevla-train-pixelvla --base openvla/openvla-7b --data data/demos --stage 1 \\
        --out runs/pixelvla_s1 --steps 5000
    torchrun --standalone --nproc_per_node=8 -m tracevla_ros.tools.train_pixelvla \\
        --base openvla/openvla-7b --data data/demos_prompted --stage 2 \\
        --init runs/pixelvla_s1 --out runs/pixelvla_s2
    tracevla-serve --backend pixelvla-7b --checkpoint openvla/openvla-7b \\
        --pixelvla-parts runs/pixelvla_s2

Stage 1 trains the continuous action head (8 x 7 chunk, L1) with the rest
frozen; stage 2 the prompt encoder, the multiscale pixel encoder, the head and
LoRA r = 32 on the LLM, on episodes with ``prompts.npz`` (format and prompt
sampling: ``tracevla_ros/policy/pixelvla/train.py``). Inputs: ``tracevla-collect``
directories. Output: the parts (``model.safetensors`` + ``config.json``),
``dataset_statistics.json``, in stage 2 the PEFT adapter, ``metrics.jsonl``,
``loss.png``. bf16 autocast on a GPU by default; under ``torchrun`` one
process per GPU, the same global batch. Ctrl-C / SIGTERM stops after the
current step and keeps ``train_state.safetensors``; ``--resume`` continues.
No rclpy.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from tracevla_ros.cli import (
    ArgParser,
    existing_dir,
    finite_float,
    int_range,
    nonempty_str,
    output_dir,
    run_main,
)

PROG = "tracevla-train-pixelvla"


def _parser() -> ArgParser:
    ap = ArgParser(PROG, description=__doc__)
    ap.add_argument("--base", type=nonempty_str, required=True,
                    help="OpenVLA checkpoint: local directory or HF repo id in the local cache "
                         "(never downloaded)")
    ap.add_argument("--data", type=existing_dir, nargs="+", required=True,
                    help="dataset directories (tracevla-collect); stage 2 needs prompts.npz")
    ap.add_argument("--stage", type=int, choices=(1, 2), required=True,
                    help="1: action head only; 2: prompt + pixel encoders, head, LoRA on the LLM")
    ap.add_argument("--out", type=output_dir, required=True, help="output directory to write")
    ap.add_argument("--init", type=existing_dir, default=None,
                    help="stage 2: the stage-1 output to start from (head, statistics)")
    ap.add_argument("--lora-rank", type=int_range(1, 4096), default=32, help="LoRA rank (stage 2)")
    ap.add_argument("--lora-alpha", type=int_range(0, 65536), default=0,
                    help="LoRA alpha (0 = min(rank, 16))")
    ap.add_argument("--steps", type=int_range(1, 10**9), default=5000, help="optimizer steps")
    ap.add_argument("--batch-size", type=int_range(1, 1 << 16), default=16,
                    help="global batch (split over the processes under torchrun)")
    ap.add_argument("--lr", type=finite_float(gt=0, le=1), default=5e-4,
                    help="constant AdamW learning rate")
    ap.add_argument("--grad-accum", type=int_range(1, 1024), default=1,
                    help="micro-batches per optimizer step")
    ap.add_argument("--no-prompt-fraction", type=finite_float(ge=0, lt=1), default=0.1,
                    help="stage 2: share of samples trained without a prompt")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                    help="autocast and base weights (auto: bf16 on a GPU that has it, else fp32)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda")
    ap.add_argument("--unnorm-key", type=nonempty_str, default="pixelvla",
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
    return ap


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    import torch

    from tracetrain.device import resolve_device

    from tracevla_ros.policy.pixelvla.train import PixelTrainConfig, check_inputs, train_pixelvla
    from tracevla_ros.stopping import StopRequest, install_stop_signals

    resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = PixelTrainConfig(base=args.base, data=tuple(str(d) for d in args.data),
                           out=str(args.out), stage=args.stage,
                           init=str(args.init) if args.init else "", lora_rank=args.lora_rank,
                           lora_alpha=args.lora_alpha, steps=args.steps,
                           batch_size=args.batch_size, lr=args.lr, grad_accum=args.grad_accum,
                           precision=args.precision, device=args.device, seed=args.seed,
                           unnorm_key=args.unnorm_key, save_every=args.save_every,
                           log_every=args.log_every, no_prompt_fraction=args.no_prompt_fraction,
                           resume=args.resume)
    check_inputs(cfg)  # base files, datasets, prompts, --init: before any model is loaded
    stop = StopRequest()
    install_stop_signals(stop)
    info = train_pixelvla(cfg, progress=not args.quiet, stop=lambda: stop.reason)
    if info.get("stopped"):
        print(f"{PROG}: stopped ({info['stopped']}) after step {info['step']}; continue with "
              "--resume", file=sys.stderr)
        return stop.exit_code
    print(f"{PROG}: wrote {args.out} (stage {args.stage}, {info['samples']} samples, "
          f"{info['trainable_parameters']} trainable parameters, {info['train_seconds']} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
