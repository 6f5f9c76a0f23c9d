"""Data-parallel training: the processes of one job (started by `accelerate launch`, which sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous address) each compute the gradients of their share of every batch;
the gradients are summed across processes before every optimizer step, so every process takes the same step
and holds the same weights. gloo on CPU, NCCL on GPUs (one GPU per process).

Outside such a job (WORLD_SIZE unset or 1) every function here is a no-op on a group of one."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass

BUCKET_ELEMENTS = 1 << 24  # gradients all-reduced in buckets of at most this many values (64 MiB in fp32)
_PR_SET_PDEATHSIG = 1
# loaded now, so that a forked child about to exec calls it without loading anything
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def lead(self) -> bool:
        """The process that writes: MLflow metrics, checkpoints, the trained model."""
        return self.rank == 0


def join(device_type: str) -> Group:
    """This process's place in the data-parallel job it was launched in (a group of one if none)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Group()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Group(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent exits (Linux; elsewhere nothing). The launcher and
    the training processes it starts, each in a session of its own, would otherwise outlive a killed stage
    (a cancelled flow run, a lost worker) and train on, orphaned. Safe as a subprocess `preexec_fn`."""
    if _LIBC is None:
        return
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was already gone before the call
        os._exit(1)


def shard(batch: list, rank: int, world: int) -> list:
    """Process `rank`'s rows of a batch: every world-th row from its rank (empty where the batch is smaller
    than the job, e.g. the last one of an epoch)."""
    return batch[rank::world]


def sync_gradients(params: list, group: Group) -> None:
    """Sum every trainable parameter's gradient across the job (a parameter a process computed no gradient
    for, having no rows, counts as zero), in buckets so memory stays bounded."""
    if group.world == 1:
        return
    import torch
    import torch.distributed as dist

    bucket: list = []
    size = 0
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        bucket.append(p)
        size += p.numel()
        if size >= BUCKET_ELEMENTS:
            _reduce(bucket, dist)
            bucket, size = [], 0
    if bucket:
        _reduce(bucket, dist)


def _reduce(bucket: list, dist) -> None:
    import torch

    flat = torch.cat([p.grad.reshape(-1) for p in bucket])
    dist.all_reduce(flat)
    offset = 0
    for p in bucket:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def sum_values(values: list[float], group: Group, device) -> list[float]:
    """Numbers (a batch's loss share, its tokens) summed across the job."""
    if group.world == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_parameters(params: list, group: Group) -> None:
    """Every process starts from the lead's trainable weights (same seed: the same already; this makes sure)."""
    if group.world == 1:
        return
    import torch.distributed as dist

    for p in params:
        dist.broadcast(p.data, 0)


def broadcast_object(obj, group: Group):
    """The lead's value of `obj`, in every process."""
    if group.world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_object(obj, group: Group) -> list:
    """Every process's `obj`, by rank, in every process."""
    if group.world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * group.world
    dist.all_gather_object(out, obj)
    return out


def barrier(group: Group) -> None:
    if group.world > 1:
        import torch.distributed as dist

        dist.barrier()


def leave(group: Group) -> None:
    if group.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
