"""Reference rows every table needs: the SFT model alone, the untrained backbone, most-popular and random.

- `sft`: the cell's SFT model under the run's ranking protocol (the paper's ablation "w/o CausalDPO", Table 8).
- `base`: the backbone before any training ("w/o both", Table 8).
- `mostpop`: every user gets the catalogue ordered by training interaction count (ties by catalogue position).
- `random`: a seeded random permutation of the catalogue per sample (seeded by the run's seed and the prompt's
  tokens, so it does not depend on the sample's row or shard): the chance level of every metric.
With ``ranking.exclude_seen`` (the default) each sample's list leaves out the user's training-part items, as for
every method.
"""
from __future__ import annotations

import zlib
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
    """Ranks by an order that depends on nothing but the prompt (so a sharded test set ranks the same)."""

    def __init__(self, order_for_prompt):
        self.order_for_prompt = order_for_prompt

    def rank(self, prompts, histories, k, exclude=None):
        topk = np.full((len(prompts), k), -1, dtype=np.int64)
        for i in range(len(prompts)):
            order = self.order_for_prompt(prompts[i])
            if exclude is not None:
                order = order[~np.isin(order, exclude[i])]
            topk[i, : min(k, len(order))] = order[:k]
        return topk, np.ones(len(prompts), dtype=bool)


@register
class MostPopular(Method):
    name = "mostpop"
    paper = Paper("Most popular items (non-personalised sanity baseline)", "")
    Config = NoConfig
    uses_sft = False

    def fit(self, ctx: MethodContext):
        order = np.lexsort((np.arange(len(ctx.train_counts)), -ctx.train_counts))
        ctx.stats["protocol"] = "popularity order"
        return _FixedRanker(lambda _prompt: order)


@register
class RandomRanking(Method):
    name = "random"
    paper = Paper("Uniformly random ranking (chance level)", "")
    Config = NoConfig
    uses_sft = False

    def fit(self, ctx: MethodContext):
        n, seed = len(ctx.items), ctx.seed
        ctx.stats["protocol"] = "random order"
        return _FixedRanker(lambda prompt: np.random.default_rng([seed, prompt_digest(prompt)]).permutation(n))


def prompt_digest(prompt) -> int:
    """A stable 32-bit digest of a prompt's token ids: seeds its random order whatever its row or shard."""
    return zlib.crc32(np.asarray(prompt, dtype=np.int64).tobytes())
