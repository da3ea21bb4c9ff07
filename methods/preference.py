"""Pairwise preference methods on the shared trainer: a loss from `losses` plus optional regularizers.

`PreferenceMethod.fit` is the whole recipe, top to bottom: draw the preference prompts (a seeded subset of the
training samples, capped by `preference.max_pairs`), pair each target with K negatives (seeded random unless the
method overrides `negatives`), fetch the reference log-probs of the cell's SFT model from the cache (computed once,
shared by every method with the same pair set; skipped for reference-free losses, `needs_reference = False`, which
get zeros), train a fresh copy of the SFT model, and hand the result to the run's ranking protocol.

A method declares `loss` (a name in `methods.losses.LOSSES`, called as ``loss(policy, reference, self.config)``),
and may override `negatives(ctx, rows)` (the (n, K) rejected item ids; seeded random by default),
`smoothing(ctx, rows, negatives)` (an optional per-pair label-smoothing array (n, K) carried with the pairs to
the loss as `LogProbs.smoothing`; None by default), `reduce(per_sample, weights=None)` (the batch reduction;
weights sum to 1, None = uniform; the causal regularizer's backdoor adjustment calls it once per environment),
`chosen_reward` (the MMD target of the `+causal` variant) and `method_stats` (figures copied into the run record).

Seconds per epoch: the policy's training time plus the reference forward pass over the pair set (measured when
the reference log-probs are computed and kept with the cache entry), i.e. what a trainer that scores the reference
on the fly each epoch pays (TRL's default). Reference-free methods pay none, which is SimPO's and CPO's speed
advantage; both parts are also recorded (`train_seconds_per_epoch`, `reference_seconds_per_epoch`).

`with_causal(cls)` builds the `<name>+causal` variant of any such method: same loss, plus the causal regularizer
of `methods.causal` (its hyperparameters are added to the method's config).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from methods.base import Method, MethodContext, Paper
from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import LOSSES, LogProbs, mean_reduce
from methods.negatives import random_negatives
from methods.projection import environment_projection
from methods.train.preference_trainer import PreferencePairs, ReferenceLogps, implicit_chosen_reward, train_preference
from methods.declared_work import CellSize, Work, preference_work, reference_work
from splits.groups import popularity_groups, time_periods


def preference_pairs(ctx: MethodContext, rejected_items: np.ndarray, rows: np.ndarray,
                     smoothing: np.ndarray | None = None) -> PreferencePairs:
    return PreferencePairs(prompts=[ctx.train.prompts[i] for i in rows],
                           chosen=[ctx.completions[int(ctx.train.targets[i])] for i in rows],
                           rejected=[[ctx.completions[int(j)] for j in neg] for neg in rejected_items],
                           smoothing=smoothing)


def length_averaged_chosen_reward(policy: LogProbs, reference: LogProbs, beta: float) -> torch.Tensor:
    """beta * log pi(y_w|x) / |y_w|: the chosen reward of the reference-free losses (SimPO's implicit reward), the
    `+causal` MMD target for `simpo` and `cpo`."""
    return beta * policy.chosen / policy.chosen_len.to(policy.chosen.dtype)


def causal_history_stats(history: dict) -> dict:
    """The causal regularizer's figures over a training run: the share of single-environment steps, the mean number
    of environments, and per step the assignment entropy, the effective number of environments and the spread of z
    (NaN on single-environment steps, which have no assignment), with their means over multi-environment steps."""
    envs = np.asarray(history["causal/envs"])
    multi = envs >= 2

    def per_step(key: str) -> list:
        values, it = [], iter(history.get(key, []))
        for is_multi in multi:
            values.append(round(float(next(it)), 5) if is_multi else float("nan"))
        return values

    clustered = history.get("causal/clustered")
    out = {"single_env_fraction": float(np.mean(~multi)), "mean_envs": float(envs.mean()),
           # rows per DBSCAN call: the optimizer step's whole batch (all micro-batches and processes)
           "clustered_per_step": float(np.mean(clustered)) if clustered else None,
           "causal_per_step": {"envs": envs.astype(int).tolist(),
                               "z_spread": [round(float(v), 5) for v in history["causal/z_spread"]],
                               "assignment_entropy": per_step("causal/assignment_entropy"),
                               "effective_envs": per_step("causal/effective_envs")}}
    for key in ("assignment_entropy", "effective_envs"):
        values = [v for v in out["causal_per_step"][key] if v == v]
        out[key] = float(np.mean(values)) if values else None
    out["z_spread"] = float(np.mean(history["causal/z_spread"]))
    return out


def optimizer_steps(history: dict, cfg) -> int:
    """Optimizer steps of a `train_preference` run: its logged micro-batches over the gradient accumulation."""
    return -(-len(history["pref_loss"]) // max(1, cfg.grad_accum))


def sample_rows(n: int, cap: int | None, seed: int) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


class PreferenceMethod(Method):
    loss: ClassVar[str]
    causal: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = True      # False: no reference log-probs are computed (zeros are passed)

    def loss_fn(self) -> Callable:
        fn = LOSSES.get(self.loss)
        return lambda policy, reference: fn(policy, reference, self.config)

    def reduce(self, per_sample: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The batch reduction: sum_i w_i l_i (the mean when weights is None)."""
        return mean_reduce(per_sample, weights)

    def chosen_reward(self, policy: LogProbs, reference: LogProbs, beta: float) -> torch.Tensor:
        """The chosen response's reward, the `+causal` MMD target: beta * (log pi - log pi_ref) by default."""
        return implicit_chosen_reward(policy, reference, beta)

    def starting_point(self, ctx: MethodContext) -> tuple[Callable[[], Any], str]:
        """(loader, tag) of the model the policy starts from, which is also the reference: the cell's SFT model,
        or the untrained backbone for the "w/o SFT" ablation (`uses_sft = False`)."""
        if self.uses_sft:
            return ctx.load_sft_model, ctx.sft_tag
        return ctx.load_base_model, f"base/{ctx.sft_tag}"

    def method_stats(self, ctx: MethodContext) -> dict:
        """Figures that are part of the method's definition, copied into the run record."""
        return {}

    def n_negatives(self, ctx: MethodContext) -> int:
        """K: the method's own `negatives` hyperparameter when it has one set (S-DPO, DMPO: their papers' K), else
        the run's `preference.negatives` (`--negatives`)."""
        return self.negatives_for(ctx.preference)

    def negatives_for(self, preference) -> int:
        own = getattr(self.config, "negatives", None)
        return preference.negatives if own is None else int(own)

    def workload(self, size: CellSize) -> list[Work]:
        """`train`'s work: the reference pass (shared by the methods drawing the same pairs) and the training."""
        pref = size.preference
        pairs = min(size.train_samples, pref.max_pairs or size.train_samples)
        return self.pairs_workload(pairs, size) + self.projection_workload(pairs)

    def projection_workload(self, pairs: int) -> list[Work]:
        """The `+causal` variants' Figure 2 projection: one forward pass over up to 512 preference prompts."""
        n = min(512, pairs)
        return [Work("preference", "forward", n, sequences=n)] if self.causal else []

    def pairs_workload(self, pairs: int, size: CellSize) -> list[Work]:
        k = self.negatives_for(size.preference)
        work = [preference_work(pairs, k, size.preference, self.causal)]
        if self.needs_reference:  # the cache key: starting model and pair set (rows, K and how negatives are drawn)
            start = "sft" if self.uses_sft else "base"
            drawn = type(self).negatives.__qualname__
            work.insert(0, reference_work(pairs, k, f"{start}/{pairs}x{k}/{drawn}"))
        return work

    def negatives(self, ctx: MethodContext, rows: np.ndarray) -> np.ndarray:
        """(len(rows), K) rejected item ids: seeded random catalogue items outside the history and the target."""
        return random_negatives(ctx.train.targets[rows], [ctx.train.histories[i] for i in rows], ctx.items,
                                self.n_negatives(ctx), ctx.seed)

    def smoothing(self, ctx: MethodContext, rows: np.ndarray, negatives: np.ndarray) -> np.ndarray | None:
        """Optional per-pair label smoothing (len(rows), K) passed to the loss as `LogProbs.smoothing`."""
        return None

    def fit(self, ctx: MethodContext):
        model = self.train(ctx)
        if self.causal:
            ctx.stats["projection"] = self.projection(ctx, model)
        return ctx.recommender(model)

    def train(self, ctx: MethodContext, max_pairs: int | None = None):
        """The recipe of the module docstring; returns the trained model and fills `ctx.stats`. `max_pairs`
        overrides the run's budget (`preference.max_pairs`), e.g. for the first of several rounds sharing it."""
        cfg = ctx.preference
        rows = sample_rows(len(ctx.train.targets), max_pairs or cfg.max_pairs, ctx.seed)
        negatives = self.negatives(ctx, rows)
        pairs = preference_pairs(ctx, negatives, rows, self.smoothing(ctx, rows, negatives))
        if self.needs_reference:
            ref = ctx.reference_logps(*self.starting_point(ctx), pairs)
        else:
            ref = ReferenceLogps(np.zeros(len(pairs), dtype=np.float32),
                                 np.zeros((len(pairs), negatives.shape[1]), dtype=np.float32), 0.0)
        model = self.starting_point(ctx)[0]()
        ctx.log(f"{self.name}: training on {len(pairs)} prompts x (1 chosen + {negatives.shape[1]} rejected)")
        model, seconds, history = self.train_pairs(ctx, model, pairs, ref)
        ref_seconds = float(getattr(ref, "seconds", float("nan")))
        ctx.stats.update(seconds_per_epoch=seconds + ref_seconds, train_seconds_per_epoch=seconds,
                         reference_seconds_per_epoch=ref_seconds, reference_model=self.needs_reference,
                         pairs=len(pairs), negatives=int(negatives.shape[1]),
                         optimizer_steps=optimizer_steps(history, cfg),
                         final_loss=float(np.mean(history["pref_loss"][-10:])))
        ctx.stats.update(self.method_stats(ctx))
        if self.causal:
            ctx.stats.update(causal_history_stats(history))
        return model

    def projection(self, ctx: MethodContext, model, n: int = 512) -> dict:
        """Figure 2 (right): `methods.projection` over a seeded sample of `n` of the preference prompts, through
        the regularizer of the last `train_pairs` call."""
        rows = sample_rows(len(ctx.train.targets), ctx.preference.max_pairs, ctx.seed)
        sample = np.sort(np.random.default_rng(ctx.seed).permutation(rows)[:n])
        position = {int(item): p for p, item in enumerate(ctx.items)}
        groups = popularity_groups(ctx.train_counts)[[position[int(t)] for t in ctx.train.targets[sample]]]
        periods = time_periods(ctx.train.timestamps[sample])
        return environment_projection(model, self.regularizer_, [ctx.train.prompts[i] for i in sample], groups,
                                      periods, ctx.tokenizer.pad_token_id, ctx.device)

    def train_pairs(self, ctx: MethodContext, model, pairs: PreferencePairs, ref):
        """One training run of `model` on `pairs` with this method's loss (and a fresh causal regularizer for the
        `+causal` variants); returns (model, seconds per epoch, logged history)."""
        regularizer = None  # kept as `self.regularizer_` after training (the projection figure uses its g)
        if self.causal:
            fields = {f.name for f in dataclasses.fields(CausalConfig)}
            causal_cfg = CausalConfig(**{k: v for k, v in dataclasses.asdict(self.config).items() if k in fields})
            regularizer = CausalRegularizer(model.config.hidden_size, causal_cfg)
        self.regularizer_ = regularizer
        return train_preference(model, pairs, ref, self.loss_fn(), self.reduce, self.config.beta, ctx.preference,
                                ctx.seed, ctx.device, ctx.tokenizer.pad_token_id, regularizer,
                                chosen_reward=self.chosen_reward)


def _copy(f: dataclasses.Field) -> dataclasses.Field:
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def with_causal(base: type[PreferenceMethod], name: str | None = None, paper: Paper | None = None):
    """The `<base>+causal` variant: the base loss plus the causal regularizer, one merged config dataclass."""
    config = dataclasses.make_dataclass(
        f"{base.Config.__name__.removesuffix('Config')}CausalConfig",
        [(f.name, f.type, _copy(f)) for f in dataclasses.fields(base.Config) + dataclasses.fields(CausalConfig)])
    return type(f"{base.__name__}Causal", (base,), {
        "name": name or f"{base.name}+causal", "Config": config, "causal": True,
        "paper": paper or base.paper, "__doc__": f"{base.name} with the causal regularizer of methods.causal."})
