"""Preference losses against their formulas (methods/losses.py)."""
import math

import torch

from methods.losses import LOSSES, LogProbs, dpo_loss, implicit_rewards


def test_dpo_matches_formula_by_hand():
    policy = LogProbs(torch.tensor([-1.0]), torch.tensor([[-3.0]]))
    reference = LogProbs(torch.tensor([-2.0]), torch.tensor([[-2.5]]))
    beta = 0.5
    margin = beta * ((-1.0 + 2.0) - (-3.0 + 2.5))
    expected = -math.log(1 / (1 + math.exp(-margin)))
    assert math.isclose(dpo_loss(policy, reference, beta).item(), expected, rel_tol=1e-6)


def test_dpo_is_log2_when_policy_equals_reference():
    lp = LogProbs(torch.randn(4), torch.randn(4, 1))
    assert torch.allclose(dpo_loss(lp, lp, 0.1), torch.full((4,), math.log(2)))


def test_dpo_with_k_negatives_averages_pairwise_losses():
    g = torch.Generator().manual_seed(0)
    policy = LogProbs(torch.randn(3, generator=g), torch.randn(3, 4, generator=g))
    reference = LogProbs(torch.randn(3, generator=g), torch.randn(3, 4, generator=g))
    each = [dpo_loss(LogProbs(policy.chosen, policy.rejected[:, j:j + 1]),
                     LogProbs(reference.chosen, reference.rejected[:, j:j + 1]), 0.2) for j in range(4)]
    assert torch.allclose(dpo_loss(policy, reference, 0.2), torch.stack(each).mean(0), atol=1e-6)


def test_implicit_rewards_and_registry():
    policy = LogProbs(torch.tensor([0.0]), torch.tensor([[-1.0]]))
    reference = LogProbs(torch.tensor([-1.0]), torch.tensor([[-1.0]]))
    chosen, rejected = implicit_rewards(policy, reference, 2.0)
    assert chosen.item() == 2.0 and rejected.item() == 0.0
    assert LOSSES.get("dpo") is dpo_loss
