"""Samples: (user, history of at most N positive items, target item) built from a split part.

History rule (one rule for every part and shift): the user's *training-part* positives strictly before the
target, in the dataset's total order (timestamp, then interaction id), the most recent `history_len` of them,
oldest first. Only training interactions ever enter a prompt, so no valid/test item leaks into a history.
Imputed exposure targets (interaction id -1) come before any real interaction with the same timestamp.
A target with an empty history cannot be prompted and is dropped; the count is kept in `Samples.dropped`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from splits.types import Split

_SHIFT = np.int64(1) << np.int64(25)  # order key = timestamp * 2^25 + (interaction id + 1)


@dataclass
class Samples:
    part: str
    users: np.ndarray
    targets: np.ndarray
    histories: list[np.ndarray]
    dropped: int = 0
    timestamps: np.ndarray | None = None    # the target interaction's timestamp (time periods T1..T5)

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx: np.ndarray) -> "Samples":
        stamps = None if self.timestamps is None else self.timestamps[idx]
        return Samples(self.part, self.users[idx], self.targets[idx], [self.histories[i] for i in idx], self.dropped,
                       stamps)


def _order_key(frame: pd.DataFrame) -> np.ndarray:
    return frame["timestamp"].to_numpy(np.int64) * _SHIFT + (frame.index.to_numpy(np.int64) + 1)


def build_samples(split: Split, part: str, history_len: int, max_samples: int | None = None,
                  seed: int = 0) -> Samples:
    """Samples of one part; `max_samples` keeps a seeded random subset (same subset for every method)."""
    train = split["train"]
    target_frame = split[part]
    train_keys = _order_key(train)
    order = np.lexsort((train_keys, train["user"].to_numpy()))
    t_users, t_items, t_keys = (train["user"].to_numpy()[order], train["item"].to_numpy()[order], train_keys[order])
    starts = {u: s for u, s in zip(*np.unique(t_users, return_index=True))}
    ends = {u: s + c for u, s, c in zip(*np.unique(t_users, return_index=True, return_counts=True))}

    users, targets, histories, stamps, dropped = [], [], [], [], 0
    for user, item, key, stamp in zip(target_frame["user"].to_numpy(), target_frame["item"].to_numpy(),
                                      _order_key(target_frame), target_frame["timestamp"].to_numpy(np.int64)):
        lo, hi = starts.get(user, 0), ends.get(user, 0)
        cut = lo + int(np.searchsorted(t_keys[lo:hi], key, side="left"))
        history = t_items[max(lo, cut - history_len):cut]
        if len(history) == 0:
            dropped += 1
            continue
        users.append(user)
        targets.append(item)
        histories.append(history)
        stamps.append(stamp)
    samples = Samples(part, np.asarray(users, np.int64), np.asarray(targets, np.int64), histories, dropped,
                      np.asarray(stamps, np.int64))
    if max_samples is not None and len(samples) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(samples), max_samples, replace=False))
        samples = samples.subset(keep)
    return samples
