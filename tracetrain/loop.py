"""The one training loop: every trainer supplies a model and a :class:`TrainTask`.

    with distributed(opts.device) as (dist, device):
        seed_everything(opts.seed)
        model = MyNet(cfg).to(device)
        result = Trainer(settings, MyTask(...), model, dist, device).run(stop=lambda: stop.reason)

What the loop owns (the same for every model family):

* AdamW over the trainable parameters; the LR schedule from torch's schedulers
  (``LinearLR`` warm-up from lr / warmup to lr, then ``CosineAnnealingLR`` down
  to ``min_lr_ratio * lr``, joined by ``SequentialLR``);
* EMA of the weights with ``torch.optim.swa_utils.AveragedModel`` (optionally
  with the usual warm-up decay ``min(decay, (1 + n) / (10 + n))``);
* gradient accumulation (``grad_accum`` micro-batches per optimizer step),
  gradient clipping, mixed precision where the device supports it (autocast;
  a GradScaler for fp16);
* DDP under ``torchrun`` (``tracetrain.distributed``): every rank builds the same
  global batch plan and computes its rows; rank 0 logs, evaluates and saves;
* ``metrics.jsonl`` (one line per log interval: step, mean loss, lr, seconds,
  and the task's evaluation at saves), ``loss.png``, a tqdm bar on rank 0;
* a resumable state in ``OUT/train_state.safetensors`` (one file, written
  atomically): raw weights, optimizer, EMA, GradScaler, every RNG and the
  task's data position; the scheduler is rebuilt and stepped to the saved step.
  Resuming continues exactly (same losses and weights as an uninterrupted
  run), also with another number of processes;
* stopping: ``stop()`` is polled after every step (on every rank); a stop saves
  the resumable state and returns ``TrainResult.stopped``.

The task decides the data and the loss (:class:`TrainTask`).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sized

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from torch.optim.swa_utils import AveragedModel

from tracetrain.checkpoint import write_atomic
from tracetrain.device import PRECISIONS, autocast, autocast_dtype
from tracetrain.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shard_rows
from tracetrain.errors import CheckpointError, DivergedError, SettingsError
from tracetrain.metrics import METRICS_FILE, PLOT_FILE, append_metrics, plot_metrics, truncate_metrics
from tracetrain.seed import rng_state, set_rng_state

__all__ = ["TrainSettings", "TrainTask", "SaveContext", "TrainResult", "Trainer", "STATE_FILE",
           "build_schedule", "ema_avg_fn", "distributed", "RESUME_MODES"]

STATE_FILE = "train_state.safetensors"
STATE_FORMAT = "tracetrain/train_state/v1"
RESUME_MODES = ("never", "auto", "must")


@dataclass(frozen=True)
class TrainSettings:
    """What the loop needs; validated once (SettingsError names the setting)."""

    out: Path  # directory: checkpoint (by the task), metrics.jsonl, loss.png, train state
    steps: int  # total optimizer steps
    lr: float  # peak learning rate (AdamW)
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from lr / warmup_steps
    min_lr_ratio: float = 0.0  # the cosine ends at this fraction of lr
    grad_clip: float = 1.0  # max gradient norm (0 = no clipping)
    grad_accum: int = 1  # micro-batches per optimizer step
    ema_decay: float = 0.0  # 0 = no EMA
    ema_warmup: bool = True  # decay min(ema_decay, (1 + n) / (10 + n)) over the first updates
    precision: str = "fp32"  # auto | fp32 | bf16 | fp16 (autocast)
    log_every: int = 10  # steps per metrics.jsonl line
    save_every: int = 0  # steps per evaluation + checkpoint + train state (0 = at the end)
    resume: str = "never"  # never | auto (when OUT has a train state) | must
    keep_state: bool = True  # keep OUT/train_state.safetensors after the last step
    progress: bool = True
    desc: str = "train"
    loss_label: str = "loss"  # y-axis of loss.png
    find_unused_parameters: bool = False  # DDP: models with parameters a step may not use

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise SettingsError(f"training setting '{key}' {what}, got "
                                    f"{getattr(self, key)!r}")

        need(isinstance(self.steps, int) and self.steps >= 1, "steps", "must be an integer >= 1")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "must be a finite number > 0")
        need(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             "must be finite and >= 0")
        need(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        need(math.isfinite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1, "min_lr_ratio",
             "must be in [0, 1]")
        need(math.isfinite(self.grad_clip) and self.grad_clip >= 0, "grad_clip",
             "must be finite and >= 0 (0 = off)")
        need(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        need(math.isfinite(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay",
             "must be in [0, 1) (0 = off)")
        need(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}")
        need(self.log_every >= 1, "log_every", "must be >= 1")
        need(self.save_every >= 0, "save_every", "must be >= 0 (0 = at the end)")
        need(self.resume in RESUME_MODES, "resume", f"must be one of {RESUME_MODES}")


@dataclass
class SaveContext:
    """What :meth:`TrainTask.on_save` gets (rank 0 only)."""

    step: int
    final: bool  # the last step (or a stop)
    stopped: str  # why the run stops here ("" = it does not)
    model: nn.Module  # the raw weights (not the DDP wrapper)
    ema_model: nn.Module | None  # the EMA weights, when ema_decay > 0
    train_loss: float | None  # mean training loss over the steps since the previous save
    elapsed_s: float


class TrainTask(Protocol):
    """The model family's part: data, loss, evaluation, checkpoint."""

    def plan(self, step: int) -> Sized:
        """The global batch of optimizer step ``step`` (0-based): sample indices and every
        random draw, identical on every rank; ``len`` = rows of the global batch."""

    def batch(self, plan: Any, rows: slice) -> Any:
        """The tensors of rows ``rows`` of ``plan`` on the device."""

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean loss over the rows of ``batch`` (a scalar)."""

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The data position and the task's generators: (JSON, tensors)."""

    def load_state(self, js: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state` returned."""

    def on_save(self, ctx: SaveContext) -> dict[str, Any]:
        """Evaluate and write the checkpoint (rank 0); returns metrics for the log line."""


@dataclass
class TrainResult:
    start_step: int
    step: int
    stopped: str
    elapsed_s: float
    losses: list[float] = field(default_factory=list)  # per step, this run's steps
    last: dict[str, Any] = field(default_factory=dict)  # the last metrics line


@contextlib.contextmanager
def distributed(device: str) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join the torchrun process group (if any) for the block; leave it afterwards."""
    info, dev = init_distributed(device)
    try:
        yield info, dev
    finally:
        if info.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def build_schedule(opt: torch.optim.Optimizer, steps: int, warmup: int,
                   min_lr_ratio: float) -> LRScheduler:
    """Linear warm-up (lr * (s + 1) / warmup at step s), then cosine to min_lr_ratio * lr."""
    base = float(opt.param_groups[0]["lr"])
    cosine = CosineAnnealingLR(opt, T_max=max(1, steps - warmup), eta_min=base * min_lr_ratio)
    if warmup <= 0:
        return cosine
    linear = LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
    return SequentialLR(opt, [linear, cosine], milestones=[warmup])


def ema_avg_fn(decay: float, warmup: bool) -> Callable[[Any, Any, Any], None]:
    """``multi_avg_fn`` for AveragedModel: ``ema = d * ema + (1 - d) * w`` with
    ``d = min(decay, (1 + n) / (10 + n))`` for the n-th update when ``warmup``
    (n = 0 is AveragedModel's copy), else ``d = decay`` (torch's get_ema_multi_avg_fn)."""
    @torch.no_grad()
    def update(ema: list[torch.Tensor], cur: list[torch.Tensor], n: Any) -> None:
        k = int(n)
        d = min(decay, (1.0 + k) / (10.0 + k)) if warmup else decay
        if ema and (ema[0].is_floating_point() or ema[0].is_complex()):
            torch._foreach_lerp_(ema, cur, 1.0 - d)
        else:
            for e, c in zip(ema, cur):
                e.copy_(e * d + c * (1.0 - d))
    return update


class _LossModule(nn.Module):
    """model + loss as one module, so DDP's forward wraps the whole loss computation
    (trainers that call model methods other than ``forward`` still get their gradients
    reduced)."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module, Any], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self._fn(self.model, batch)


def _model_state(task: Any, model: nn.Module) -> dict[str, torch.Tensor]:
    fn = getattr(task, "model_state", None)
    return dict(fn(model)) if fn else dict(model.state_dict())


def _load_model_state(task: Any, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    fn = getattr(task, "load_model_state", None)
    if fn:
        fn(model, state)
    else:
        model.load_state_dict(state)


class Trainer:
    """Runs :class:`TrainSettings` over a model and its :class:`TrainTask` (see the module)."""

    def __init__(self, settings: TrainSettings, task: TrainTask, model: nn.Module,
                 dist: DistInfo | None = None, device: torch.device | None = None) -> None:
        self.s = settings
        self.task = task
        self.model = model
        self.dist = dist or DistInfo()
        self.device = device or next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise SettingsError("the model has no trainable parameters")
        self.opt = torch.optim.AdamW(self.params, lr=settings.lr,
                                     weight_decay=settings.weight_decay)
        self.ema: AveragedModel | None = None
        if settings.ema_decay > 0:
            self.ema = AveragedModel(model, multi_avg_fn=ema_avg_fn(settings.ema_decay,
                                                                     settings.ema_warmup))
        self.dtype = autocast_dtype(self.device, settings.precision)
        self.scaler = (torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16
                       else None)
        net: nn.Module = _LossModule(model, task.loss)
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                      find_unused_parameters=settings.find_unused_parameters)
        self.net = net
        self.state_path = Path(settings.out) / STATE_FILE
        self.metrics_path = Path(settings.out) / METRICS_FILE

    # --- resumable state ----------------------------------------------------------------
    def _save_state(self, step: int, elapsed: float) -> None:
        from safetensors.torch import save

        t: dict[str, torch.Tensor] = {}
        for k, v in _model_state(self.task, self.model).items():
            t[f"model/{k}"] = v
        osd = self.opt.state_dict()
        for i, st in osd["state"].items():
            for name, v in st.items():
                t[f"optim/{i}/{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
        if self.ema is not None:
            for k, v in _model_state(self.task, self.ema.module).items():
                t[f"ema/{k}"] = v
        rng_js, rng_t = rng_state()
        t.update({f"rng/{k}": v for k, v in rng_t.items()})
        task_js, task_t = self.task.state()
        t.update({f"task/{k}": v for k, v in task_t.items()})
        js = {"format": STATE_FORMAT, "step": step, "elapsed_s": elapsed,
              "world_size": self.dist.world, "param_groups": osd["param_groups"],
              "ema_n": int(self.ema.n_averaged) if self.ema is not None else None,
              "scaler": self.scaler.state_dict() if self.scaler is not None else None,
              "rng": rng_js, "task": task_js}
        flat = {k: v.detach().cpu().clone().contiguous() for k, v in t.items()}
        write_atomic(self.state_path, save(flat, metadata={"tracetrain": json.dumps(js)}))

    def _load_state(self) -> tuple[int, float]:
        from safetensors import SafetensorError, safe_open

        p = self.state_path
        if not p.is_file():
            raise CheckpointError(f"resume: {p} does not exist (no interrupted run in "
                                  f"{p.parent}); start without resuming")
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
            js = json.loads(meta.get("tracetrain", "null"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"resume: {p} is not a readable train state ({exc}); start "
                                  "over (without resuming) or another output") from None
        if not isinstance(js, dict) or js.get("format") != STATE_FORMAT:
            got = js.get("format") if isinstance(js, dict) else None
            raise CheckpointError(f"resume: {p} has format {got!r}, this code reads "
                                  f"{STATE_FORMAT!r}; start over or use another output")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}

        try:
            _load_model_state(self.task, self.model, part("model/"))
            if self.ema is not None:
                ema = part("ema/")
                if not ema:
                    raise CheckpointError(f"resume: {p} holds no EMA weights (saved without EMA)")
                _load_model_state(self.task, self.ema.module, ema)
                self.ema.n_averaged.fill_(int(js["ema_n"] or 0))
            state: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in part("optim/").items():
                i, name = k.split("/", 1)
                state.setdefault(int(i), {})[name] = v
            self.opt.load_state_dict({"state": state, "param_groups": js["param_groups"]})
        except (RuntimeError, KeyError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"resume: {p} does not match this model or optimizer "
                                  f"({' '.join(str(exc).split())[:300]}); start over or use "
                                  "another output") from None
        if self.scaler is not None and js.get("scaler"):
            self.scaler.load_state_dict(js["scaler"])
        set_rng_state(js["rng"], part("rng/"))
        self.task.load_state(js["task"], part("task/"))
        return int(js["step"]), float(js["elapsed_s"])

    # --- the loop ------------------------------------------------------------------------
    def run(self, stop: Callable[[], Any] | None = None) -> TrainResult:
        from tqdm import tqdm

        s, d = self.s, self.dist
        out = Path(s.out)
        if d.is_main:
            out.mkdir(parents=True, exist_ok=True)
        barrier(d)
        resume = s.resume == "must" or (s.resume == "auto" and self.state_path.is_file())
        start, elapsed0 = self._load_state() if resume else (0, 0.0)
        barrier(d)  # every rank has read the state before rank 0 may write a new one
        if d.is_main:
            if resume:
                truncate_metrics(self.metrics_path, start)
            else:
                self.metrics_path.unlink(missing_ok=True)
                self.state_path.unlink(missing_ok=True)
        for g in self.opt.param_groups:  # the schedule follows these settings, not the file
            g["lr"] = s.lr
            g.pop("initial_lr", None)
        sched = build_schedule(self.opt, s.steps, s.warmup_steps, s.min_lr_ratio)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()"
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(min(start, s.steps)):
                sched.step()
        self.model.train()
        t0 = time.perf_counter()
        window: list[tuple[float, int]] = []  # per step: this rank's loss sum, global rows
        since_save: list[float] = []
        result = TrainResult(start_step=start, step=start, stopped="", elapsed_s=elapsed0)
        bar = tqdm(total=s.steps, initial=start, desc=s.desc, unit="step",
                   disable=not (s.progress and d.is_main))
        step = start
        try:
            while step < s.steps:
                lr = float(self.opt.param_groups[0]["lr"])
                window.append(self._step(step))
                sched.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                step += 1
                stopped = self._stop_reason(stop)
                save = (bool(s.save_every) and step % s.save_every == 0) or step >= s.steps \
                    or bool(stopped)
                if step % s.log_every and not save:
                    bar.update(1)
                    continue
                sums = torch.tensor([w[0] for w in window], dtype=torch.float64)
                per_step = (all_reduce_sum(sums, d) / torch.tensor([float(w[1]) for w in window],
                                                                   dtype=torch.float64)).tolist()
                window = []
                since_save += per_step
                result.losses += per_step
                elapsed = elapsed0 + time.perf_counter() - t0
                rec: dict[str, Any] = {"step": step, "loss": float(np.mean(per_step)), "lr": lr,
                                       "elapsed_s": round(elapsed, 3)}
                if save:
                    ctx = SaveContext(step=step, final=step >= s.steps or bool(stopped),
                                      stopped=stopped, model=self.model,
                                      ema_model=self.ema.module if self.ema is not None else None,
                                      train_loss=float(np.mean(since_save)) if since_save else None,
                                      elapsed_s=elapsed)
                    if d.is_main:
                        rec.update(self.task.on_save(ctx) or {})
                        self._save_state(step, elapsed)
                    barrier(d)
                    since_save = []
                if d.is_main:
                    append_metrics(self.metrics_path, rec)
                result.last = rec
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if stopped:
                    result.stopped = stopped
                    break
        finally:
            bar.close()
        result.step = step
        result.elapsed_s = elapsed0 + time.perf_counter() - t0
        if d.is_main:
            plot_metrics(self.metrics_path, out / PLOT_FILE, s.loss_label)
            if not s.keep_state and not result.stopped:
                self.state_path.unlink(missing_ok=True)
        barrier(d)
        return result

    def _stop_reason(self, stop: Callable[[], Any] | None) -> str:
        got = stop() if stop is not None else None
        reason = (got if isinstance(got, str) else "stop requested") if got else ""
        if self.dist.active:  # one rank's signal stops them all, at the same step
            flag = all_reduce_sum(torch.tensor([1.0 if reason else 0.0]), self.dist)
            if float(flag[0]) > 0 and not reason:
                reason = "stop requested on another rank"
        return reason

    def _step(self, step: int) -> tuple[float, int]:
        """One optimizer step; returns (this rank's summed loss over its rows, global rows)."""
        d, s = self.dist, self.s
        plan = self.task.plan(step)
        n = len(plan)
        if n < d.world:
            raise SettingsError(f"step {step}: a global batch of {n} rows cannot feed {d.world} "
                                "processes; raise the batch size or use fewer processes")
        mine = shard_rows(n, d.rank, d.world)
        n_mine = mine.stop - mine.start
        parts = min(s.grad_accum, n_mine)
        total = 0.0
        for j in range(parts):
            sub = shard_rows(n_mine, j, parts)
            rows = slice(mine.start + sub.start, mine.start + sub.stop)
            k = rows.stop - rows.start
            batch = self.task.batch(plan, rows)
            last = j == parts - 1
            sync = (self.net.no_sync() if d.active and not last  # type: ignore[operator]
                    else contextlib.nullcontext())
            with sync:
                with autocast(self.device, self.dtype):
                    loss = self.net(batch)
                w = k * d.world / n  # this part's share of the global mean (DDP averages)
                scaled = loss if w == 1.0 else loss * w
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise DivergedError(f"loss is {value} at step {step}; lower the learning rate "
                                    "(the last saved state is intact)")
            total += value * k
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, s.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return total, n
