"""SPRec: self-play preference alignment for LLM recommenders (Gao et al., 2024, arXiv 2412.09243).

Each of `iterations` rounds, top to bottom (SPRec's `SPRec.sh` loop and Algorithm 1):
1. draw training samples in a seeded order (the training seed and the round; SPRec's own draw is unseeded) until
   the round's `pairs_per_iteration` pairs are found (step 3) or the samples run out;
2. generate with the current model (the SFT model in round 1): greedy, constrained to catalogue titles by the title
   trie, so every prediction is an item (SPRec parses free text and embeds it; constrained greedy gives the same
   "the model's own top item" without a parser);
3. rejected = that prediction when it differs from the target; a correct prediction gives no pair (SPRec keeps
   such pairs, whose DPO gradient is zero; we drop them, draw on, and record how many there were);
4. an SFT step on the drawn samples (1 epoch), continuing from the current model;
5. a DPO step (sigmoid loss, beta 0.1 as SPRec hard-codes) on the self-play pairs, the reference being this
   round's SFT model (its log-probs cached under a tag naming the round).
Equal budgets: the rounds share the run's preference budget, ``preference.max_pairs`` pairs (all training samples
when unset) split evenly, so SPRec trains on as many preference pairs, in as many optimizer steps, as every other
preference method (SPRec's script draws 2,048 samples a round whatever the budget); `pairs_per_iteration` sets a
round's pairs instead. The SFT steps come on top (they are SPRec's recipe); records name the pairs and optimizer
steps of both.
Defaults: 1 iteration, as the CausalDPO paper's main tables use ("single-iteration SFT model outputs", Appendix
B.3); SPRec's README example uses 5 (`--set sprec.iterations=5`; Figure 3 varies it). SPRec's learning rate is the
same for its SFT and DPO steps, here the run's `preference.learning_rate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from methods.base import Method, MethodContext, Paper, register
from methods.losses import dpo_loss, mean_reduce
from methods.preference import optimizer_steps, preference_pairs
from methods.train.preference_trainer import train_preference
from methods.declared_work import CellSize, Work, preference_work, reference_work, sft_work


@dataclass
class SPRecConfig:
    iterations: int = field(default=1, metadata={"help": "self-play rounds (SFT step + DPO step each)"})
    pairs_per_iteration: int | None = field(default=None, metadata={
        "help": "preference pairs per round (None: the run's preference.max_pairs shared by the rounds)"})
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
            model, seconds, history = train_preference(model, pairs, ref, lambda p, r: dpo_loss(p, r, cfg.beta),
                                                       mean_reduce, cfg.beta, pref, ctx.seed, ctx.device,
                                                       ctx.tokenizer.pad_token_id)
            return model, seconds, optimizer_steps(history, pref)

        per_round = round_budget(pref.max_pairs, len(ctx.train.targets), cfg.iterations, cfg.pairs_per_iteration)
        model, rounds = self_play(ctx, model, range(cfg.iterations), cfg.iterations, per_round, cfg.sft_epochs,
                                  dpo_step, f"{ctx.sft_tag}/sprec/seed{ctx.seed}", cfg)
        dpo_seconds = [r.seconds for r in rounds if r.seconds is not None]
        ctx.stats.update(seconds_per_epoch=float(np.median(dpo_seconds)) if dpo_seconds else float("nan"),
                         sft_step_seconds_per_epoch=float(np.median([r.sft_seconds for r in rounds])),
                         pairs_per_round=[r.pairs for r in rounds], pairs=int(sum(r.pairs for r in rounds)),
                         optimizer_steps=int(sum(r.steps for r in rounds)),
                         sft_step_samples=[r.drawn for r in rounds])
        return ctx.recommender(model)

    def workload(self, size: CellSize) -> list[Work]:
        cfg = self.config
        per_round = round_budget(size.preference.max_pairs, size.train_samples, cfg.iterations,
                                 cfg.pairs_per_iteration)
        return self_play_workload(size, cfg.iterations, per_round, cfg.sft_epochs)


def self_play_workload(size: CellSize, rounds: int, per_round: int, sft_epochs: float,
                       causal: bool = False) -> list[Work]:
    """`rounds` self-play rounds of `per_round` pairs: the predictions, the SFT step, this round's reference pass and
    the DPO step. Counted as if every prediction were wrong (the fewest draws): a model that predicts p% of its
    targets draws about per_round / (1 - p) samples, a few percent more on the tiny and small profiles."""
    work = []
    for _ in range(rounds):
        work += [Work("generation", "top1", per_round),
                 sft_work(per_round, sft_epochs, size.sft),
                 reference_work(per_round, 1, ""),
                 preference_work(per_round, 1, size.preference, causal)]
    return work


def round_budget(max_pairs: int | None, samples: int, rounds: int, per_round: int | None) -> int:
    """Pairs per self-play round: `per_round`, else the run's preference budget (`max_pairs`, or all `samples`
    training samples) shared evenly by the rounds."""
    if per_round is not None:
        return per_round
    return max(1, (max_pairs or samples) // rounds)


@dataclass
class SelfPlay:
    """One round's outcome."""
    model: object
    sft_seconds: float
    seconds: float | None          # preference step seconds per epoch; None when no prediction was wrong
    pairs: int                     # preference pairs trained on
    steps: int                     # optimizer steps of the preference step
    drawn: int                     # samples drawn (predicted, then the SFT step's samples)


def self_play(ctx: MethodContext, model, rounds: range, total: int, pairs_wanted: int, sft_epochs: float,
              preference_step, tag: str, config) -> tuple[object, list[SelfPlay]]:
    """The self-play loop of SPRec and `causaldpo-selfplay`: `self_play_round` for each round of `rounds` (of
    `total`), each continuing from the last one's model; the reference log-probs of a round are cached under
    `tag/round<i>/<config>`. Returns the final model and every round's outcome."""
    played = []
    for round_ in rounds:
        outcome = self_play_round(ctx, model, round_, total, pairs_wanted, sft_epochs, preference_step,
                                  f"{tag}/round{round_}/{config}")
        model = outcome.model
        played.append(outcome)
    return model, played


def self_play_round(ctx: MethodContext, model, round_: int, rounds: int, pairs_wanted: int, sft_epochs: float,
                    preference_step, reference_tag: str) -> SelfPlay:
    """Steps 1-5 of one SPRec round on `model`; `preference_step(model, pairs, ref) -> (model, seconds, steps)` is
    the DPO step (SPRec's DPO, or CausalDPO's loss and regularizer in `causaldpo-selfplay`)."""
    order = np.random.default_rng(ctx.seed + 1000 * round_).permutation(len(ctx.train.targets))
    drawn, wrong_rows, rejected = [], [], []
    start = 0
    while len(wrong_rows) < pairs_wanted and start < len(order):
        rows = order[start: start + pairs_wanted - len(wrong_rows)]
        start += len(rows)
        predicted = ctx.predict_top1(model, [ctx.train.prompts[i] for i in rows])
        wrong = (predicted != ctx.train.targets[rows]) & (predicted >= 0)
        drawn.extend(rows.tolist())
        wrong_rows.extend(rows[wrong].tolist())
        rejected.extend(predicted[wrong].tolist())
    drawn_rows = np.sort(np.array(drawn, dtype=np.int64))
    ctx.log(f"self-play round {round_ + 1}/{rounds}: {len(wrong_rows)} of {len(drawn)} predictions differ "
            f"from the target and become rejected responses")
    model, sft_seconds = ctx.sft_step(model, [ctx.train.prompts[i] for i in drawn_rows], ctx.train.targets[drawn_rows],
                                      sft_epochs, ctx.preference.learning_rate)
    if not wrong_rows:
        return SelfPlay(model, sft_seconds, None, 0, 0, len(drawn))
    by_row = sorted(zip(wrong_rows, rejected))
    pairs = preference_pairs(ctx, np.array([[r] for _, r in by_row]), np.array([w for w, _ in by_row]))
    sft_model = model
    ref = ctx.reference_logps(lambda: sft_model, reference_tag, pairs)
    model, seconds, steps = preference_step(model, pairs, ref)
    return SelfPlay(model, sft_seconds, seconds, len(pairs), steps, len(drawn))
