"""The method interface: a paper reference, a hyperparameter dataclass, and `fit(context) -> Recommender`.

Every method is one class registered in `METHODS` under its name. Its `Config` dataclass holds its
hyperparameters with defaults and help text (TRL style); `--set <method>.<field>=value` overrides one. The
`MethodContext` is filled by the harness (`bench.pipeline`) and gives the method everything it may use: the
split, the tokenized training samples, a fresh copy of the cell's cached SFT model, an SFT step, cached reference
log-probs, and a way to wrap a trained model into a `Recommender` scored by the run's ranking protocol.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol

import numpy as np

from methods.hparams import check_choices
from methods.ranking import Catalogue
from methods.declared_work import CellSize, Work, run_ranking_key
from splits.registry import Registry
from splits.types import Split


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str
    note: str = ""


class Recommender(Protocol):
    """Ranks the catalogue for a batch of prompts: returns (topk catalogue positions (n, k), -1 where fewer than k
    items are ranked, and valid flags (n,)). `exclude`, when given, holds per prompt the catalogue positions its
    list may not contain (the user's training-part items, ``ranking.exclude_seen``): every recommender honours it."""

    def rank(self, prompts: list[list[int]], histories: list[np.ndarray], k: int,
             exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        ...


@dataclass
class TrainingSamples:
    """Tokenized training samples: prompt ids, target item ids, history item ids (and user ids), per sample."""

    prompts: list[list[int]]
    targets: np.ndarray
    histories: list[np.ndarray]
    users: np.ndarray                       # user id per sample
    timestamps: np.ndarray                  # the target interaction's timestamp per sample


@dataclass
class MethodContext:
    split: Split
    train: TrainingSamples
    items: np.ndarray                       # catalogue item ids, position = catalogue index
    completions: dict[int, list[int]]       # item id -> completion token ids (title + EOS)
    train_counts: np.ndarray                # training interactions per catalogue position
    preference: Any                         # methods.train.config.PreferenceConfig of the run
    seed: int
    device: Any
    tokenizer: Any
    load_sft_model: Callable[[], Any]       # a fresh trainable copy of the cell's cached SFT model
    load_base_model: Callable[[], Any]      # the backbone before SFT ("w/o SFT" ablations)
    sft_tag: str                            # identifies the SFT model (keys the reference log-prob cache)
    sft_step: Callable[..., Any]            # sft_step(model, prompts, targets, epochs, learning_rate, weights=None)
                                            #   -> (model, seconds per epoch); weights: per-sample loss weights
    reference_logps: Callable[..., Any]     # reference_logps(model_or_loader, tag, pairs) -> cached log-probs
    recommender: Callable[[Any], Recommender]  # wraps a trained LM with the run's ranking protocol
    predict_top1: Callable[[Any, list[list[int]]], np.ndarray]  # constrained greedy item per prompt
    output_dir: Any
    catalogue: Catalogue                    # the run's catalogue (its title trie built once)
    sft_config: Any                         # methods.train.config.SFTConfig of the run
    log: Callable[[str], None] = print
    stats: dict = field(default_factory=dict)  # a method's own figures, copied into its record


class Method:
    name: ClassVar[str]
    paper: ClassVar[Paper]
    Config: ClassVar[type]
    uses_sft: ClassVar[bool] = True
    shifts: ClassVar[tuple[str, ...] | None] = None  # the shifts it is defined for (None: every shift)
    # The harness keeps the trained model of a fit that returns `ctx.recommender(model)` and ranks it again under
    # any protocol without fitting (`bench.fits`); the cost planner counts such a fit once. False for a fit that
    # only loads a model the cache already holds, or that returns a recommender of its own (which the cache cannot
    # rebuild: it would be trained again under every protocol anyway).
    fit_cacheable: ClassVar[bool] = True

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()
        check_choices(self.config, self.name)  # `resolve` checked them already; a config built by hand too

    def fit(self, ctx: MethodContext) -> Recommender:
        raise NotImplementedError

    def workload(self, size: CellSize) -> list[Work]:
        """The training work of `fit` on a cell of `size`, beyond the cell's shared SFT model (`methods.declared_work`);
        what the cost planner prices. None by default."""
        return []

    def ranking_key(self, ranking) -> str:
        """The per-prompt cost class of the ranking that scores this method under the run's ranking settings
        (`bench.config.RankingConfig`): the run's protocol by default, marked `@base` for a model that does not
        start from the SFT model (an untrained model's flat scores prune likelihood ranking far less); "fixed" for
        rankings that cost nothing."""
        return run_ranking_key(ranking) + ("" if self.uses_sft else "@base")


METHODS: Registry[type[Method]] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    METHODS.add(cls.name, cls)
    return cls
