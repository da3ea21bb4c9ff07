"""Preference losses over completion log-probabilities, one small function each, their reductions, and registries.

Every loss has the signature ``loss(policy, reference, config) -> (B,)``: the policy's and the reference's sequence
log-probs of the chosen response, shape (B,), and of K rejected responses, shape (B, K) (`LogProbs`, token counts
alongside), and the method's config dataclass (it reads the fields it needs, e.g. `beta`, `gamma_beta_ratio`).
For the beta-only losses `config` may also be a plain float beta (``dpo_loss(p, r, 0.1)``). The per-sample loss is
then reduced by the method's reduction, ``reduce(per_sample, weights=None)``: weights (B,) summing to 1, the plain
form being uniform weights 1/B. Adding a loss is one function, one `LOSSES.add` line and a test against its formula.
Reference-free losses (`simpo`, `cpo`) ignore `reference` (the trainer passes zeros).

- `dpo` (Rafailov et al., 2023, arXiv 2305.18290, Eq. 7): -log sigmoid(beta * [(pi_w - ref_w) - (pi_l - ref_l)]).
  With K > 1 rejected responses, plain DPO averages the K pairwise losses (each negative as its own pair, the
  usual way to feed DPO several negatives); S-DPO's softmax form is a different loss.
- `sdpo` (Chen et al., 2024, arXiv 2406.09215): -log sigmoid(-log sum_k exp(beta * [r_k - r_w])), r = pi - ref.
- `dmpo` (Bai et al., 2024, arXiv 2405.16127): -log sigmoid(beta * r_w - (1/K) sum_k beta * r_k).
- `simpo` (Meng et al., 2024, arXiv 2405.14734): -log sigmoid(beta * [avg_w - avg_l] - gamma), avg = log pi / |y|,
  gamma = gamma_beta_ratio * beta, averaged over the K negatives like DPO; no reference.
- `cpo` (Xu et al., 2024, arXiv 2401.08417): -log sigmoid(beta * [pi_w - pi_l]) (averaged over K) + alpha * NLL(y_w),
  NLL = token-mean negative log-likelihood of the chosen response; no reference.
- `rosepo` (Liao et al., 2024, arXiv 2410.12519): DPO with a per-pair label-smoothing factor eps (conservative-DPO
  form), -[(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)], h = (pi_w - ref_w) - (pi_l - ref_l), averaged
  over the K pairs. eps (B, K) comes with the pair set (`LogProbs.smoothing`, filled by the trainer from
  `PreferencePairs.smoothing`); without it the constant `config.epsilon` (cDPO; 0 for a float beta: plain DPO).

Reductions: `mean_reduce` (sum_i w_i l_i) and `dro_reduce` (Dr.DPO, Wu et al., 2024, arXiv 2407.07880):
-beta' * log sum_i w_i exp(-l_i / beta'), i.e. -beta' * log mean_i exp(-l_i / beta') for uniform weights.
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
    smoothing: torch.Tensor | None = None      # optional per-pair label smoothing eps (B, K) of the pair set (RosePO)

    def averaged(self) -> "LogProbs":
        """Length-averaged log-probs (log pi / |y|); needs the token counts."""
        if self.chosen_len is None or self.rejected_len is None:
            raise ValueError("length-averaged log-probs need chosen_len and rejected_len")
        return LogProbs(self.chosen / self.chosen_len.to(self.chosen.dtype),
                        self.rejected / self.rejected_len.to(self.rejected.dtype), self.chosen_len, self.rejected_len,
                        self.smoothing)


def _beta(config) -> float:
    return float(config) if isinstance(config, (int, float)) else float(config.beta)


def implicit_rewards(policy: LogProbs, reference: LogProbs, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)) for the chosen (B,) and rejected (B, K) responses."""
    return beta * (policy.chosen - reference.chosen), beta * (policy.rejected - reference.rejected)


def dpo_loss(policy: LogProbs, reference: LogProbs, config) -> torch.Tensor:
    chosen, rejected = implicit_rewards(policy, reference, _beta(config))
    return -F.logsigmoid(chosen.unsqueeze(1) - rejected).mean(dim=1)


def sdpo_loss(policy: LogProbs, reference: LogProbs, config) -> torch.Tensor:
    chosen, rejected = implicit_rewards(policy, reference, _beta(config))
    return -F.logsigmoid(-torch.logsumexp(rejected - chosen.unsqueeze(1), dim=1))


def dmpo_loss(policy: LogProbs, reference: LogProbs, config) -> torch.Tensor:
    chosen, rejected = implicit_rewards(policy, reference, _beta(config))
    return -F.logsigmoid(chosen - rejected.mean(dim=1))


def simpo_loss(policy: LogProbs, reference: LogProbs, config) -> torch.Tensor:
    beta = float(config.beta)
    lp = policy.averaged() if getattr(config, "length_normalize", True) else policy
    gamma = float(config.gamma_beta_ratio) * beta
    return -F.logsigmoid(beta * (lp.chosen.unsqueeze(1) - lp.rejected) - gamma).mean(dim=1)


def cpo_loss(policy: LogProbs, reference: LogProbs, config) -> torch.Tensor:
    beta = float(config.beta)
    prefer = -F.logsigmoid(beta * (policy.chosen.unsqueeze(1) - policy.rejected)).mean(dim=1)
    nll = -policy.chosen / policy.chosen_len.to(policy.chosen.dtype)
    return prefer + float(config.alpha) * nll


def rosepo_loss(policy: LogProbs, reference: LogProbs, config) -> torch.Tensor:
    chosen, rejected = implicit_rewards(policy, reference, _beta(config))
    margin = chosen.unsqueeze(1) - rejected                                  # beta * h, (B, K)
    eps = policy.smoothing if policy.smoothing is not None else reference.smoothing
    if eps is None:
        eps = torch.full_like(margin, 0.0 if isinstance(config, (int, float)) else float(config.epsilon))
    eps = eps.to(margin.dtype)
    return -((1 - eps) * F.logsigmoid(margin) + eps * F.logsigmoid(-margin)).mean(dim=1)


def mean_reduce(per_sample: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i w_i l_i; the batch mean when `weights` is None."""
    if weights is None:
        return per_sample.mean()
    return (weights * per_sample).sum()


def dro_reduce(per_sample: torch.Tensor, weights: torch.Tensor | None = None, beta_prime: float = 1.0) -> torch.Tensor:
    """Dr.DPO: -beta' * log sum_i w_i exp(-l_i / beta') (w_i = 1/B: -beta' * log mean_i exp(-l_i / beta')).

    Computed around the weighted mean x_bar of x_i = -l_i / beta': log sum_i w_i exp(x_i) = x_bar +
    log1p(sum_i w_i expm1(x_i - x_bar)) when the spread is small (large beta': no cancellation, so the DPO mean is
    recovered in float32), else the log-sum-exp form."""
    if weights is None:
        weights = torch.full_like(per_sample, 1.0 / per_sample.numel())
    x = -per_sample / beta_prime
    x_bar = (weights * x).sum()
    d = x - x_bar
    if float(d.detach().abs().max()) < 1.0:
        return -beta_prime * (x_bar + torch.log1p((weights * torch.expm1(d)).sum()))
    log_w = torch.log(weights.clamp_min(torch.finfo(weights.dtype).tiny))
    return -beta_prime * torch.logsumexp(x + log_w, dim=0)


LOSSES: Registry = Registry("preference loss")
LOSSES.add("dpo", dpo_loss)
LOSSES.add("sdpo", sdpo_loss)
LOSSES.add("dmpo", dmpo_loss)
LOSSES.add("simpo", simpo_loss)
LOSSES.add("cpo", cpo_loss)
LOSSES.add("rosepo", rosepo_loss)
