"""Data-parallel training across processes and machines, launched by ``torchrun``.

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (plus MASTER_ADDR/PORT) in each
process; ``sim2real train`` reads them here, so the same command trains on one CPU, several GPUs
or several nodes::

    torchrun --nproc_per_node 2 -m sim2real train --data D --out O            # one machine
    torchrun --nnodes 2 --node_rank N --nproc_per_node 8 --master_addr HOST \\
             --master_port 29500 -m sim2real train --data D --out O          # two machines

The backend is NCCL on CUDA and Gloo on the CPU. Every rank sees the same seeded global batch
order and takes every ``world_size``-th sample of each global batch, so ``--batch-size`` is the
global batch whatever the number of processes; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a (possibly single-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def from_env() -> DistEnv:
    """The job layout from torchrun's environment variables (a single process when unset)."""
    world = _int_env("WORLD_SIZE", 1)
    env = DistEnv(rank=_int_env("RANK", 0), world_size=world, local_rank=_int_env("LOCAL_RANK", 0),
                  local_world_size=_int_env("LOCAL_WORLD_SIZE", world))
    if env.world_size < 1 or not (0 <= env.rank < env.world_size) or env.local_rank < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={env.rank} WORLD_SIZE={env.world_size} "
                         f"LOCAL_RANK={env.local_rank}")
    return env


@contextlib.contextmanager
def process_group(env: DistEnv, device: torch.device) -> Iterator[None]:
    """Join the job's process group for the duration (nothing to do for a single process)."""
    if not env.enabled:
        yield
        return
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed: cannot train with WORLD_SIZE > 1")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def backend_name(env: DistEnv) -> str | None:
    return dist.get_backend() if env.enabled and dist.is_initialized() else None


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks (in place; the tensor itself for a single process)."""
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: nn.Module, env: DistEnv) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank."""
    if env.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def wrap(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """The model as the training step should call it: DistributedDataParallel across ranks."""
    if not env.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
