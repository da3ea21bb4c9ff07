"""Reference rows every table needs: the SFT model alone, the untrained backbone, most-popular and random.

- `sft`: the cell's SFT model under the run's ranking protocol (the paper's ablation "w/o CausalDPO", Table 8).
- `base`: the backbone before any training ("w/o both", Table 8).
- `mostpop`: every user gets the catalogue ordered by training interaction count (ties by catalogue position).
- `random`: a seeded random permutation of the catalogue per sample: the chance level of every metric.
None of them excludes history items, like the LLM protocols.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from methods.base import Method, MethodContext, Paper, register


@dataclass
class NoConfig:
    pass


@register
class SFTOnly(Method):
    name = "sft"
    paper = Paper("Supervised fine-tuning on next-item titles (the shared starting point of every LLM method)", "")
    Config = NoConfig

    def fit(self, ctx: MethodContext):
        return ctx.recommender(ctx.load_sft_model())


@register
class BaseModel(Method):
    name = "base"
    paper = Paper("The backbone before SFT and preference alignment (ablation 'w/o both')", "")
    Config = NoConfig
    uses_sft = False

    def fit(self, ctx: MethodContext):
        return ctx.recommender(ctx.load_base_model())


class _FixedRanker:
    def __init__(self, order_for_row):
        self.order_for_row = order_for_row

    def rank(self, prompts, histories, k):
        topk = np.stack([self.order_for_row(i)[:k] for i in range(len(prompts))]) if prompts else \
            np.empty((0, k), np.int64)
        return topk.astype(np.int64), np.ones(len(prompts), dtype=bool)


@register
class MostPopular(Method):
    name = "mostpop"
    paper = Paper("Most popular items (non-personalised sanity baseline)", "")
    Config = NoConfig
    uses_sft = False

    def fit(self, ctx: MethodContext):
        order = np.lexsort((np.arange(len(ctx.train_counts)), -ctx.train_counts))
        ctx.stats["protocol"] = "popularity order"
        return _FixedRanker(lambda _row: order)


@register
class RandomRanking(Method):
    name = "random"
    paper = Paper("Uniformly random ranking (chance level)", "")
    Config = NoConfig
    uses_sft = False

    def fit(self, ctx: MethodContext):
        n, seed = len(ctx.items), ctx.seed
        ctx.stats["protocol"] = "random order"
        return _FixedRanker(lambda row: np.random.default_rng([seed, row]).permutation(n))
