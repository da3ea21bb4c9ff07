"""The registry of ranking protocols and the recommender every LLM method returns.

A protocol is a function ``(model, prompts, catalogue, k, batch_size, exclude=None, **options) -> Ranking``;
``exclude`` holds, per prompt, the catalogue positions its list may not contain (every protocol honours it). Each one registers
itself in `PROTOCOLS` in the module that implements it: ``likelihood`` (`methods.ranking.likelihood`), ``beam``
(`methods.ranking.beam`) and ``grounding`` (`methods.ranking.grounding`); importing `methods.ranking` imports all
three. `rank(name, ...)` dispatches by name (an unknown name suggests the closest registered one), and
`ProtocolRecommender` wraps a trained model with a protocol and its options into a `methods.base.Recommender`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from methods.ranking.catalogue import Catalogue, Ranking
from splits.registry import Registry

Protocol = Callable[..., Ranking]
PROTOCOLS: Registry[Protocol] = Registry("ranking protocol")


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
