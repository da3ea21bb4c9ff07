"""S-DPO: Softmax DPO for recommendation (Chen et al., NeurIPS 2024, arXiv 2406.09215), Eq. 11 / the official
softmax_dpo_trainer.py (not TRL's `SDPOTrainer`, which is Self-Distillation Policy Optimization).

L = -log sigmoid( -log sum_{k=1..K} exp( beta * [r(y_{l_k}) - r(y_w)] ) ),   r(y) = log pi(y|x) - log pi_ref(y|x),

averaged over the batch; log-probs summed over the completion tokens (title + EOS). K = 1 is DPO exactly.
Choices: K = 3 (`negatives`), the official training script's setting (chenyuxin1999/S-DPO @ 07befa4,
softmax_dpo.sh: ``--neg_num 3``; its dpo.sh runs DPO with 1); with K = 1 S-DPO would be DPO with another beta. The
CausalDPO paper runs every DPO method with one negative (Appendix B.3): the `paper` profile sets
``sdpo.negatives: null``, which falls back to the run's ``preference.negatives`` (`--negatives`). Negatives are
seeded random catalogue items outside the user's history (the official code
samples from the prompt's 20-candidate list; a full-ranking benchmark has no candidate list). beta = 1.0, the
official scripts' value (the script's python default is 0.1). Reference = the cell's SFT model (cached log-probs),
chosen and all K rejected responses in one forward pass, as the official trainer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Paper, register
from methods.preference import PreferenceMethod


@dataclass
class SDPOConfig:
    beta: float = field(default=1.0, metadata={"help": "beta: scale of the implicit reward"})
    negatives: int | None = field(default=3, metadata={
        "help": "K rejected titles per prompt (S-DPO's script: 3); None: the run's preference.negatives"})


@register
class SDPO(PreferenceMethod):
    name = "sdpo"
    paper = Paper("On Softmax Direct Preference Optimization for Recommendation", "2406.09215")
    Config = SDPOConfig
    loss = "sdpo"
