"""The catalogue a ranking protocol ranks (every item's completion tokens and their trie) and what it returns.

A `Catalogue` is the list of items with their completions (title tokens + EOS) in catalogue order; positions, not
item ids, are what rankings hold. A `Ranking` is the (n, k) top-k positions per prompt (-1 where fewer than k valid
items came out) and whether each prompt's top-1 output was a catalogue item. `top_k` turns a score matrix into a
ranking with ties broken by catalogue position (lower first). Treat a `Catalogue` as immutable: the likelihood
protocol caches its packing plan on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from methods.ranking.trie import Trie


@dataclass
class Catalogue:
    items: list[int]  # item id at each catalogue position
    completions: list[list[int]]  # title tokens + EOS, per catalogue position
    eos_id: int
    pad_id: int
    trie: Trie = field(init=False, repr=False, compare=False)
    _plans: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.items) != len(self.completions):
            raise ValueError(f"{len(self.items)} items but {len(self.completions)} completions")
        if self.pad_id is None or self.eos_id is None:
            raise ValueError("Catalogue needs integer eos_id and pad_id (pad may equal eos)")
        self.trie = Trie(self.completions, self.eos_id)  # also checks EOS placement and uniqueness

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Ranking:
    topk: np.ndarray  # (n, k) int64 catalogue positions, -1 where fewer than k valid items
    valid: np.ndarray  # (n,) bool: whether the top-1 output was a catalogue item


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Best k columns per row, ties broken by column (lower first); -1 fills rows with fewer than k columns."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    if order.shape[1] < k:
        order = np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=-1)
    return order
