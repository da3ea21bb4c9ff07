"""The two data types every stage exchanges: a loaded dataset and a split of it.

`Dataset.interactions` holds *all* ratings after the per-user filter (columns ``user``, ``item``, ``rating``,
``timestamp``, ``positive``), ordered by (user, timestamp, original row), so that an interaction's position in the
frame is a total order within a user even when timestamps tie. `Dataset.titles` maps every item id to a unique
display title (titles are not keys: duplicates are disambiguated by the loader).

`Split` holds, for each part, a frame of *positive* interactions (same columns) that become samples: ``train``,
``valid``, ``iid_test``, ``ood_test``. Parts are disjoint by interaction (row index of `Dataset.interactions`,
kept as the frame index), except for imputed exposure targets, which are new (user, item) pairs whose index is -1
and whose ``rating`` is the imputed one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

PARTS = ("train", "valid", "iid_test", "ood_test")
COLUMNS = ("user", "item", "rating", "timestamp", "positive")


@dataclass(frozen=True)
class Dataset:
    name: str
    interactions: pd.DataFrame
    titles: dict[int, str]
    positive_threshold: float
    min_user_positives: int
    info: dict = field(default_factory=dict)

    @property
    def positives(self) -> pd.DataFrame:
        return self.interactions[self.interactions["positive"]]

    @property
    def items(self) -> list[int]:
        """Every item of the catalogue, sorted by id."""
        return sorted(self.titles)


@dataclass(frozen=True)
class Split:
    dataset: str
    shift: str
    seed: int
    parts: dict[str, pd.DataFrame]
    fingerprint: str
    info: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict, compare=False, repr=False)  # models the shift was built with
    # (exposure: the imputation MF, ``extras["imputation_mf"]``); neither fingerprinted nor written anywhere

    def __getitem__(self, part: str) -> pd.DataFrame:
        return self.parts[part]
