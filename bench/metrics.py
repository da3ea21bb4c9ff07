"""Top-k ranking metrics with one relevant item per sample, overall and per popularity group.

Rankings are (n, K) arrays of catalogue positions in rank order, -1 where a protocol produced fewer than K valid
items; targets are catalogue positions. The target's 0-based rank r counts as a hit at K when r < K, and then
NDCG@K = 1 / log2(r + 2) (the ideal DCG of a single relevant item is 1). Every metric is averaged over ALL samples:
a sample whose output was invalid, or whose target is not in its list, contributes 0; nothing is dropped. A -1 entry
never matches a target.

Popularity groups (`splits.groups`): id g is named ``G{g+1}``, G1 the most popular 20% of items with 5 groups;
time periods T1..T5 likewise.

Every function returns plain Python numbers (JSON-serialisable).
"""
from __future__ import annotations

import numpy as np


def target_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its row, or K (the list length) where it is absent."""
    topk, targets = np.asarray(topk), np.asarray(targets)
    if topk.ndim != 2 or targets.shape != (len(topk),):
        raise ValueError(f"topk must be (n, K) and targets (n,), got {topk.shape} and {targets.shape}")
    if (targets < 0).any():
        raise ValueError("targets must be catalogue positions (>= 0)")
    hits = topk == targets[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), topk.shape[1])


def _metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) if len(ranks) else 0.0
    return out


def _check_k(topk: np.ndarray, ks: tuple[int, ...]) -> None:
    if max(ks) > np.asarray(topk).shape[1]:
        raise ValueError(f"metrics at K={max(ks)} need at least {max(ks)} ranked items, got {np.shape(topk)[1]}")


def ranking_metrics(topk: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = (10, 20),
                    valid: np.ndarray | None = None) -> dict[str, float]:
    """HR@K and NDCG@K for each K in `ks` over all samples; with `valid`, also ``valid_ratio``."""
    _check_k(topk, ks)
    out = _metrics_from_ranks(target_ranks(topk, targets), ks)
    if valid is not None:
        out["valid_ratio"] = valid_ratio(valid)
    return out


def valid_ratio(valid: np.ndarray) -> float:
    """Share of samples whose top-1 output was a catalogue item."""
    return float(np.asarray(valid, dtype=bool).mean()) if len(valid) else 0.0


def grouped_metrics(topk: np.ndarray, targets: np.ndarray, groups: np.ndarray,
                    ks: tuple[int, ...] = (10, 20)) -> dict[str, dict[str, float | int | None]]:
    """`ranking_metrics` over the samples whose target is in each group, keyed ``G1..Gn``, with ``n`` samples.

    A group without samples has ``n = 0`` and metrics None.
    """
    _check_k(topk, ks)
    return metrics_by_group(target_ranks(topk, targets), np.asarray(groups)[np.asarray(targets)],
                            int(np.max(groups)) + 1, "G", ks)


def metrics_by_group(ranks: np.ndarray, sample_groups: np.ndarray, n_groups: int, prefix: str,
                     ks: tuple[int, ...] = (10, 20)) -> dict[str, dict[str, float | int | None]]:
    """Metrics of the samples in each group (``prefix`` + 1-based id), with ``n``; empty groups get None."""
    out: dict[str, dict[str, float | int | None]] = {}
    for g in range(n_groups):
        members = sample_groups == g
        metrics = _metrics_from_ranks(ranks[members], ks)
        out[f"{prefix}{g + 1}"] = {"n": int(members.sum()),
                                   **{name: (value if members.any() else None) for name, value in metrics.items()}}
    return out


def recommendation_counts(topk: np.ndarray, groups: np.ndarray, k: int = 10) -> dict[str, int]:
    """How many of the top-k recommendations (over all samples, -1 entries skipped) fall in each group."""
    _check_k(topk, (k,))
    recommended = np.asarray(topk)[:, :k]
    recommended = recommended[recommended >= 0]
    n_groups = int(np.max(groups)) + 1
    counts = np.bincount(np.asarray(groups)[recommended], minlength=n_groups)
    return {f"G{g + 1}": int(c) for g, c in enumerate(counts)}
