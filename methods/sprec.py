"""SPRec: self-play preference alignment for LLM recommenders (Gao et al., 2024, arXiv 2412.09243).

Each of `iterations` rounds, top to bottom (SPRec's `SPRec.sh` loop and Algorithm 1):
1. draw `samples_per_iteration` training samples (seeded by the training seed and the round; SPRec's own draw is
   unseeded);
2. generate with the current model (the SFT model in round 1): greedy, constrained to catalogue titles by the title
   trie, so every prediction is an item (SPRec parses free text and embeds it; constrained greedy gives the same
   "the model's own top item" without a parser);
3. rejected = that prediction when it differs from the target; a correct prediction gives no pair (SPRec keeps
   such pairs, whose DPO gradient is zero; we drop them and record how many);
4. an SFT step on the drawn samples (1 epoch), continuing from the current model;
5. a DPO step (sigmoid loss, beta 0.1 as SPRec hard-codes) on the self-play pairs, the reference being this
   round's SFT model (its log-probs cached under a tag naming the round).
Defaults: 1 iteration, as the CausalDPO paper's main tables use ("single-iteration SFT model outputs", Appendix
B.3); SPRec's README example uses 5 (`--set sprec.iterations=5`; Figure 3 varies it). SPRec's learning rate is the
same for its SFT and DPO steps, here the run's `preference.learning_rate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from methods.base import Method, MethodContext, Paper, register
from methods.losses import dpo_loss, mean_reduce
from methods.preference import preference_pairs, sample_rows
from methods.train.preference import train_preference


@dataclass
class SPRecConfig:
    iterations: int = field(default=1, metadata={"help": "self-play rounds (SFT step + DPO step each)"})
    samples_per_iteration: int = field(default=2048, metadata={"help": "training samples drawn per round"})
    beta: float = field(default=0.1, metadata={"help": "DPO beta of the DPO step"})
    sft_epochs: float = field(default=1.0, metadata={"help": "epochs of each round's SFT step"})


@register
class SPRec(Method):
    name = "sprec"
    paper = Paper("SPRec: Self-Play to Debias LLM-based Recommendation", "2412.09243")
    Config = SPRecConfig

    def fit(self, ctx: MethodContext):
        cfg, pref = self.config, ctx.preference
        model = ctx.load_sft_model()

        def dpo_step(model, pairs, ref):
            model, seconds, _ = train_preference(model, pairs, ref, lambda p, r: dpo_loss(p, r, cfg.beta),
                                                 mean_reduce, cfg.beta, pref, ctx.seed, ctx.device,
                                                 ctx.tokenizer.pad_token_id)
            return model, seconds

        dpo_seconds, sft_seconds, kept = [], [], []
        for round_ in range(cfg.iterations):
            model, sft_s, dpo_s, n_pairs = self_play_round(
                ctx, model, round_, cfg.iterations, cfg.samples_per_iteration, cfg.sft_epochs, dpo_step,
                f"{ctx.sft_tag}/sprec/seed{ctx.seed}/round{round_}/{cfg}")
            sft_seconds.append(sft_s)
            kept.append(n_pairs)
            if dpo_s is not None:
                dpo_seconds.append(dpo_s)
        ctx.stats.update(seconds_per_epoch=float(np.median(dpo_seconds)) if dpo_seconds else float("nan"),
                         sft_step_seconds_per_epoch=float(np.median(sft_seconds)), pairs_per_round=kept)
        return ctx.recommender(model)


def self_play_round(ctx: MethodContext, model, round_: int, rounds: int, samples: int, sft_epochs: float,
                    preference_step, reference_tag: str):
    """Steps 1-5 of one SPRec round on `model`; `preference_step(model, pairs, ref) -> (model, seconds)` is the
    DPO step (SPRec's DPO, or CausalDPO's loss and regularizer in `causaldpo-selfplay`). Returns (model, SFT-step
    seconds per epoch, preference-step seconds per epoch or None when no prediction was wrong, pairs kept)."""
    rows = sample_rows(len(ctx.train.targets), samples, ctx.seed + 1000 * round_)
    prompts = [ctx.train.prompts[i] for i in rows]
    predicted = ctx.predict_top1(model, prompts)
    wrong = (predicted != ctx.train.targets[rows]) & (predicted >= 0)
    ctx.log(f"self-play round {round_ + 1}/{rounds}: {wrong.sum()} of {len(rows)} predictions differ "
            f"from the target and become rejected responses")
    model, sft_seconds = ctx.sft_step(model, prompts, ctx.train.targets[rows], sft_epochs,
                                      ctx.preference.learning_rate)
    if not wrong.any():
        return model, sft_seconds, None, 0
    pairs = preference_pairs(ctx, predicted[wrong][:, None], rows[wrong])
    sft_model = model
    ref = ctx.reference_logps(lambda: sft_model, reference_tag, pairs)
    model, seconds = preference_step(model, pairs, ref)
    return model, sft_seconds, seconds, int(wrong.sum())
