"""Reference rows every table needs: the SFT model alone, the untrained backbone, most-popular and random.

- `sft`: the cell's SFT model under the run's ranking protocol (the paper's ablation "w/o CausalDPO", Table 8).
- `base`: the backbone before any training ("w/o both", Table 8).
- `mostpop`: every user gets the catalogue ordered by training interaction count (ties by catalogue position).
- `oracle-mf` (exposure only): the exposure shift's imputation MF (`Split.extras`), which drew the OOD targets,
  ranking for each test user by its scores: the ceiling of the exposure column, labelled as a reference.
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
from methods.hparams import ConfigError
from methods.ranking import top_k


@dataclass
class NoConfig:
    pass


@register
class SFTOnly(Method):
    name = "sft"
    fit_cacheable = False  # loads a model the cache holds: nothing to keep
    paper = Paper("Supervised fine-tuning on next-item titles (the shared starting point of every LLM method)", "")
    Config = NoConfig

    def fit(self, ctx: MethodContext):
        return ctx.recommender(ctx.load_sft_model())


@register
class BaseModel(Method):
    name = "base"
    fit_cacheable = False  # loads a model the cache holds: nothing to keep
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
    fit_cacheable = False  # a ranking of its own
    paper = Paper("Most popular items (non-personalised sanity baseline)", "")
    Config = NoConfig
    uses_sft = False

    def ranking_key(self, ranking) -> str:
        return "fixed"

    def fit(self, ctx: MethodContext):
        order = np.lexsort((np.arange(len(ctx.train_counts)), -ctx.train_counts))
        ctx.stats["protocol"] = "popularity order"
        return _FixedRanker(lambda _prompt: order)


@register
class RandomRanking(Method):
    name = "random"
    fit_cacheable = False  # a ranking of its own
    paper = Paper("Uniformly random ranking (chance level)", "")
    Config = NoConfig
    uses_sft = False

    def ranking_key(self, ranking) -> str:
        return "fixed"

    def fit(self, ctx: MethodContext):
        n, seed = len(ctx.items), ctx.seed
        ctx.stats["protocol"] = "random order"
        return _FixedRanker(lambda prompt: np.random.default_rng([seed, prompt_digest(prompt)]).permutation(n))


def prompt_digest(prompt) -> int:
    """A stable 32-bit digest of a prompt's token ids: seeds its random order whatever its row or shard."""
    return zlib.crc32(np.asarray(prompt, dtype=np.int64).tobytes())


class _MFRanker:
    """Ranks every catalogue item by a matrix factorisation's (unclipped) score for the sample's user; items the
    MF never saw score -inf (unranked)."""

    needs_users = True  # the harness passes `users` (an MF knows users, not prompts)

    def __init__(self, mf, items: np.ndarray):
        self.mf = mf
        column = np.searchsorted(mf.items, items)
        self.known = (column < len(mf.items)) & (mf.items[np.minimum(column, len(mf.items) - 1)] == items)
        self.column = np.where(self.known, column, 0)

    def scores(self, users) -> np.ndarray:
        mf, users = self.mf, np.asarray(users, dtype=np.int64)
        row = np.searchsorted(mf.users, users)
        if not np.array_equal(mf.users[np.minimum(row, len(mf.users) - 1)], users):
            raise KeyError("oracle-mf: a test user was not in the imputation MF's fit")
        return np.where(self.known[None, :], mf.predict_rows(row, clip=False)[:, self.column], -np.inf)

    def rank(self, prompts, histories, k, exclude=None, users=None):
        if users is None:
            raise ValueError("oracle-mf ranks by user: the harness must pass the samples' users")
        return top_k(self.scores(users), k, exclude), np.ones(len(users), dtype=bool)


@register
class ImputationOracle(Method):
    """The exposure shift's generating model as a reference row: a ceiling, never a method."""

    name = "oracle-mf"
    fit_cacheable = False  # a ranking of its own
    paper = Paper("Reference ceiling: the exposure shift's own imputation MF (biased MF, Saito 2020)", "",
                  "ranks by the MF that drew the OOD targets; exposure only; labelled as a ceiling")
    Config = NoConfig
    uses_sft = False
    shifts = ("exposure",)

    def ranking_key(self, ranking) -> str:
        return "fixed"

    def fit(self, ctx: MethodContext):
        mf = ctx.split.extras.get("imputation_mf")
        if mf is None:
            raise ConfigError(f"oracle-mf ranks with the exposure shift's imputation MF; shift {ctx.split.shift!r} "
                              f"has none (use --shift exposure)")
        ctx.stats["protocol"] = "imputation MF scores"
        return _MFRanker(mf, np.asarray(ctx.items, dtype=np.int64))
