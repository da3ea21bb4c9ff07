"""Length-grouped batches: every sample once per epoch, each batch made of samples of similar length, so little of a
step is padding (rows are padded to the batch's longest).

The epoch's order is a seeded permutation cut into windows of `window` batches; each window is sorted by length and
cut into batches, and the full batches of the whole epoch are shuffled (seeded; a short one, if any, stays last: a
data loader cuts the index stream every `batch_size`), so a batch's lengths are close while the
order of batches stays random (no long-to-short sweep through the epoch). `set_epoch` (called by accelerate's data
loader) gives each epoch its own order. The same idea as transformers' `LengthGroupedSampler`, with the batch order
shuffled and the lengths given explicitly.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch


class LengthGroupedSampler(torch.utils.data.Sampler[int]):
    """Indices 0..n-1, each once per epoch, in runs of `batch_size` of similar `lengths` (see module docstring)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, window: int = 50):
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be >= 1, got {batch_size}, {window}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.window, self.epoch = batch_size, seed, window, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[np.ndarray]:
        """The epoch's batches of indices, in the order they are visited."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            window = order[start: start + span]
            window = window[np.argsort(-self.lengths[window], kind="stable")]
            batches += [window[i: i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]    # a data loader cuts the stream every batch_size
        short = [b for b in batches if len(b) < self.batch_size]   # indices: the one short batch must come last
        return [full[i] for i in rng.permutation(len(full))] + short

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch.tolist()


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The fraction of a step's padded tokens that are padding, over `batches` of indices into `lengths`."""
    lengths = np.asarray(lengths)
    padded = sum(len(b) * int(lengths[np.asarray(b)].max()) for b in batches if len(b))
    return 1.0 - sum(int(lengths[np.asarray(b)].sum()) for b in batches if len(b)) / max(padded, 1)
