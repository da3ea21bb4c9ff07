"""DMPO: Direct Multi-Preference Optimization (Bai et al., CIKM 2024, arXiv 2405.16127, Section 3).

L = -log sigmoid( beta * r(y_w) - (1/K) sum_{k=1..K} beta * r(y_{l_k}) ),   r(y) = log pi(y|x) - log pi_ref(y|x),

averaged over the batch; log-probs summed over the completion tokens (title + EOS). The positive's implicit reward
is pushed above the MEAN of the K negatives' rewards (S-DPO instead takes a log-sum-exp, i.e. weights hard
negatives). K = 1 is DPO exactly. The equation follows the paper's description ("maximizing the probability of
positive samples and minimizing the probability of multiple negative samples", Section 3).

How this differs from the public code (BZX667/DMPO @ fe6ecb5, a LLaMA-Factory fork): that code passes the
reference CHOSEN log-probs twice to TRL's dpo_loss, so its reference term cancels (a reference-free pairwise loss),
adds an SFT term on the chosen response (dpo_ftx, 1.0 in run.sh), and feeds the K negatives as K separate pairwise
files (an average of pairwise losses, not the mean inside the sigmoid) on a pairwise ranking task. Here: the
paper's formula with a real reference model (the cell's SFT model, cached log-probs), the K negatives in one
forward pass, no SFT term, next-title generation. beta 0.1 (LLaMA-Factory's dpo_beta default). K = 5
(`negatives`): the released data holds five negatives per prompt (data/rec_*_dpo_ranking_{1..5}.json @ fe6ecb5);
with K = 1 DMPO is DPO exactly. The CausalDPO paper runs every DPO method with one negative (Appendix B.3): the
`paper` profile sets ``dmpo.negatives: null``, the run's ``preference.negatives``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Paper, register
from methods.preference import PreferenceMethod


@dataclass
class DMPOConfig:
    beta: float = field(default=0.1, metadata={"help": "beta: scale of the implicit reward"})
    negatives: int | None = field(default=5, metadata={
        "help": "K rejected titles per prompt (the released data: 5); None: the run's preference.negatives"})


@register
class DMPO(PreferenceMethod):
    name = "dmpo"
    paper = Paper("Finetuning Large Language Model for Personalized Ranking", "2405.16127")
    Config = DMPOConfig
    loss = "dmpo"
