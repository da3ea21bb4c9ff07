"""The catalogue a ranking protocol ranks (every item's completion tokens and their trie) and what it returns.

A `Catalogue` is the list of items with their completions (title tokens + EOS) in catalogue order; positions, not
item ids, are what rankings hold. A `Ranking` is the (n, k) top-k positions per prompt (-1 where fewer than k valid
items came out) and whether each prompt's top-1 output was a catalogue item. `top_k` turns a score matrix into a
ranking with ties broken by catalogue position (lower first), leaving out a row's excluded positions (the user's
already-consumed items, ``ranking.exclude_seen``). Treat a `Catalogue` as immutable: the likelihood
protocol caches its packing plan on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

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


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Best k columns per row, ties broken by column (lower first). Columns scoring -inf are not ranked, nor are
    a row's `exclude`d columns; -1 fills rows with fewer than k ranked columns."""
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is not None:
        scores = excluded(scores, exclude)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    if order.shape[1] < k:
        order = np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=-1)
    unranked = order >= 0
    unranked[unranked] = np.isneginf(np.take_along_axis(scores, np.maximum(order, 0), 1)[unranked])
    order[unranked] = -1
    return order


def excluded(scores: np.ndarray, exclude: Sequence[np.ndarray]) -> np.ndarray:
    """A copy of (n, n_items) `scores` with each row's excluded catalogue positions set to -inf."""
    if len(exclude) != len(scores):
        raise ValueError(f"{len(exclude)} exclusion lists for {len(scores)} rows")
    out = np.array(scores, dtype=np.float64, copy=True)
    rows = np.repeat(np.arange(len(out)), [len(e) for e in exclude])
    out[rows, np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude]) if len(rows) else rows] = -np.inf
    return out
