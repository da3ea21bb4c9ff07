"""What a method's fit costs, in units a cost planner can price (`bench.planner`), declared next to the method.

A method lists its training work as `Work` items for a cell of a given `CellSize`, and names the ranking that
scores it (`Method.ranking_key`). The units are the ones the training and ranking code actually iterates over, so
the planner multiplies counts by measured per-unit seconds (or FLOPs) and never needs to know a method's recipe:

- ``sft_step``: optimizer steps of completion-only SFT at the run's SFT batch size (`sequences` trained);
- ``preference_step``: optimizer steps of the shared preference trainer; each step carries `batch_size` prompts
  of `width` = 1 + K sequences (chosen + K rejected), `causal` when the causal regularizer runs in it;
- ``forward``: sequences through a no-grad forward pass (reference log-probs), in batches of `REFERENCE_BATCH`;
- ``top1``: prompts decoded to one catalogue item by constrained greedy search (SPRec's self-play predictions);
- ``sasrec_epoch``: epochs of SASRec over the training interactions.

`shared` names work a cell group computes once and caches (the reference log-probs of one pair set): equal keys
within a group are counted once. The cell's own SFT model is the planner's (one per group), not a method's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from methods.ranking.protocols import protocol_cost_key

REFERENCE_BATCH = 32   # pairs per reference forward batch (methods.train.preference_trainer.reference_logps)


@dataclass(frozen=True)
class CellSize:
    """What a cell's workload depends on: its training samples and interactions and the run's training settings."""
    train_samples: int          # training prompts (samples with a history)
    train_interactions: int     # rows of the training part (SASRec's epochs go over them)
    sft: object                 # methods.train.config.SFTConfig of the run
    preference: object          # methods.train.config.PreferenceConfig of the run


@dataclass(frozen=True)
class Work:
    stage: str                  # reported stage: "sft", "reference", "preference", "generation", "sasrec"
    kind: str                   # priced unit: sft_step | preference_step | forward | top1 | sasrec_epoch
    count: float                # number of units
    sequences: float = 0.0      # sequences through the model (token counts: x their mean length)
    width: int = 1              # preference_step: sequences per prompt (1 + K)
    causal: bool = False        # preference_step: with the causal regularizer
    shared: str = ""            # equal non-empty keys in one cell group are computed once


def sft_work(samples: int, epochs: float, sft, stage: str = "sft") -> Work:
    """An SFT run over `samples` prompts for `epochs` at the run's SFT batch size (and accumulation)."""
    per_step = sft.batch_size * sft.grad_accum
    return Work(stage, "sft_step", math.ceil(samples / per_step) * epochs, sequences=samples * epochs)


def preference_work(pairs: int, negatives: int, pref, causal: bool = False) -> Work:
    """The shared preference trainer over `pairs` prompts with 1 chosen + `negatives` rejected each."""
    per_step = pref.batch_size * pref.grad_accum
    width = 1 + negatives
    return Work("preference", "preference_step", math.ceil(pairs / per_step) * pref.epochs,
                sequences=pairs * width * pref.epochs, width=width, causal=causal)


def reference_work(pairs: int, negatives: int, shared: str) -> Work:
    """Reference log-probs of `pairs` prompts (chosen + K rejected each), cached under `shared`."""
    return Work("reference", "forward", pairs * (1 + negatives), sequences=pairs * (1 + negatives), shared=shared)


def run_ranking_key(ranking) -> str:
    """The per-prompt cost class of the run's ranking protocol (`bench.config.RankingConfig`), as the protocol
    registered it (`methods.ranking.protocols.protocol_cost_key`)."""
    return protocol_cost_key(ranking)
