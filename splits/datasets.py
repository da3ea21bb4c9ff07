"""Dataset registry and the shared filter that turns a raw ratings table into a `Dataset` (CausalDPO, Appendix B.1).

A loader reads its raw files into a frame with columns ``user``, ``item``, ``rating``, ``timestamp`` (one row per
rating, in file order) and a ``{item: title}`` map, then calls `make_dataset`, which applies the paper's two filters:

* an interaction is *positive* iff ``rating >= positive_threshold`` (the paper writes "> 4" for ML-10M/Yelp2018 and
  "> 7" for Book-Crossing; each loader states how it maps that rule to the ``>=`` threshold it stores);
* users with at least ``min_user_positives`` positive interactions are kept, with *all* their ratings (positive or
  not, flagged by the ``positive`` column). The paper says "at least 20 interactions"; we count positives, because
  only positives become samples and a user needs enough of them to have a history and a target.

Before the filters, one interaction per (user, item) is kept: the earliest, by (timestamp, file row), with its
rating (repeated reviews of a business, repeated ratings of a book; RecBole's ``rm_dup_inter: first``), so a test
target can never sit in the same user's history; ``info["duplicate_interactions"]`` counts those dropped. Rows are
then sorted by (user, timestamp, original file row) and the index reset to 0..n-1: the index is the interaction id. The catalogue (`Dataset.titles`) is exactly the items that occur in the filtered interactions.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd

from .fingerprint import fingerprint_frame
from .registry import Registry
from .types import COLUMNS, Dataset

Resolver = Callable[[str, dict], "Callable[..., Dataset] | None"]


class DatasetRegistry(Registry[Callable[..., Dataset]]):
    """The dataset registry, plus resolvers tried, in order, for a name that is not registered (`splits.custom`: a
    user's dataset prepared in the data dir). ``get(name, **options)`` passes the load options (``data_dir``,
    ``raw_path``) to the resolvers; when none claims the name, the usual "did you mean" error."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self._resolvers: list[Resolver] = []

    def add_resolver(self, resolver: Resolver) -> None:
        self._resolvers.append(resolver)

    def get(self, name: str, **options) -> Callable[..., Dataset]:
        if name not in self:
            for resolver in self._resolvers:
                loader = resolver(name, options)
                if loader is not None:
                    return loader
        return super().get(name)


DATASETS = DatasetRegistry("dataset")


def load_dataset(name: str, **options) -> Dataset:
    """Load a registered dataset, or a custom one prepared in the data dir; ``options`` (e.g. ``min_user_positives``,
    ``data_dir``) override the loader's defaults."""
    where = {k: options[k] for k in ("data_dir", "raw_path") if options.get(k) is not None}
    return DATASETS.get(name, **where)(**options)


def unique_titles(titles: dict[int, str]) -> dict[int, str]:
    """Disambiguate titles shared by several items: in item-id order the first keeps it, the k-th gets " [k]".
    Titles that differ only in whitespace count as shared: a whitespace-split tokenizer cannot tell them apart."""
    def norm(title: str) -> str:
        return " ".join(title.split())

    taken = {norm(t) for t in titles.values()}
    seen: dict[str, int] = {}
    out: dict[int, str] = {}
    for item in sorted(titles):
        title = titles[item]
        key = norm(title)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            k = seen[key]
            while norm(f"{title} [{k}]") in taken:
                k += 1
            title = f"{title} [{k}]"
            taken.add(norm(title))
        out[item] = title
    return out


def make_dataset(
    name: str,
    raw: pd.DataFrame,
    titles: dict[int, str],
    positive_threshold: float,
    min_user_positives: int,
    info: dict | None = None,
) -> Dataset:
    """Apply the positive threshold and the per-user filter to ``raw`` (file order) and build the `Dataset`."""
    frame = pd.DataFrame({
        "user": raw["user"].astype("int64").to_numpy(),
        "item": raw["item"].astype("int64").to_numpy(),
        "rating": raw["rating"].astype("float64").to_numpy(),
        "timestamp": raw["timestamp"].astype("int64").to_numpy(),
    })
    frame["row"] = range(len(frame))
    repeated = frame.sort_values(["user", "item", "timestamp", "row"], kind="stable").duplicated(["user", "item"])
    frame = frame.drop(index=repeated.index[repeated.to_numpy()])
    frame["positive"] = frame["rating"] >= positive_threshold
    per_user = frame.groupby("user")["positive"].sum()
    kept_users = per_user.index[per_user >= min_user_positives]
    frame = frame[frame["user"].isin(kept_users)]
    frame = frame.sort_values(["user", "timestamp", "row"], kind="stable").reset_index(drop=True)
    interactions = frame[list(COLUMNS)]

    items = set(interactions["item"].unique().tolist())
    missing = items - set(titles)
    if missing:
        raise ValueError(f"{name}: items without a title: {sorted(missing)[:10]}")
    positives = interactions[interactions["positive"]]
    stats = {
        "raw_users": int(raw["user"].nunique()),
        "raw_items": int(raw["item"].nunique()),
        "raw_interactions": len(raw),
        "duplicate_interactions": int(repeated.sum()),
        "n_users": int(interactions["user"].nunique()),
        "n_items": len(items),
        "n_interactions": len(interactions),
        "n_positives": len(positives),
        "n_positive_items": int(positives["item"].nunique()),
        "positive_rule": f"rating >= {positive_threshold:g}",
        "fingerprint": fingerprint_frame(interactions),
    }
    return Dataset(
        name=name,
        interactions=interactions,
        titles={item: titles[item] for item in sorted(items)},
        positive_threshold=float(positive_threshold),
        min_user_positives=int(min_user_positives),
        info={**(info or {}), **stats},
    )
