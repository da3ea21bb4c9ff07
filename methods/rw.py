"""RW: IFairLRS reweighting (+ re-ranking) for item-side fairness (Jiang et al., WWW 2024, arXiv 2402.15215).

Reweighting (in-learning), as in IFairLRS's finetune_gen_weight_popularity.py:

* Items fall into G = 5 popularity groups by training interaction count (`splits.groups.popularity_groups`, the
  same groups the benchmark reports; group 0 = G1, the most popular).
* Over the training samples, ``n_hist(g)`` = history items in group g (all prompts, repeats counted) and
  ``n_tgt(g)`` = target items in group g. Group weight
  ``w_g = [n_hist(g) / sum_g' n_hist(g')] / [n_tgt(g) / sum_g' n_tgt(g')]``: groups over-represented among targets
  relative to histories are down-weighted. Sample weight ``w_i = w_{g(target_i)}`` (so the mean sample weight is 1).
  A group without training targets has no weight (recorded as None: no sample uses it).
* SFT loss ``L = (1/B) sum_i w_i * CE_i`` with ``CE_i`` the mean NLL over sample i's completion tokens
  (`methods.train.sft.completion_loss`). This is the intended loss; the official code computes
  ``mean(w * mean(token CE))`` with an un-dimensioned inner mean, i.e. mean(w_batch) times the batch's token CE,
  which loses the per-sample weighting (and averages in the ignored positions): we do not reproduce that bug.
  With all weights 1 this per-sample mean differs from the shared SFT's token mean when completion lengths differ.
* RW trains its own SFT model from the base backbone (not from the shared SFT model) through the harness's SFT
  step (``ctx.sft_step`` with per-sample weights: the run's batch size, accumulation, warm-up and weight decay), on
  the same samples, completion-only (IFairLRS inherits BIGRec's ``train_on_inputs=True``; every method here trains
  on the completion only). Epochs and learning rate are the run's (``ctx.sft_config``) unless ``epochs`` /
  ``learning_rate`` override them. The model is not cached: every fit
  retrains it.

Re-ranking (post-learning). The paper's formula is not given in enough detail to implement (and not in its code), so this
rule is ours: take the top ``pool`` candidates of the run's ranking protocol, score candidate at protocol rank j
(0-based) by ``s = -j``, and fill each user's list greedily: at slot t >= 1, pick the candidate maximising
``s - lambda * (r_g - h_g)`` where g is its group, ``r_g`` the share of group g among the t items already chosen for
this user and ``h_g = n_hist(g) / sum n_hist`` the training history share (the quantity IFairLRS's group
unfairness GU_g = r_g - h_g compares against). Slot 0 keeps the protocol's top-1, so the valid flag and HR@1 are
unchanged; ties go to the better protocol rank. ``lambda`` is in ranks per unit of share gap (lambda 10: a group
over-represented by 0.1 drops one rank); ``lambda = 0`` is reweighting only (what IFairLRS's repository ships).
The default lambda is a round number, not tuned.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from methods.base import Method, MethodContext, Paper, register
from methods.declared_work import CellSize, Work, sft_work
from splits.groups import popularity_groups


@dataclass
class RWConfig:
    rerank_lambda: float = field(default=10.0, metadata={
        "help": "re-ranking penalty per unit of (recommended share - history share) of a candidate's group, in "
                "ranks (0: reweighting only)"})
    rerank_pool: int = field(default=50, metadata={
        "help": "candidates taken from the run's protocol for re-ranking (at least the list length)"})
    n_groups: int = field(default=5, metadata={"help": "popularity groups (IFairLRS: 5)"})
    epochs: float | None = field(default=None, metadata={"help": "SFT epochs (None: the run's sft.epochs)"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "SFT learning rate (None: the run's sft.learning_rate)"})


def group_weights(history_groups: np.ndarray, target_groups: np.ndarray, n_groups: int):
    """(w_g, history share h_g, target share) per group; w_g is NaN for a group with no training target."""
    n_hist = np.bincount(np.asarray(history_groups, dtype=np.int64), minlength=n_groups).astype(np.float64)
    n_tgt = np.bincount(np.asarray(target_groups, dtype=np.int64), minlength=n_groups).astype(np.float64)
    hist_share, tgt_share = n_hist / n_hist.sum(), n_tgt / n_tgt.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(n_tgt > 0, hist_share / tgt_share, np.nan)
    return weights, hist_share, tgt_share


def weights_line(weights: np.ndarray) -> str:
    """The group weights as the log prints them; a group with no training target needs no weight and says so."""
    return ", ".join(f"G{g + 1} {w:.3f}" if np.isfinite(w) else f"G{g + 1} none (no training target)"
                     for g, w in enumerate(weights))


def rerank(candidates: np.ndarray, groups: np.ndarray, history_share: np.ndarray, lam: float, k: int) -> np.ndarray:
    """Greedy calibrated re-ranking (module docstring) of (n, N) candidate positions (-1 = none) into (n, k)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    n, width = candidates.shape
    out = np.full((n, k), -1, dtype=np.int64)
    if n == 0 or width == 0:
        return out
    group = np.asarray(groups)[np.maximum(candidates, 0)]
    target = np.asarray(history_share, dtype=np.float64)[group]
    base = -np.arange(width, dtype=np.float64)[None, :]
    available = candidates >= 0
    counts = np.zeros((n, len(history_share)))
    rows = np.arange(n)
    for t in range(min(k, width)):
        penalty = lam * (np.take_along_axis(counts, group, 1) / t - target) if t else 0.0
        pick = np.where(available, base - penalty, -np.inf).argmax(1)  # first maximum: the better protocol rank
        ok = available[rows, pick]
        r, j = rows[ok], pick[ok]
        out[r, t] = candidates[r, j]
        counts[r, group[r, j]] += 1
        available[r, j] = False
    return out


class ReRanker:
    """Wraps a recommender: its top `pool` candidates, greedily re-ranked for calibrated group exposure."""

    def __init__(self, inner, groups: np.ndarray, history_share: np.ndarray, lam: float, pool: int):
        self.inner, self.groups, self.history_share, self.lam, self.pool = inner, groups, history_share, lam, pool

    def rank(self, prompts, histories, k, exclude=None):
        if self.lam == 0:
            return self.inner.rank(prompts, histories, k, exclude)
        candidates, valid = self.inner.rank(prompts, histories, max(self.pool, k), exclude)
        return rerank(candidates, self.groups, self.history_share, self.lam, k), valid


def _none_for_nan(values: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in values]


@register
class RW(Method):
    name = "rw"
    fit_cacheable = False  # its own re-ranking of the protocol's list
    paper = Paper("Item-side Fairness of Large Language Model-based Recommendation System", "2402.15215",
                  "IFairLRS reweighting (per-sample weighted CE) + our greedy calibrated re-ranking")
    Config = RWConfig

    def fit(self, ctx: MethodContext):
        cfg = self.config
        groups = popularity_groups(ctx.train_counts, cfg.n_groups)
        position = {int(item): i for i, item in enumerate(ctx.items)}
        history_groups = np.array([groups[position[int(i)]] for h in ctx.train.histories for i in h], dtype=np.int64)
        target_groups = groups[[position[int(t)] for t in ctx.train.targets]]
        weights, hist_share, tgt_share = group_weights(history_groups, target_groups, cfg.n_groups)
        sample_weights = weights[target_groups]

        sft = ctx.sft_config
        sft = dataclasses.replace(sft, epochs=sft.epochs if cfg.epochs is None else cfg.epochs,
                                  learning_rate=sft.learning_rate if cfg.learning_rate is None else cfg.learning_rate)
        model = ctx.load_base_model()
        ctx.log(f"rw: group weights {weights_line(weights)}; weighted SFT from the base model, {sft.epochs} epochs at lr {sft.learning_rate}")
        model, seconds = ctx.sft_step(model, ctx.train.prompts, ctx.train.targets, sft.epochs, sft.learning_rate,
                                      weights=sample_weights.tolist())
        ctx.stats.update(seconds_per_epoch=seconds, group_weights=_none_for_nan(weights),
                         history_share=hist_share.tolist(), target_share=tgt_share.tolist(),
                         sft_epochs=sft.epochs, sft_learning_rate=sft.learning_rate,
                         rerank_lambda=cfg.rerank_lambda, rerank_pool=cfg.rerank_pool)
        return ReRanker(ctx.recommender(model), groups, hist_share, cfg.rerank_lambda, cfg.rerank_pool)

    def workload(self, size: CellSize) -> list[Work]:
        """Its weighted SFT from the base model over every training sample."""
        epochs = size.sft.epochs if self.config.epochs is None else self.config.epochs
        return [sft_work(size.train_samples, epochs, size.sft)]
