"""The causal regularizer of CausalDPO (arXiv 2603.22335, Section 3.3, Eqs. 6-10, Algorithm 1), composable with
any preference loss (`causaldpo` = `dpo+causal`; `simpo+causal` etc. reuse it).

The paper leaves several choices free and its released code does not implement the method (constant features, an
untrained projection, identity "environment batches", a near-constant MMD).
This module implements the equations; every choice is stated here and in `CausalConfig`:

1. h_i: the policy's last-layer hidden state at the last prompt token, taken from the same forward pass that gives
   the log-probs (no extra forward). It depends on the whole history, unlike the released code's position 0.
2. g (Section 3.3): a trainable linear map d -> d' (`projection_dim`, default 32), optimised with the policy.
   z_i = g(h_i), L2-normalised (`normalize`) so that DBSCAN's eps and the temperature live on a fixed scale and g
   cannot shrink every distance to zero.
3. DBSCAN (scikit-learn) on the detached z of the batch, `min_samples` as configured; eps is data-driven: the
   `eps_quantile` quantile of each point's distance to its (min_samples-1)-th nearest other point. Noise points
   are excluded from the centres (Eq. 7) but still receive soft assignments. K = number of clusters found (the
   paper: "data-driven rather than manually specified"). If fewer than two clusters are found the step has one
   environment: the loss is the plain mean and there is no MMD term; the fraction of such steps is logged.
4. Soft assignment (Eq. 8): p_ik = softmax_k(-||z_i - c_k|| / tau) with Euclidean distance and temperature tau.
   How gradient flows through the assignments (`assignment`):
   * ``joint`` (default; the paper's "co-optimised"): centres and p carry gradient to g and to the policy, both
     minimising the total loss. Beware the degenerate path: the MMD can be driven to zero by making the
     environments indistinguishable (p_ik -> 1/K for every sample), which switches the regularizer off;
   * ``detached``: p is a constant of each step (g is then never trained: a fixed random projection of h);
   * ``adversarial``: the assignment side maximises the MMD that the policy minimises, as environment-inference
     methods do (EIIL, Creager et al. 2021): p is computed from g(h.detach()) behind a gradient reversal, so g ascends
     the MMD (finds the most different environments) while the policy, through the matched representation, descends
     it; the policy gets no gradient through the assignments.
   Every step logs the assignment entropy (mean over samples of -sum_k p_ik log p_ik, divided by log K), the
   effective number of environments (exp of the entropy of p_hat) and the spread of z (mean distance to the batch's
   mean z), so a collapse towards indistinguishable environments is visible in the record.
5. Backdoor adjustment (Eq. 6, with p_hat(E=k) = the batch mean of p_ik), through the method's own reduction:
   L = sum_k p_hat_k * reduce(l, w_k), w_ik = p_ik / sum_i p_ik (the environment's normalised weights), where
   `reduce(l, w)` is the base method's batch reduction with weights summing to 1 (`methods.losses`). For the mean
   (DPO, S-DPO, DMPO, SimPO, CPO) reduce(l, w_k) = sum_i w_ik l_i and the sum equals the plain batch mean of l_i
   exactly (sum_i p_ik = B p_hat_k); it is implemented as written and a test keeps the identity, so for these
   losses the method's effect comes from the MMD term. For Dr.DPO's DRO reduction it is sum_k p_hat_k times the
   DRO aggregate within environment k, which is not the batch DRO: the pessimistic aggregation then acts within
   each pseudo-environment (with hard one-hot assignments, exactly the DRO of each environment; tested). One
   environment: the plain reduce(l).
6. MMD (Eq. 10, Eq. 44): the squared MMD with a Gaussian kernel between every pair of pseudo-environments, each
   environment being the batch weighted by p_ik (Eq. 9's weights, normalised per environment: a weighted
   V-statistic), summed over pairs. The kernel bandwidth follows the median heuristic: sigma^2 = the median of the
   batch's non-zero pairwise squared distances (detached). The representation of (x, y_w) whose distribution is
   matched (`mmd_target`): `reward`, the chosen response's implicit reward beta*(log pi - log pi_ref) (the paper's
   "policy score"; for the reference-free losses SimPO and CPO, whose reward has no reference term, it is
   beta * the length-averaged chosen log-prob, SimPO's own reward, used for CPO too so that title length does not
   dominate the matched distribution; see `PreferenceMethod.chosen_reward`), or `hidden`, the policy's last hidden
   state at the chosen response's EOS. Both carry gradient to the policy and come from the same forward pass.
7. Total: L_base (adjusted) + lambda * MMD^2 (`mmd_weight`).
8. The batch (the paper's B of Algorithm 1) is the optimizer step's: with gradient accumulation or several processes
   the environments, centres, assignments and MMD are computed over every micro-batch of every process at once
   (`methods.train.whole_step`, exact gradients by gradient caching), never per micro-batch: at the paper profile's
   16 x 4 accumulation over 8 GPUs a micro-batch holds 2 rows, too few for DBSCAN to find two environments.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from sklearn.cluster import DBSCAN
from torch import nn

from methods.losses import mean_reduce


@dataclass
class CausalConfig:
    mmd_weight: float = field(default=1.0, metadata={"help": "lambda: weight of the MMD invariance term (Eq. 10)"})
    projection_dim: int = field(default=32, metadata={"help": "d': width of the trainable projection g"})
    min_samples: int = field(default=3, metadata={"help": "DBSCAN min_samples (the point itself included)"})
    eps_quantile: float = field(default=0.5, metadata={
        "help": "DBSCAN eps = this quantile of the distance to the (min_samples-1)-th nearest neighbour"})
    temperature: float = field(default=0.1, metadata={"help": "tau of the soft assignment (Eq. 8)"})
    normalize: bool = field(default=True, metadata={"help": "L2-normalise z = g(h) before clustering"})
    mmd_target: str = field(default="reward", metadata={"help": "reward (chosen implicit reward) or hidden",
                                                         "choices": ("reward", "hidden")})
    assignment: str = field(default="joint", metadata={
        "help": "gradient through the soft assignments: joint (g and the policy minimise the loss), detached (p "
                "constant), adversarial (g maximises the MMD the policy minimises)",
        "choices": ("joint", "detached", "adversarial")})


def dbscan_labels(z: np.ndarray, min_samples: int, eps_quantile: float) -> np.ndarray:
    """DBSCAN cluster labels (-1 = noise) with eps from the nearest-neighbour distance quantile rule."""
    n = len(z)
    if n <= 1:
        return -np.ones(n, dtype=np.int64)
    dist = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    kth = np.sort(dist, axis=1)[:, min(max(min_samples - 1, 1), n - 1) - 1]
    eps = max(float(np.quantile(kth, eps_quantile)), 1e-6)
    # one call per training step on a finite B x d' matrix we built: skip scikit-learn's per-call validation, which
    # costs more than the clustering itself at B = 16 (brute force: the batch is tiny, a tree does not pay off)
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return DBSCAN(eps=eps, min_samples=min_samples, algorithm="brute").fit_predict(z)


def soft_assign(z: torch.Tensor, labels: np.ndarray, temperature: float) -> torch.Tensor:
    """Eq. 7 centres of the found clusters and Eq. 8 soft assignments p (B, K)."""
    clusters = sorted(set(labels.tolist()) - {-1})
    member = torch.as_tensor(labels[:, None] == np.asarray(clusters)[None, :], dtype=z.dtype, device=z.device)
    centres = (member.T @ z) / member.sum(0).unsqueeze(1)  # (K, d'): the mean of each cluster's members
    return torch.softmax(-torch.cdist(z, centres) / temperature, dim=1)


def backdoor_adjusted(per_sample: torch.Tensor, p: torch.Tensor, reduce=mean_reduce) -> torch.Tensor:
    """Eq. 6: sum_k p_hat_k * reduce(l, w_k), w_ik = p_ik / sum_i p_ik, p_hat_k = mean_i p_ik. With the mean this is
    sum_k p_hat_k * (sum_i p_ik l_i / sum_i p_ik)."""
    weights = p / p.sum(0, keepdim=True)
    if reduce is mean_reduce:  # the same sums in one product
        env_losses = weights.T @ per_sample
    else:
        env_losses = torch.stack([reduce(per_sample, weights[:, k]) for k in range(p.shape[1])])
    return (p.mean(0) * env_losses).sum()


def weighted_mmd2(phi: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Sum over environment pairs of the squared MMD between p-weighted empirical distributions of phi (B, D)."""
    sq = (phi.unsqueeze(1) - phi.unsqueeze(0)).pow(2).sum(-1)  # exact zeros on the diagonal (cdist's matmul path
    positive = sq.detach()[sq.detach() > 0]                    # for > 25 rows leaves them slightly positive)
    sigma2 = positive.median() if positive.numel() else torch.ones((), device=phi.device)
    kernel = torch.exp(-sq / (2 * sigma2))
    w = p / p.sum(0, keepdim=True)
    m = w.T @ kernel @ w                                    # (K, K): E_k E_k' k(z, z')
    diag = torch.diagonal(m)
    pair = diag.unsqueeze(0) + diag.unsqueeze(1) - 2 * m    # MMD^2 between environments k and k'
    return torch.triu(pair, diagonal=1).sum().clamp_min(0.0)


ASSIGNMENTS = ("joint", "detached", "adversarial")


class _ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward: what follows is maximised by what precedes."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


def assignment_stats(p: torch.Tensor) -> dict[str, float]:
    """Normalised assignment entropy (1: every sample spread evenly, 0: hard assignments) and the effective number
    of environments, exp(entropy of the batch's environment shares)."""
    p = p.detach().double().clamp_min(1e-12)
    k = p.shape[1]
    entropy = float(-(p * p.log()).sum(1).mean() / np.log(k)) if k > 1 else 0.0
    share = p.mean(0)
    return {"causal/assignment_entropy": entropy, "causal/effective_envs": float((-(share * share.log()).sum()).exp())}


class CausalRegularizer(nn.Module):
    """Holds g. `forward` turns one batch's per-sample losses and representations into (adjusted loss, penalty,
    stats); it is `objective(per_sample, represent(h), matched(reward, hidden))`, and the trainer calls those three
    parts separately when an optimizer step spans several micro-batches or processes (`methods.train.whole_step`):
    the objective then runs once over the whole step's rows."""

    def __init__(self, hidden_size: int, config: CausalConfig):
        super().__init__()
        if config.mmd_target not in ("reward", "hidden"):
            raise ValueError(f"causal.mmd_target must be 'reward' or 'hidden', got {config.mmd_target!r}")
        if config.assignment not in ASSIGNMENTS:
            raise ValueError(f"causal.assignment must be one of {', '.join(ASSIGNMENTS)}, got {config.assignment!r}")
        self.config = config
        self.g = nn.Linear(hidden_size, config.projection_dim)
        self.last_labels: np.ndarray | None = None   # DBSCAN's labels of the last objective call (-1: noise)

    def forward(self, per_sample: torch.Tensor, prompt_hidden: torch.Tensor, chosen_reward: torch.Tensor,
                chosen_hidden: torch.Tensor, reduce=mean_reduce):
        """`reduce(per_sample, weights=None)`: the base method's batch reduction (the mean by default)."""
        return self.objective(per_sample, self.represent(prompt_hidden), self.matched(chosen_reward, chosen_hidden),
                              reduce)

    def represent(self, prompt_hidden: torch.Tensor) -> torch.Tensor:
        """z = g(h) of each sample (h detached under the adversarial assignment: only g sees the assignment side)."""
        hidden = prompt_hidden.to(self.g.weight.dtype)
        return self.project(hidden.detach() if self.config.assignment == "adversarial" else hidden)

    def matched(self, chosen_reward: torch.Tensor, chosen_hidden: torch.Tensor) -> torch.Tensor:
        """phi (B, D): the representation of (x, y_w) whose distribution the MMD matches across environments."""
        phi = chosen_reward.unsqueeze(1) if self.config.mmd_target == "reward" else chosen_hidden
        return phi.float()

    def objective(self, per_sample: torch.Tensor, z: torch.Tensor, phi: torch.Tensor, reduce=mean_reduce):
        """Environments from z (DBSCAN on the detached z, Eqs. 7-8), the backdoor-adjusted loss (Eq. 6) and
        lambda * MMD^2 of phi across environments (Eq. 10), over every row given."""
        cfg = self.config
        labels = dbscan_labels(z.detach().float().cpu().numpy(), cfg.min_samples, cfg.eps_quantile)
        self.last_labels = labels
        n_envs = len(set(labels.tolist()) - {-1})
        spread = float((z.detach() - z.detach().mean(0)).norm(dim=1).mean())
        base = {"causal/envs": float(n_envs), "causal/z_spread": spread, "causal/clustered": float(len(z))}
        if n_envs < 2:
            zero = per_sample.sum() * 0.0
            return reduce(per_sample), zero, {**base, "causal/single_env": 1.0}
        if cfg.assignment == "detached":
            z = z.detach()
        elif cfg.assignment == "adversarial":
            z = _ReverseGradient.apply(z)
        p = soft_assign(z, labels, cfg.temperature)
        adjusted = backdoor_adjusted(per_sample, p, reduce)
        mmd2 = weighted_mmd2(phi, p.float())
        stats = {**base, "causal/single_env": 0.0, "causal/mmd2": float(mmd2.detach()),
                 "causal/noise": float((labels == -1).mean()), **assignment_stats(p)}
        return adjusted, cfg.mmd_weight * mmd2, stats

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """z = g(h), L2-normalised when configured."""
        z = self.g(hidden)
        return F.normalize(z, dim=-1) if self.config.normalize else z
