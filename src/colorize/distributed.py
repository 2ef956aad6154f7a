"""Data-parallel training across processes, for ``torchrun`` (one process per GPU or CPU share).

``torchrun`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; when
``WORLD_SIZE`` is unset or 1, everything here is a no-op and training runs in one plain process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as tdist
import torch.nn as nn

from colorize.runtime import pick_device

@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, writes logs, checkpoints, samples and the config."""
        return self.rank == 0


def from_env() -> Dist:
    """The job layout ``torchrun`` put in the environment (a single process when it did not)."""
    return Dist(rank=int(os.environ.get("RANK", 0)), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def init(device_name: str) -> tuple[Dist, torch.device]:
    """Pick this process's device and, under ``torchrun``, join the process group (NCCL on CUDA,
    Gloo otherwise)."""
    dist = from_env()
    device = pick_device(device_name, local_rank=dist.local_rank)  # ValueError on a GPU torch cannot use
    if dist.enabled and not tdist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                 device_id=device if device.type == "cuda" else None)
    return dist, device


def cleanup() -> None:
    """Leave the process group (call on every rank, once no collective is pending)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(model: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """The module to train through: ``DistributedDataParallel`` (gradients averaged across ranks) or
    ``model`` itself in a single process. Checkpoints always hold the unwrapped ``model``."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over all ranks (float64); the values themselves in a single process."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (e.g. a time limit reached on one clock)."""
    return all_sum([float(flag)], device)[0] > 0


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (pickled) on every rank, e.g. a checkpoint only rank 0 can read."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (pickled), in rank order, on every rank; ``[obj]`` in a single process."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return [obj]
    box: list[Any] = [None] * tdist.get_world_size()
    tdist.all_gather_object(box, obj)
    return box


def barrier() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


class EpochSampler(torch.utils.data.Sampler[int]):
    """One epoch's indices for this rank: ``num_samples`` indices into a dataset of ``size`` drawn
    from ``generator`` exactly as ``RandomSampler(num_samples=...)`` draws them (whole permutations,
    then part of one), of which rank ``rank`` takes every ``world_size``-th, starting at its rank.

    So the k-th batches of all ranks together are the k-th batch one process would draw with
    ``batch_size x world_size``: the global batch is the per-rank batch times the world size. A tail
    of fewer than ``world_size`` indices is dropped, so every rank takes as many steps.
    """

    def __init__(self, size: int, num_samples: int, generator: torch.Generator, *, rank: int = 0,
                 world_size: int = 1, weights: torch.Tensor | None = None):
        """``weights`` (size,): draw with replacement in proportion to them instead (per-source balance)."""
        self.size, self.num_samples, self.generator = size, num_samples, generator
        self.rank, self.world_size = rank, world_size
        if weights is not None and len(weights) != size:
            raise ValueError(f"weights: expected {size} values, got {len(weights)}")
        self.weights = weights

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def _draw(self) -> Iterator[int]:
        n, g = self.size, self.generator
        if self.weights is not None:
            yield from torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist()
            return
        for _ in range(self.num_samples // n):
            yield from torch.randperm(n, generator=g).tolist()
        yield from torch.randperm(n, generator=g).tolist()[: self.num_samples % n]

    def __iter__(self) -> Iterator[int]:
        usable = len(self) * self.world_size
        for i, index in enumerate(self._draw()):
            if i >= usable:
                return
            if i % self.world_size == self.rank:
                yield index
