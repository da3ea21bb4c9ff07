"""CausalDPO (arXiv 2603.22335, Eq. 10 and Algorithm 1): DPO plus the causal regularizer of `methods.causal`
(soft-clustered pseudo-environments, backdoor adjustment, p-weighted MMD across environments).

Same pairs, negatives, reference and schedule as `dpo` (so the two differ only by the regularizer); every choice
where the paper is vague is listed in `methods.causal`'s docstring. Defaults: beta 0.1 as DPO, lambda 1.0.

`causaldpo-nosft` is the paper's Table 8 ablation "w/o SFT": the same training started from the untrained backbone,
which is then also the reference model (DPO's reference is the model training starts from).

`causaldpo-selfplay` is Figure 3's "number of training iterations N": the paper adopts "the iterative optimization
strategy proposed in (Gao et al., 2024)" (SPRec) without further detail. Round 1 is `causaldpo` exactly (random
negatives, from the SFT model), so N = 1 is the main tables' CausalDPO; each further round is an SPRec round
(`methods.sprec.self_play_round`: training samples drawn until the round's pairs are found, the current model's
constrained top-1 prediction becoming the one rejected response where it misses the target, an SFT step of
`sft_epochs` on the drawn samples, then the preference step with that round's SFT model as reference) whose
preference step is CausalDPO's loss with a fresh causal regularizer. The N rounds share the run's preference budget
(``preference.max_pairs`` split evenly, as for `sprec`), so every N trains on as many pairs as `causaldpo`. `seconds_per_epoch` is round 1's, as `causaldpo`'s; the Figure 2
projection (`method_stats.projection`) is the final model's, through the last round's regularizer.
"""
from __future__ import annotations

import dataclasses

from methods.base import MethodContext, Paper, register
from methods.dpo import DPO
from methods.preference import optimizer_steps, with_causal
from methods.sprec import round_budget, self_play, self_play_workload
from methods.declared_work import CellSize, Work

CausalDPO = register(with_causal(
    DPO, name="causaldpo",
    paper=Paper("Causal Direct Preference Optimization for Distributionally Robust Generative Recommendation",
                "2603.22335")))


@register
class CausalDPONoSFT(CausalDPO):
    name = "causaldpo-nosft"
    paper = Paper("CausalDPO ablation w/o SFT (Table 8): CausalDPO from the base backbone", "2603.22335")
    uses_sft = False


@dataclasses.dataclass
class CausalDPOSelfPlayConfig(CausalDPO.Config):
    iterations: int = dataclasses.field(default=4, metadata={
        "help": "N: training rounds; round 1 is causaldpo, each further one an SPRec self-play round (the paper's "
                "best N on Book-Crossing is 4)"})
    pairs_per_iteration: int | None = dataclasses.field(default=None, metadata={
        "help": "preference pairs per round (None: the run's preference.max_pairs shared by the N rounds)"})
    sft_epochs: float = dataclasses.field(default=1.0, metadata={"help": "epochs of each self-play round's SFT step"})


@register
class CausalDPOSelfPlay(CausalDPO):
    name = "causaldpo-selfplay"
    paper = Paper("CausalDPO with SPRec's iterative self-play rounds (Figure 3, iterations N)", "2603.22335")
    Config = CausalDPOSelfPlayConfig

    def fit(self, ctx: MethodContext):
        cfg = self.config
        per_round = round_budget(ctx.preference.max_pairs, len(ctx.train.targets), cfg.iterations,
                                 cfg.pairs_per_iteration)
        model = self.train(ctx, max_pairs=per_round)

        def step(m, pairs, ref):
            m, seconds, history = self.train_pairs(ctx, m, pairs, ref)
            return m, seconds, optimizer_steps(history, ctx.preference)

        model, rounds = self_play(ctx, model, range(1, cfg.iterations), cfg.iterations, per_round, cfg.sft_epochs,
                                  step, f"{ctx.sft_tag}/causaldpo-selfplay/seed{ctx.seed}", cfg)
        ctx.stats["self_play_pairs_per_round"] = [r.pairs for r in rounds]
        ctx.stats["pairs"] += int(sum(r.pairs for r in rounds))     # all rounds together: the run's budget
        ctx.stats["optimizer_steps"] += int(sum(r.steps for r in rounds))
        ctx.stats["projection"] = self.projection(ctx, model)  # the final model, the last round's regularizer
        return ctx.recommender(model)

    def workload(self, size: CellSize) -> list[Work]:
        cfg = self.config
        per_round = round_budget(size.preference.max_pairs, size.train_samples, cfg.iterations,
                                 cfg.pairs_per_iteration)
        return (self.pairs_workload(per_round, size) + self_play_workload(size, cfg.iterations - 1, per_round,
                                                                          cfg.sft_epochs, causal=True)
                + self.projection_workload(per_round))
