"""IPO's loss, Eq. 17 of Azar et al. (2023, arXiv 2310.12036): (h - 1/(2 tau))^2 with h = (log pi(y_w|x) -
log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)); with K rejected responses, the mean (or the largest) of
the K pairwise losses. `tau` is the config's `beta` (the harness passes `beta` to the trainer)."""
from __future__ import annotations

import torch


def ipo_loss(policy, reference, config) -> torch.Tensor:
    """policy, reference: `methods.losses.LogProbs` (chosen (B,), rejected (B, K)); returns the loss per prompt (B,)."""
    h = (policy.chosen - reference.chosen)[:, None] - (policy.rejected - reference.rejected)
    pairwise = (h - 1.0 / (2.0 * config.beta)) ** 2
    return pairwise.mean(dim=1) if config.negatives_reduction == "mean" else pairwise.max(dim=1).values
