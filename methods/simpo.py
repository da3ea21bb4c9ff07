"""SimPO: Simple Preference Optimization with a Reference-Free Reward (Meng, Xia, Chen, NeurIPS 2024,
arXiv 2405.14734), Eq. 6.

L = -log sigmoid( (beta/|y_w|) log pi(y_w|x) - (beta/|y_l|) log pi(y_l|x) - gamma ),  gamma = gamma_beta_ratio * beta,

averaged over the batch. Choices:
- log-probs are summed over the completion tokens (title + EOS) and divided by the completion's token count
  (`length_normalize`, SimPO's `average_log_prob=True`; False gives summed log-probs, used by the identity test:
  gamma 0 + summed = reference-free DPO).
- No reference model (`needs_reference = False`): no reference log-probs are computed, the trainer gets zeros, so
  no reference pass is counted in seconds per epoch (the paper's Table 6: SimPO is the fastest).
- Defaults are the official SimPOConfig: beta 2.0, gamma_beta_ratio 0.25 (gamma 0.5); no label smoothing, sigmoid
  (not hinge), sft_weight 0 (the official defaults).
- With K > 1 rejected responses the K pairwise SimPO losses are averaged (as `dpo`); SimPO itself is pairwise.
- `simpo+causal`: the regularizer's reward MMD target is beta * the length-averaged chosen log-prob (SimPO's reward).
- Same pairs, negatives and schedule as `dpo`. SimPO's tuned learning rates (3e-7..1e-6) are for 7B models; the
  benchmark uses the run's `preference.learning_rate` for all preference methods.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Paper, register
from methods.preference import PreferenceMethod, length_averaged_chosen_reward


@dataclass
class SimPOConfig:
    beta: float = field(default=2.0, metadata={"help": "beta: scale of the length-averaged reward"})
    gamma_beta_ratio: float = field(default=0.25, metadata={"help": "gamma / beta (target margin gamma = ratio*beta)"})
    length_normalize: bool = field(default=True, metadata={"help": "average log-probs over completion tokens"})


@register
class SimPO(PreferenceMethod):
    name = "simpo"
    paper = Paper("SimPO: Simple Preference Optimization with a Reference-Free Reward", "2405.14734")
    Config = SimPOConfig
    loss = "simpo"
    needs_reference = False

    def chosen_reward(self, policy, reference, beta):
        return length_averaged_chosen_reward(policy, reference, beta)
