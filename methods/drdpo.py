"""Dr.DPO: Distributionally Robustifying DPO (Wu et al., ICLR 2025, arXiv 2407.07880), Eq. 11 / the official
trainers.py.

l_i = -log sigmoid(beta * [(pi_w - ref_w) - (pi_l - ref_l)])        (the per-pair DPO loss, no label smoothing)
L   = -beta' * log( (1/B) sum_{i=1..B} exp(-l_i / beta') )           (computed as -beta' [LSE_i(-l_i/beta') - log B])

Choices:
- The aggregation runs over the per-device micro-batch, as in the official code (its all_gather is for metrics
  only), so the micro-batch size (`preference.batch_size`) is part of the loss's definition: it is recorded in
  the method stats (`drdpo_micro_batch`), with gradient accumulation steps alongside.
- Defaults: beta 0.1 and beta' 1.0 (the official config.yaml / README). beta' -> infinity gives the DPO batch mean,
  beta' -> 0 the batch minimum.
- With K > 1 rejected responses l_i is the `dpo` per-prompt loss (the K pairwise losses averaged), then aggregated.
- Reference = the cell's SFT model (cached log-probs), same pairs and schedule as `dpo`.
- `drdpo+causal`: the backdoor adjustment applies this reduction within each pseudo-environment with the
  environment's normalised weights, L = sum_k p_hat_k * (-beta' log sum_i w_ik exp(-l_i/beta')) (`methods.causal`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from methods.base import MethodContext, Paper, register
from methods.losses import dro_reduce
from methods.preference import PreferenceMethod


@dataclass
class DrDPOConfig:
    beta: float = field(default=0.1, metadata={"help": "beta: scale of the implicit reward"})
    beta_prime: float = field(default=1.0, metadata={
        "help": "beta': temperature of the log-mean-exp aggregation (large = DPO mean)"})


@register
class DrDPO(PreferenceMethod):
    name = "drdpo"
    paper = Paper("Towards Robust Alignment of Language Models: Distributionally Robustifying Direct Preference "
                  "Optimization", "2407.07880")
    Config = DrDPOConfig
    loss = "dpo"

    def reduce(self, per_sample: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return dro_reduce(per_sample, weights, self.config.beta_prime)

    def method_stats(self, ctx: MethodContext) -> dict:
        return {"drdpo_micro_batch": ctx.preference.batch_size, "drdpo_grad_accum": ctx.preference.grad_accum}
