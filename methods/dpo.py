"""DPO: Direct Preference Optimization (Rafailov et al., 2023, arXiv 2305.18290), Eq. 7.

L = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))]), averaged over
the batch, log-probs summed over the completion tokens (title + EOS) only. The reference is the cell's SFT model
(its log-probs precomputed once and cached); the policy starts from the same SFT model. Negatives: seeded random
catalogue items outside the history (the CausalDPO paper's setting, Appendix B.3, after S-DPO). With
`--set preference.negatives=K` each prompt brings K rejected titles and the K pairwise losses are averaged.
beta = 0.1 by default (TRL's and SPRec's value; the CausalDPO release's scripts also end up using 0.1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Paper, register
from methods.preference import PreferenceMethod


@dataclass
class DPOConfig:
    beta: float = field(default=0.1, metadata={"help": "beta: scale of the implicit reward"})


@register
class DPO(PreferenceMethod):
    name = "dpo"
    paper = Paper("Direct Preference Optimization: Your Language Model is Secretly a Reward Model", "2305.18290")
    Config = DPOConfig
    loss = "dpo"
