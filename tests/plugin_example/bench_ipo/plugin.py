"""Registers IPO with dpo-shift-bench: the loss in `LOSSES`, the method in `METHODS` (and so `ipo+causal` too).
Loaded by the harness through the `dpo_shift_bench.plugins` entry point, or `--include bench_ipo.plugin`."""
from __future__ import annotations

from dataclasses import dataclass, field

from methods.base import Paper, register
from methods.losses import LOSSES
from methods.preference import PreferenceMethod

from bench_ipo.loss import ipo_loss

LOSSES.add("ipo", ipo_loss)


@dataclass
class IPOConfig:
    beta: float = field(default=0.1, metadata={"help": "tau: the log-ratio margin IPO regresses to is 1/(2 tau)"})
    negatives_reduction: str = field(default="mean", metadata={
        "help": "how the K pairwise losses of a prompt combine", "choices": ("mean", "max")})


@register
class IPO(PreferenceMethod):
    name = "ipo"
    paper = Paper("A General Theoretical Paradigm to Understand Learning from Human Preferences", "2310.12036")
    Config = IPOConfig
    loss = "ipo"
