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
    nonempty_str,
    output_dir,
    run_main,
)
from tracevla_ros.tools.finetune_vla import add_vla_training_args, training_settings
from tracevla_ros.tools.train import run_training

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
    ap.add_argument("--no-prompt-fraction", type=finite_float(ge=0, lt=1), default=0.1,
                    help="stage 2: share of samples trained without a prompt")
    add_vla_training_args(ap, "pixelvla")
    return ap


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from tracevla_ros.policy.pixelvla.train import PixelTrainConfig, check_inputs, train_pixelvla

    cfg = PixelTrainConfig(base=args.base, data=tuple(str(d) for d in args.data),
                           out=str(args.out), stage=args.stage,
                           init=str(args.init) if args.init else "",
                           no_prompt_fraction=args.no_prompt_fraction, **training_settings(args))
    check_inputs(cfg)  # base files, datasets, prompts, --init: before any model is loaded
    code, info = run_training(PROG, train_pixelvla, cfg, args.quiet)
    if code == 0:
        print(f"{PROG}: wrote {args.out} (stage {args.stage}, {info['samples']} samples, "
              f"{info['trainable_parameters']} trainable parameters, {info['train_seconds']} s)")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
