"""Data parallelism under `accelerate launch -m bench run ...`: who writes, how the test set is split, and syncing.

Every process builds the same cell (the split and samples are deterministic), trains with the HF Trainer, which
shards the batches and averages the gradients (DDP), and ranks its own slice of the test samples; the slices are
gathered so the main process scores the whole test set. Only the main process writes caches and records; the
others wait at a barrier and read what it wrote. `preference.batch_size` and `sft.batch_size` stay the global batch:
each of W processes takes batch_size / W, so a record means the same whatever the number of processes.

Without a launcher (one process) every function here is a no-op.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The process's own GPU under a launcher (LOCAL_RANK), the given device otherwise."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _ready() -> bool:
    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def ensure_process_group(device: torch.device) -> None:
    """Join the launcher's process group (the Trainer would do it later; the pipeline needs it for barriers)."""
    if world_size() > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def barrier() -> None:
    if _ready():
        dist.barrier()


def per_device(global_batch: int) -> int:
    """Each process's share of a global batch size (which must divide evenly, so the record stays comparable)."""
    w = world_size()
    if global_batch % w:
        raise ValueError(f"batch size {global_batch} does not divide over {w} processes; pick a multiple of {w}")
    return global_batch // w


def gather_rows(part: Any, n: int) -> list:
    """Reassemble a list sharded as ``rows[rank::world]`` into the full list of length n, on every process."""
    if not _ready():
        return list(part)
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, list(part))
    out: list = [None] * n
    for r, rows in enumerate(parts):
        out[r::world_size()] = rows
    return out


def mean_gradients(parameters) -> None:
    """Average the gradients of parameters that live outside the DDP-wrapped model (e.g. CausalDPO's projection g).
    A parameter unused in this step contributes zeros, so every process joins every collective."""
    if not _ready():
        return
    for p in parameters:
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world_size()


def gather_tensors(part: torch.Tensor) -> list[torch.Tensor]:
    """Every process's `part` (first dimensions may differ), on every process, in rank order; [part] without a
    process group. The gathered copies carry no gradient."""
    if not _ready():
        return [part]
    size = torch.tensor([part.shape[0]], device=part.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    width = int(max(int(s) for s in sizes))
    padded = part.new_zeros((width, *part.shape[1:]))
    padded[: part.shape[0]] = part
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return [p[: int(s)] for p, s in zip(parts, sizes)]
