"""The registry of ranking protocols and the recommender every LLM method returns.

A protocol is a function ``(model, prompts, catalogue, k, batch_size, exclude=None, **options) -> Ranking``;
``exclude`` holds, per prompt, the catalogue positions its list may not contain (every protocol honours it). Each one
is registered once, in the module that implements it, with `register_protocol(name, ...)`: the function and what the
harness needs to know about it (a `ProtocolSpec`): the options it takes from the run's ranking settings
(`bench.config.RankingConfig`), the planner's cost class of those settings, and the settings a cost class names (so
the planner's calibration can rank with them). ``likelihood`` (`methods.ranking.likelihood`), ``beam``
(`methods.ranking.beam`) and ``grounding`` (`methods.ranking.grounding`); importing `methods.ranking` imports all
three. A plain function registered with ``PROTOCOLS.add(name, fn)`` (an outside plugin) works too, with no options
and its name as its cost class. `rank(name, ...)` dispatches by name (an unknown name suggests the closest registered
one), and `ProtocolRecommender` wraps a trained model with a protocol and its options into a
`methods.base.Recommender`. Adding a protocol: its module with one `register_protocol` call, plus fields in
`RankingConfig` if it has settings of its own.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from methods.ranking.catalogue import Catalogue, Ranking
from splits.registry import Registry

Protocol = Callable[..., Ranking]
PROTOCOLS: Registry[Protocol] = Registry("ranking protocol")


def no_options(ranking, tokenizer, load_base_model, device) -> dict:
    return {}


@dataclass(frozen=True)
class ProtocolSpec:
    """A registered protocol: callable like its function, with what the harness needs to know about it."""
    rank: Protocol
    # (the run's ranking settings, the backbone tokenizer, a loader of the base backbone, device) -> rank's options
    options: Callable[[Any, Any, Callable[[], Any], Any], dict] = no_options
    # the ranking settings -> the planner's per-prompt cost class, "<name>/..." (None: the name alone)
    cost_key: Callable[[Any], str] | None = None
    # the parts of a cost class after the name -> the ranking settings it stands for (None: none)
    settings: Callable[[list[str]], dict] | None = None

    def __call__(self, *args, **kwargs) -> Ranking:
        return self.rank(*args, **kwargs)


def register_protocol(name: str, options=no_options, cost_key=None, settings=None):
    """Decorator: register a protocol function under `name` with its `ProtocolSpec` fields."""
    def decorator(fn: Protocol) -> Protocol:
        PROTOCOLS.add(name, ProtocolSpec(fn, options, cost_key, settings))
        return fn
    return decorator


def protocol_spec(name: str) -> ProtocolSpec:
    entry = PROTOCOLS.get(name)
    return entry if isinstance(entry, ProtocolSpec) else ProtocolSpec(entry)


def protocol_options(ranking, tokenizer, load_base_model: Callable[[], Any], device) -> dict:
    """The options the run's protocol takes from its ranking settings (grounding: tokenizer, embedder, ...)."""
    return protocol_spec(ranking.protocol).options(ranking, tokenizer, load_base_model, device)


def protocol_cost_key(ranking) -> str:
    """The per-prompt cost class of the run's ranking settings (what the planner prices)."""
    spec = protocol_spec(ranking.protocol)
    return spec.cost_key(ranking) if spec.cost_key else ranking.protocol


def ranking_for_cost_key(key: str, base):
    """The ranking settings (a copy of `base`) that a cost class of `protocol_cost_key` stands for."""
    name, *rest = key.split("/")
    spec = protocol_spec(name)
    return dataclasses.replace(base, protocol=name, **(spec.settings(rest) if spec.settings else {}))


def rank(protocol: str, model, prompts: list[list[int]], catalogue: Catalogue, k: int = 20, batch_size: int = 16,
         exclude: Sequence[np.ndarray] | None = None, **options) -> Ranking:
    """Rank the catalogue for every prompt with the named protocol; `exclude` gives, per prompt, catalogue
    positions that may not appear in its list (the user's consumed items)."""
    return PROTOCOLS.get(protocol)(model, prompts, catalogue, k=k, batch_size=batch_size, exclude=exclude, **options)


class ProtocolRecommender:
    """A model ranked by a named protocol with fixed options (grounding: tokenizer, embedder, generation settings)."""

    def __init__(self, model, catalogue: Catalogue, protocol: str, batch_size: int = 16, **options):
        PROTOCOLS.get(protocol)  # an unknown name fails here, not after training
        self.model, self.catalogue, self.protocol, self.batch_size, self.options = (
            model, catalogue, protocol, batch_size, options)

    def rank(self, prompts, histories, k, exclude=None):
        result = rank(self.protocol, self.model, prompts, self.catalogue, k=k, batch_size=self.batch_size,
                      exclude=exclude, **self.options)
        return result.topk, result.valid
