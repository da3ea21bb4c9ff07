"""The causal regularizer over the whole optimizer step: every accumulation micro-batch of every process.

Why. The regularizer's environments, centres, soft assignments and MMD are statistics of a batch: DBSCAN needs
`min_samples` points to call a cluster, the MMD compares environments. Computed per micro-batch on each process,
the paper profile (preference batch 16 x 4 accumulation steps over 8 GPUs) would cluster 2 samples per call, never
find two environments, and CausalDPO would silently be DPO. So the trainer evaluates the regularizer once per
optimizer step, over the W x A micro-batches of W processes and A accumulation steps: the rows one process would
cluster if it held the whole step.

How (gradient caching, as GradCache: Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup"; the objective is not a sum over rows, so it cannot be accumulated micro-batch by micro-batch):
1. Before the step's first micro-batch, a forward pass without gradient over each micro-batch gives every row's
   z = g(h), its matched representation phi and, when the method's reduction is not the mean, its per-sample loss l.
2. The rows of every process are gathered in the sampler's order (micro-batch i of process r is the global batch
   i*W + r under accelerate's interleaved sharding) and the objective F(l, z, phi) = adjusted loss + lambda * MMD^2
   runs once on leaf copies of them; autograd gives dF/dz, dF/dphi, dF/dl per row. Every process computes the same
   F from the same rows (DBSCAN is deterministic) and keeps the gradient rows of its own samples.
3. Each micro-batch's training forward recomputes z, phi (and l) with gradient and adds the surrogate
   W*A * sum_rows(dF/dz . z + dF/dphi . phi [+ dF/dl . l]), whose value is removed (the step's F is added as a
   constant for the log). After the Trainer's division by A and DDP's mean over W (the projection g's gradients are
   averaged by `SyncRegularizerGradients`), the accumulated gradient is the whole step's dF/dtheta by the chain rule.
With the mean reduction (DPO, SimPO, CPO, S-DPO, DMPO) the adjusted term is the batch mean (the Eq. 6 identity kept
by a test of `methods.causal`), so l is not needed in step 1 and each micro-batch keeps its own mean loss; the
forward of step 1 then covers the prompt + chosen rows only, about 1/(3(1+K)) of a training step. Dr.DPO's DRO
reduction needs every row's loss: all rows, about 1/3 of a step.
The result equals the single-process computation up to the difference between the two forward passes of a row:
float noise from another batch layout and, with dropout in the model (LoRA dropout), different dropout masks.
One process with one micro-batch per step keeps the direct computation inside the loss's graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from methods.train import distributed


@dataclass
class RowGradients:
    """dF/dz, dF/dphi (and dF/dl) of one micro-batch's rows on this process."""
    z: torch.Tensor
    phi: torch.Tensor
    loss: torch.Tensor | None


@dataclass
class StepPlan:
    rows: list[RowGradients]     # per micro-batch of this process, in order
    scale: int                   # W * A: undoes the Trainer's 1/A and DDP's 1/W for the surrogate
    value: float                 # F of the whole step: the penalty, plus the adjusted loss when losses are included
    includes_losses: bool
    stats: dict                  # the regularizer's figures of the whole step
    indices: np.ndarray          # the step's pair indices in the order they were clustered
    labels: np.ndarray           # DBSCAN's labels of those rows


def gather_step(parts: list[torch.Tensor]) -> tuple[torch.Tensor, list[slice]]:
    """The rows of every process's micro-batches in sampler order (micro-batch, then rank), and where this
    process's rows of each micro-batch sit in it."""
    ordered, own, start = [], [], 0
    for part in parts:
        for r, rows in enumerate(distributed.gather_tensors(part)):
            if r == distributed.rank():
                own.append(slice(start, start + len(rows)))
            ordered.append(rows)
            start += len(rows)
    return torch.cat(ordered), own


def plan_step(micro_batches: list[dict], represent: Callable, regularizer, reduce,
              includes_losses: bool) -> StepPlan:
    """Steps 1-2 of the module docstring. `represent(inputs) -> (index, loss or None, z, phi)` runs one micro-batch
    without gradient; `regularizer.objective` is F."""
    parts = []
    with torch.no_grad():
        for inputs in micro_batches:
            index, loss, z, phi = represent(inputs)
            loss = torch.zeros_like(index, dtype=torch.float32) if loss is None else loss.float()
            parts.append(torch.cat([index.float().unsqueeze(1), loss.unsqueeze(1), z.float(), phi.float()], 1))
    rows, own = gather_step(parts)
    width = z.shape[1]
    leaves = [rows[:, 2:2 + width].clone().requires_grad_(), rows[:, 2 + width:].clone().requires_grad_(),
              rows[:, 1].clone().requires_grad_(includes_losses)]
    z_all, phi_all, loss_all = leaves
    adjusted, penalty, stats = regularizer.objective(loss_all, z_all, phi_all, reduce)
    total = penalty + adjusted if includes_losses else penalty
    wrt = leaves if includes_losses else leaves[:2]
    if total.requires_grad:
        grads = [g if g is not None else torch.zeros_like(x)
                 for g, x in zip(torch.autograd.grad(total, wrt, allow_unused=True), wrt)]
    else:  # one environment and the mean reduction: no penalty; each micro-batch keeps its mean loss
        grads = [torch.zeros_like(x) for x in wrt]
    per_micro = [RowGradients(grads[0][s], grads[1][s], grads[2][s] if includes_losses else None) for s in own]
    return StepPlan(rows=per_micro, scale=distributed.world_size() * len(micro_batches),
                    value=float(total.detach()), includes_losses=includes_losses, stats=stats,
                    indices=rows[:, 0].round().long().cpu().numpy(), labels=regularizer.last_labels)


def surrogate(gradients: RowGradients, z: torch.Tensor, phi: torch.Tensor, loss: torch.Tensor | None,
              scale: int) -> torch.Tensor:
    """Step 3: a zero-valued term whose gradient, accumulated over the step's micro-batches and processes, is the
    whole step's dF/dtheta."""
    term = (gradients.z * z).sum() + (gradients.phi * phi).sum()
    if gradients.loss is not None:
        term = term + (gradients.loss * loss.float()).sum()
    return scale * (term - term.detach())
