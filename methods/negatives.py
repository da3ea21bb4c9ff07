"""Rejected responses: seeded random catalogue items, never the target and never in the user's history.

This is the negative sampler of DPO, CausalDPO (following S-DPO) and the other pairwise baselines; methods that
define their own negatives (SPRec: the model's own prediction) do not use it.
"""
from __future__ import annotations

import numpy as np


def random_negatives(targets: np.ndarray, histories: list[np.ndarray], items: np.ndarray, k: int,
                     seed: int) -> np.ndarray:
    """(n, k) item ids, distinct within a row, none equal to the row's target or in its history."""
    longest = max((len(h) for h in histories), default=0)
    if len(items) < k + 1 + longest:
        raise ValueError(f"a catalogue of {len(items)} items is too small for {k} negatives per sample "
                         f"with histories of up to {longest} items")
    rng = np.random.default_rng(seed)
    out = np.empty((len(targets), k), dtype=np.int64)
    for row, (target, history) in enumerate(zip(targets, histories)):
        banned = set(history.tolist()) | {int(target)}
        chosen: list[int] = []
        while len(chosen) < k:
            for item in rng.choice(items, size=2 * k, replace=True).tolist():
                if item not in banned and item not in chosen:
                    chosen.append(item)
                    if len(chosen) == k:
                        break
        out[row] = chosen
    return out
