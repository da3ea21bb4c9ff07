"""CausalDPO (arXiv 2603.22335, Eq. 10 and Algorithm 1): DPO plus the causal regularizer of `methods.causal`
(soft-clustered pseudo-environments, backdoor adjustment, p-weighted MMD across environments).

Same pairs, negatives, reference and schedule as `dpo` (so the two differ only by the regularizer); every choice
where the paper is vague is listed in `methods.causal`'s docstring. Defaults: beta 0.1 as DPO, lambda 1.0.

`causaldpo-nosft` is the paper's Table 8 ablation "w/o SFT": the same training started from the untrained backbone,
which is then also the reference model (DPO's reference is the model training starts from).
"""
from __future__ import annotations

from methods.base import Paper, register
from methods.dpo import DPO
from methods.preference import with_causal

CausalDPO = register(with_causal(
    DPO, name="causaldpo",
    paper=Paper("Causal Direct Preference Optimization for Distributionally Robust Generative Recommendation",
                "2603.22335")))


@register
class CausalDPONoSFT(CausalDPO):
    name = "causaldpo-nosft"
    paper = Paper("CausalDPO ablation w/o SFT (Table 8): CausalDPO from the base backbone", "2603.22335")
    uses_sft = False
