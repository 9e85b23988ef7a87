"""Several training processes (`torchrun --nproc_per_node N -m classifier fit ...`), on the engine people run.

torchrun starts N copies and tells each its RANK, LOCAL_RANK and WORLD_SIZE; `setup` joins them in one
process group (nccl on GPUs, gloo on CPUs). What makes N processes train like one process with the
same global batch:
- `GlobalBatchSampler`: the epoch's permutation cut into global batches, each rank taking its slice, so
  the union of the ranks' step-k batches is the one process's step-k batch;
- the loss normalised by counts summed over all ranks (losses.py), so DistributedDataParallel's
  average of the ranks' gradients is the one process's gradient;
- batch statistics over the global batch: torch's SyncBatchNorm on GPUs, `GlobalBatchNorm` on CPUs
  (torch's runs on GPUs only);
- evaluation on disjoint shards (no image counted twice or dropped), predictions gathered to every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
from torch import nn

from cxrcore.errors import InputError


@dataclass(frozen=True)
class Context:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Context:
    """Join the process group torchrun describes in the environment (nothing to do for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        # on GPUs, gloo too: counts and figures are summed in CPU tensors
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world, local_rank)


def device_for(ctx: Context, device: torch.device) -> torch.device:
    """Each rank's own GPU (cuda:LOCAL_RANK); the CPU is shared."""
    if device.type == "cuda" and ctx.distributed:
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def sum_over_ranks(ctx: Context, tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over all ranks (no gradient: counts and logged figures)."""
    if ctx.distributed:
        tensor = tensor.detach().clone()
        dist.all_reduce(tensor)
    return tensor


def shard(ctx: Context, n: int) -> np.ndarray:
    """The positions of 0..n-1 this rank evaluates: every world-th, so every position exactly once."""
    return np.arange(ctx.rank, n, ctx.world)


def gather_rows(ctx: Context, positions: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Every rank's rows (predictions for its `positions`) put together in one (n, ...) array, on all ranks."""
    if not ctx.distributed:
        return rows
    pieces: list[Any] = [None] * ctx.world
    dist.all_gather_object(pieces, (positions, rows))
    out = np.full((n, *rows.shape[1:]), np.nan, dtype=rows.dtype)
    for where, values in pieces:
        out[where] = values
    return out


class GlobalBatchSampler:
    """Each epoch: a seeded permutation of the training rows, cut into global batches of `batch`; this
    rank yields its slice of each. With one rank it is the plain shuffled batching of one process. The
    last, short batch is dropped (its batch statistics would be noisy) unless it is the only one."""

    def __init__(self, n: int, batch: int, seed: int, epoch: int, ctx: Context) -> None:
        if batch % ctx.world:
            raise InputError(f"--batch-size {batch} is the global batch; it must divide among the {ctx.world} "
                             f"processes (use a multiple of {ctx.world})")
        self.order = torch.randperm(n, generator=torch.Generator().manual_seed((seed * 1000 + epoch) % 2 ** 63)).tolist()
        self.batch, self.ctx = batch, ctx
        self.count = self.batches(n, batch)

    @staticmethod
    def batches(n: int, batch: int) -> int:
        """The number of global batches an epoch of n rows gives (the schedule counts its steps by it)."""
        return n // batch if n > batch else 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[list[int]]:
        each = self.batch // self.ctx.world
        for k in range(self.count):
            batch = self.order[k * self.batch:(k + 1) * self.batch]
            share = -(-len(batch) // self.ctx.world) if len(batch) < self.batch else each
            yield batch[self.ctx.rank * share:(self.ctx.rank + 1) * share]


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, summed over the ranks with a
    differentiable all-reduce: SyncBatchNorm for CPU processes (gloo)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels, shape = x.shape[1], (1, x.shape[1], 1, 1)
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        sums = _sum(torch.cat([x.sum((0, 2, 3)), count]))
        total = sums[-1]
        mean = sums[:channels] / total
        centred = x - mean.view(shape)  # two passes, as BatchNorm2d: E[x²] - E[x]² loses digits
        var = _sum((centred * centred).sum((0, 2, 3))) / total
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * total / max(total - 1, 1))
        out = centred / torch.sqrt(var.view(shape) + self.eps)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out


def _sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks, differentiable: each rank's input gets the sum of the ranks' output gradients."""
    return collectives.all_reduce(tensor, "sum", dist.group.WORLD)


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch statistics over the global batch: torch's SyncBatchNorm on GPUs, GlobalBatchNorm on CPUs."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm):
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(model, name, replacement)
        else:
            synchronise_batchnorm(child, device)
    return model
