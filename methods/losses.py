"""Preference losses over completion log-probabilities, one small function each, and their registry.

Every loss takes the policy's and the reference's sequence log-probs of the chosen response, shape (B,), and of K
rejected responses, shape (B, K), and returns the per-sample loss, shape (B,). The trainer reduces it (mean by
default; a method may define its own reduction). Adding a loss is one function and one `LOSSES.add` line, plus a
test against its formula.

- `dpo` (Rafailov et al., 2023, arXiv 2305.18290, Eq. 7): -log sigmoid(beta * [(pi_w - ref_w) - (pi_l - ref_l)]).
  With K > 1 rejected responses, plain DPO averages the K pairwise losses (each negative as its own pair, the
  usual way to feed DPO several negatives); S-DPO's softmax form is a different loss (issue: preference methods).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from splits.registry import Registry


@dataclass
class LogProbs:
    """Summed completion log-probs: chosen (B,), rejected (B, K); token counts alongside for length-normalised losses."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_len: torch.Tensor | None = None
    rejected_len: torch.Tensor | None = None


def implicit_rewards(policy: LogProbs, reference: LogProbs, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)) for the chosen (B,) and rejected (B, K) responses."""
    return beta * (policy.chosen - reference.chosen), beta * (policy.rejected - reference.rejected)


def dpo_loss(policy: LogProbs, reference: LogProbs, beta: float) -> torch.Tensor:
    chosen, rejected = implicit_rewards(policy, reference, beta)
    return -F.logsigmoid(chosen.unsqueeze(1) - rejected).mean(dim=1)


LOSSES: Registry = Registry("preference loss")
LOSSES.add("dpo", dpo_loss)
