"""Processes of one run: single-process, or one per GPU/CPU slot under ``torchrun``.

``torchrun --nproc_per_node=N ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and the rendezvous address; :func:`init_distributed` reads them and joins the
process group (NCCL on CUDA, gloo on the CPU). Without them the run is one
process and nothing here touches ``torch.distributed``.

Sharding of a step's global batch (:func:`shard_rows`): every rank sees the
same global batch plan (the same seeded draws) and takes a contiguous block of
its rows; each rank's mean loss is weighted by its share, so the gradient DDP
averages equals the gradient of the global batch's mean loss, whatever the
number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tracetrain.device import resolve_device
from tracetrain.errors import SettingsError

__all__ = ["DistInfo", "init_distributed", "shard_rows", "all_reduce_sum", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this run created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """(processes, this process's device) from the torchrun environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DistInfo(), dev
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise SettingsError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s); "
                                "give torchrun --nproc_per_node <= the GPU count")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local,
                    owns_group=owns), dev


def shard_rows(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous block of ``n`` rows (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()
