"""A run over several processes under ``torchrun``: the process group (NCCL on GPU, gloo on CPU, or
the backend asked for), each process's device, and the collectives the runs share; one process is a
job of one rank, where every call here is a no-op.

Used by training (:mod:`ifan.train.trainer`) and by ``ifan deblur`` over many processes
(:mod:`ifan.apps.archive`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ifan.inference.runtime import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto", backend: str | None = None, timeout: timedelta | None = None) -> DistInfo:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and start the
    process group when there is more than one process.

    Args:
        backend: the process group's (default: NCCL for CUDA devices, gloo for the CPU).
        timeout: how long a collective waits for every rank (default: PyTorch's).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if world > 1 or dev.index is None:
            dev = torch.device("cuda", local)  # under torchrun: one GPU per local rank
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if dev.type == "cuda" else "gloo"), timeout=timeout)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast(value, info: DistInfo):
    """Rank 0's ``value`` (any picklable object: a flag, a list of names) on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
