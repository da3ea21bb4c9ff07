"""Item popularity groups and sample time periods, the strata the benchmark reports metrics by (Figure 2, Table 4).

Popularity groups: items sorted by training interaction count, most popular first, ties broken by catalogue
position (lower first), then cut into `n_groups` groups of equal size (sizes differ by at most one, the larger groups
first). Group ids are 0-based: id g is named ``G{g+1}``, G1 the most popular 20% of items with 5 groups.
Time periods: samples ordered by their target's timestamp, cut into `n_periods` equal-size chunks (T1 earliest).
"""
from __future__ import annotations

import numpy as np


def popularity_groups(train_counts: np.ndarray, n_groups: int = 5) -> np.ndarray:
    """Group id (0 = G1, most popular) of every catalogue position, equal item counts per group."""
    counts = np.asarray(train_counts)
    if len(counts) < n_groups:
        raise ValueError(f"{len(counts)} items cannot fill {n_groups} groups")
    order = np.lexsort((np.arange(len(counts)), -counts))  # count descending, then position ascending
    groups = np.empty(len(counts), dtype=np.int64)
    for g, members in enumerate(np.array_split(order, n_groups)):
        groups[members] = g
    return groups



def time_periods(timestamps: np.ndarray, n_periods: int = 5) -> np.ndarray:
    """Period id (0 = T1, earliest) of every sample: equal-size chunks of the samples ordered by target time."""
    periods = np.empty(len(timestamps), dtype=np.int64)
    for p, members in enumerate(np.array_split(np.argsort(np.asarray(timestamps), kind="stable"), n_periods)):
        periods[members] = p
    return periods
