"""The causal regularizer of CausalDPO (methods/causal.py) against its equations: the backdoor adjustment (Eq. 6,
with the mean and with Dr.DPO's reduction, hard and soft assignments), DBSCAN environments and the soft assignment
(Eqs. 7-8), the weighted MMD (Eq. 10) against a double-loop reference, and the one-environment fallbacks."""
import itertools

import numpy as np
import pytest
import torch

from methods.causal import CausalConfig, CausalRegularizer, backdoor_adjusted, dbscan_labels, soft_assign, weighted_mmd2
from methods.losses import dro_reduce


def two_blobs(n=8, d=4, gap=5.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g) * 0.05
    b = torch.randn(n, d, generator=g) * 0.05 + gap
    return torch.cat([a, b])


def test_backdoor_adjustment_equals_batch_mean():
    g = torch.Generator().manual_seed(1)
    losses = torch.rand(12, generator=g)
    p = torch.softmax(torch.randn(12, 3, generator=g), dim=1)
    assert torch.allclose(backdoor_adjusted(losses, p), losses.mean(), atol=1e-6)


def test_backdoor_adjustment_by_hand():
    losses = torch.tensor([1.0, 3.0])
    p = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    env = [(0.75 * 1 + 0.25 * 3) / 1.0, (0.25 * 1 + 0.75 * 3) / 1.0]
    expected = 0.5 * env[0] + 0.5 * env[1]
    assert backdoor_adjusted(losses, p).item() == pytest.approx(expected, rel=1e-6)


def soft_environments(n=10, seed=5):
    """Losses in [0, 3) and soft assignments p (n, 3): no row one-hot, environments of clearly different sizes."""
    rng = np.random.default_rng(seed)
    losses = rng.uniform(0, 3, n)
    logits = rng.normal(size=(n, 3)) + np.array([1.5, 0.0, -1.0])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return losses, p


@pytest.mark.parametrize("beta_prime", [0.5, 4.0])  # spread of -l/beta' above / below 1: both forms of dro_reduce
def test_backdoor_adjustment_with_dro_reduce_and_soft_assignments_follows_eq6(beta_prime):
    losses, p = soft_environments()
    sizes = p.sum(0)
    assert p.max() < 0.99 and sizes.max() > 2 * sizes.min()
    # Eq. 6 in float64: sum_k p_hat_k * (-beta' log sum_i w_ik exp(-l_i / beta')), w_ik = p_ik / sum_i p_ik
    w = p / sizes
    per_env = [-beta_prime * np.log(sum(w[i, k] * np.exp(-losses[i] / beta_prime) for i in range(len(losses))))
               for k in range(3)]
    expected = sum(p[:, k].mean() * per_env[k] for k in range(3))
    reduce = lambda x, weights=None: dro_reduce(x, weights, beta_prime=beta_prime)
    got = backdoor_adjusted(torch.tensor(losses, dtype=torch.float32), torch.tensor(p, dtype=torch.float32), reduce)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    assert abs(got.item() - losses.mean()) > 0.05                 # not the plain mean


def test_dbscan_finds_two_blobs_and_soft_assignment_is_a_distribution():
    z = two_blobs()
    labels = dbscan_labels(z.numpy(), min_samples=3, eps_quantile=0.5)
    assert len(set(labels.tolist()) - {-1}) == 2
    p = soft_assign(z, labels, temperature=0.1)
    assert p.shape == (16, 2)
    assert torch.allclose(p.sum(1), torch.ones(16))
    assert (p[:8, labels[0]] > 0.99).all() and (p[8:, labels[8]] > 0.99).all()


def test_soft_assignment_follows_eq8():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    p = soft_assign(z, labels, temperature=2.0)
    centres = torch.tensor([[0.5, 0.0], [10.5, 0.0]])
    d = torch.cdist(z, centres)
    assert torch.allclose(p, torch.softmax(-d / 2.0, dim=1))


def test_mmd_is_zero_for_identical_environments():
    phi = torch.randn(10, 3)
    p = torch.full((10, 2), 0.5)
    assert weighted_mmd2(phi, p).item() < 1e-6
    hard = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    same = torch.cat([phi[:5], phi[:5]])                         # environment 2 is a copy of environment 1
    assert weighted_mmd2(same, hard).item() < 1e-5


def test_mmd_is_positive_with_gradient_for_different_environments():
    phi = torch.cat([torch.zeros(5, 1), torch.ones(5, 1) * 3]).requires_grad_(True)
    hard = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    mmd = weighted_mmd2(phi, hard)
    assert mmd.item() > 0.1
    mmd.backward()
    assert phi.grad.abs().sum() > 0


def test_mmd_matches_the_v_statistic_for_hard_assignments():
    g = torch.Generator().manual_seed(3)
    phi = torch.randn(6, 2, generator=g)
    hard = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    sq = torch.cdist(phi, phi).pow(2)
    sigma2 = sq[sq > 0].median()
    k = torch.exp(-sq / (2 * sigma2))
    expected = k[:3, :3].mean() + k[3:, 3:].mean() - 2 * k[:3, 3:].mean()
    assert torch.allclose(weighted_mmd2(phi, hard), expected, atol=1e-6)


def reference_mmd2(phi: np.ndarray, p: np.ndarray) -> float:
    """Eq. 10 written out: Gaussian kernel, sigma^2 = median of the non-zero pairwise squared distances, each
    environment the batch weighted by p_ik / sum_i p_ik, squared MMD summed over every pair of environments."""
    n, envs = len(phi), p.shape[1]
    sq = [[sum((phi[i, d] - phi[j, d]) ** 2 for d in range(phi.shape[1])) for j in range(n)] for i in range(n)]
    sigma2 = float(np.median([sq[i][j] for i in range(n) for j in range(i + 1, n) if sq[i][j] > 0]))
    kernel = [[np.exp(-sq[i][j] / (2 * sigma2)) for j in range(n)] for i in range(n)]
    w = [[p[i, k] / sum(p[:, k]) for k in range(envs)] for i in range(n)]

    def cross(a, b):  # E_{z ~ env a, z' ~ env b} k(z, z')
        return sum(w[i][a] * w[j][b] * kernel[i][j] for i in range(n) for j in range(n))

    return sum(cross(a, a) + cross(b, b) - 2 * cross(a, b) for a, b in itertools.combinations(range(envs), 2))


def test_mmd_with_soft_weights_and_three_environments_matches_the_double_loop_reference():
    rng = np.random.default_rng(11)
    groups = np.arange(11) % 3                                     # 11 samples: 55 pairs, an unambiguous median
    phi = rng.normal(size=(11, 2)) + groups[:, None] * np.array([1.5, -1.0])
    logits = 2.0 * np.eye(3)[groups] + rng.normal(size=(11, 3)) * 0.5
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert p.max() < 0.99
    expected = reference_mmd2(phi, p)
    got = weighted_mmd2(torch.tensor(phi, dtype=torch.float32), torch.tensor(p, dtype=torch.float32))
    assert expected > 0.05
    assert got.item() == pytest.approx(expected, abs=1e-5)


def regularizer(**kw):
    torch.manual_seed(0)
    return CausalRegularizer(hidden_size=4, config=CausalConfig(projection_dim=4, **kw))


def test_all_noise_falls_back_to_one_environment_without_mmd():
    reg = regularizer(min_samples=50)                # more than the batch: every point is noise
    losses = torch.rand(8, requires_grad=True)
    loss, penalty, stats = reg(losses, torch.randn(8, 4), torch.randn(8), torch.randn(8, 4))
    assert stats["causal/single_env"] == 1.0 and stats["causal/envs"] == 0
    assert torch.allclose(loss, losses.mean()) and penalty.item() == 0.0


def test_one_cluster_falls_back_to_one_environment():
    reg = regularizer()
    h = torch.ones(8, 4) + torch.randn(8, 4) * 1e-4      # one tight blob
    loss, penalty, stats = reg(torch.rand(8), h, torch.randn(8), torch.randn(8, 4))
    assert stats["causal/envs"] == 1.0 and penalty.item() == 0.0


def test_two_environments_give_mmd_gradient_to_the_matched_reward():
    """Far-apart blobs saturate the soft assignment (g's gradient underflows to 0 here); the non-zero gradient the
    penalty gives g is tested in test_projection.py."""
    reg = regularizer(eps_quantile=0.5, normalize=False)
    with torch.no_grad():
        reg.g.weight.copy_(torch.eye(4))
        reg.g.bias.zero_()
    h = two_blobs(n=6).requires_grad_(True)
    reward = torch.cat([torch.zeros(6), torch.ones(6) * 2]).requires_grad_(True)
    loss, penalty, stats = reg(torch.rand(12), h, reward, torch.randn(12, 4))
    assert stats["causal/envs"] == 2.0
    assert penalty.item() > 0
    (loss + penalty).backward()
    assert reward.grad.abs().sum() > 0
    assert reg.g.weight.grad is not None and torch.isfinite(reg.g.weight.grad).all()


def test_backdoor_adjustment_with_dro_reduce_and_hard_assignments_is_per_environment_dro():
    g = torch.Generator().manual_seed(4)
    losses = torch.rand(9, generator=g) * 3
    labels = torch.tensor([0, 0, 1, 2, 1, 0, 2, 2, 2])
    p = torch.nn.functional.one_hot(labels, 3).float()
    reduce = lambda l, w=None: dro_reduce(l, w, beta_prime=0.5)  # noqa: E731
    expected = sum((labels == k).float().mean() * dro_reduce(losses[labels == k], beta_prime=0.5) for k in range(3))
    assert torch.allclose(backdoor_adjusted(losses, p, reduce), expected, atol=1e-5)
    assert not torch.allclose(expected, reduce(losses))          # not the batch DRO


def test_regularizer_uses_the_given_reduce():
    reg = regularizer(min_samples=50)                            # one environment: the plain reduce
    losses = torch.rand(8)
    reduce = lambda l, w=None: dro_reduce(l, w, beta_prime=0.5)  # noqa: E731
    loss, _, _ = reg(losses, torch.randn(8, 4), torch.randn(8), torch.randn(8, 4), reduce=reduce)
    assert torch.allclose(loss, reduce(losses))


def test_history_stats_align_per_step_figures_with_the_steps_that_had_environments():
    from methods.preference import causal_history_stats

    history = {"causal/envs": [1.0, 2.0, 3.0, 0.0], "causal/z_spread": [0.5, 0.4, 0.3, 0.2],
               "causal/assignment_entropy": [0.9, 0.5], "causal/effective_envs": [1.8, 2.5]}
    out = causal_history_stats(history)
    assert out["single_env_fraction"] == 0.5 and out["mean_envs"] == 1.5
    steps = out["causal_per_step"]
    assert steps["envs"] == [1, 2, 3, 0] and steps["z_spread"] == [0.5, 0.4, 0.3, 0.2]
    assert np.isnan(steps["assignment_entropy"][0]) and steps["assignment_entropy"][1:3] == [0.9, 0.5]
    assert np.isnan(steps["effective_envs"][3]) and out["effective_envs"] == pytest.approx(2.15)
    assert out["assignment_entropy"] == pytest.approx(0.7) and out["z_spread"] == pytest.approx(0.35)
