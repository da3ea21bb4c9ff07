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


# --- the other preference losses (S-DPO, DMPO, SimPO, CPO) and reductions (mean, Dr.DPO) -------------------------
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from methods.losses import cpo_loss, dmpo_loss, dro_reduce, mean_reduce, sdpo_loss, simpo_loss  # noqa: E402


def random_logps(b=5, k=3, seed=0, lengths=True):
    g = torch.Generator().manual_seed(seed)
    cl = torch.randint(1, 6, (b,), generator=g) if lengths else None
    rl = torch.randint(1, 6, (b, k), generator=g) if lengths else None
    policy = LogProbs(-torch.rand(b, generator=g) * 10, -torch.rand(b, k, generator=g) * 10, cl, rl)
    reference = LogProbs(-torch.rand(b, generator=g) * 10, -torch.rand(b, k, generator=g) * 10, cl, rl)
    return policy, reference


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_losses_accept_a_config_or_a_float_beta():
    policy, reference = random_logps()
    assert torch.allclose(dpo_loss(policy, reference, SimpleNamespace(beta=0.3)), dpo_loss(policy, reference, 0.3))
    assert LOSSES.get("sdpo") is sdpo_loss and LOSSES.get("simpo") is simpo_loss


def test_sdpo_matches_formula_by_hand():
    policy = LogProbs(torch.tensor([-1.0]), torch.tensor([[-3.0, -2.0]]))
    reference = LogProbs(torch.tensor([-2.0]), torch.tensor([[-2.5, -1.0]]))
    beta = 0.5
    rw, rl = -1.0 + 2.0, [-3.0 + 2.5, -2.0 + 1.0]
    expected = -math.log(sig(-math.log(sum(math.exp(beta * (r - rw)) for r in rl))))
    assert sdpo_loss(policy, reference, beta).item() == pytest.approx(expected, rel=1e-6)


def test_dmpo_matches_formula_by_hand():
    policy = LogProbs(torch.tensor([-1.0]), torch.tensor([[-3.0, -2.0]]))
    reference = LogProbs(torch.tensor([-2.0]), torch.tensor([[-2.5, -1.0]]))
    beta = 0.5
    rw, rl = -1.0 + 2.0, [-3.0 + 2.5, -2.0 + 1.0]
    expected = -math.log(sig(beta * rw - beta * sum(rl) / 2))
    assert dmpo_loss(policy, reference, beta).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss", [sdpo_loss, dmpo_loss])
def test_sdpo_and_dmpo_with_one_negative_are_dpo(loss):
    policy, reference = random_logps(k=1)
    assert torch.allclose(loss(policy, reference, 0.7), dpo_loss(policy, reference, 0.7), atol=1e-6)


def test_sdpo_and_dmpo_differ_from_dpo_with_several_negatives():
    policy, reference = random_logps(k=3)
    dpo = dpo_loss(policy, reference, 1.0)
    assert not torch.allclose(sdpo_loss(policy, reference, 1.0), dpo)
    assert not torch.allclose(dmpo_loss(policy, reference, 1.0), dpo)


def test_simpo_matches_formula_by_hand_and_ignores_the_reference():
    policy = LogProbs(torch.tensor([-2.0]), torch.tensor([[-6.0]]), torch.tensor([2]), torch.tensor([[3]]))
    cfg = SimpleNamespace(beta=2.0, gamma_beta_ratio=0.25)
    expected = -math.log(sig(2.0 / 2 * -2.0 - 2.0 / 3 * -6.0 - 0.5))
    zero = LogProbs(torch.zeros(1), torch.zeros(1, 1))
    other = LogProbs(torch.tensor([5.0]), torch.tensor([[-9.0]]))
    assert simpo_loss(policy, zero, cfg).item() == pytest.approx(expected, rel=1e-6)
    assert simpo_loss(policy, other, cfg).item() == pytest.approx(expected, rel=1e-6)


def test_simpo_without_margin_and_length_averaging_is_reference_free_dpo():
    policy, reference = random_logps(k=2)
    cfg = SimpleNamespace(beta=0.4, gamma_beta_ratio=0.0, length_normalize=False)
    zero = LogProbs(torch.zeros_like(reference.chosen), torch.zeros_like(reference.rejected))
    assert torch.allclose(simpo_loss(policy, reference, cfg), dpo_loss(policy, zero, 0.4), atol=1e-6)


def test_cpo_matches_formula_by_hand():
    policy = LogProbs(torch.tensor([-2.0]), torch.tensor([[-6.0, -3.0]]), torch.tensor([4]), torch.tensor([[3, 3]]))
    cfg = SimpleNamespace(beta=0.1, alpha=1.0)
    prefer = (-math.log(sig(0.1 * (-2.0 + 6.0))) - math.log(sig(0.1 * (-2.0 + 3.0)))) / 2
    expected = prefer + 1.0 * (2.0 / 4)
    zero = LogProbs(torch.zeros(1), torch.zeros(1, 2))
    assert cpo_loss(policy, zero, cfg).item() == pytest.approx(expected, rel=1e-6)
    cfg0 = SimpleNamespace(beta=0.1, alpha=0.0)
    assert torch.allclose(cpo_loss(policy, zero, cfg0), dpo_loss(policy, zero, 0.1))   # alpha 0 = ref-free DPO


def test_mean_reduce_with_weights():
    losses = torch.tensor([1.0, 2.0, 4.0])
    assert mean_reduce(losses).item() == pytest.approx(7 / 3)
    assert mean_reduce(losses, torch.tensor([0.5, 0.5, 0.0])).item() == pytest.approx(1.5)


def test_dro_reduce_matches_formula_and_limits():
    losses = torch.tensor([0.2, 0.7, 1.5, 3.0])
    expected = -1.0 * math.log(sum(math.exp(-l) for l in losses.tolist()) / 4)
    assert dro_reduce(losses, beta_prime=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert dro_reduce(losses, beta_prime=1e6).item() == pytest.approx(losses.mean().item(), rel=1e-4)
    assert dro_reduce(losses, beta_prime=1e-3).item() == pytest.approx(losses.min().item(), abs=2e-3)
    uniform = torch.full((4,), 0.25)
    assert dro_reduce(losses, uniform, 0.5).item() == pytest.approx(dro_reduce(losses, beta_prime=0.5).item(), rel=1e-6)
    w = torch.tensor([0.5, 0.5, 0.0, 0.0])
    assert dro_reduce(losses, w, 1.0).item() == pytest.approx(dro_reduce(losses[:2], beta_prime=1.0).item(), rel=1e-5)


def test_drdpo_with_large_beta_prime_is_the_dpo_batch_mean():
    policy, reference = random_logps(k=1)
    per_sample = dpo_loss(policy, reference, 0.1)
    assert dro_reduce(per_sample, beta_prime=1e6).item() == pytest.approx(per_sample.mean().item(), rel=1e-4)
