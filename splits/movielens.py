"""MovieLens-100K, the copy shipped inside the recbole wheel (the `tiny` profile's stand-in for ML-10M, Appendix B.1).

Files: ``recbole/dataset_example/ml-100k/ml-100k.inter`` (tab-separated ``user_id item_id rating timestamp``,
100,000 ratings of 1-5 stars by 943 users on 1,682 items) and ``ml-100k.item`` (UTF-8; ``item_id movie_title
release_year class``).

Filters. The paper calls ML-10M ratings "greater than 4" positive. On a 1-5 star scale "> 4" keeps only 5-star
ratings, and on ML-100K only 363 users have 20 of those; we use ``rating >= 4`` (i.e. "> 3", 4 and 5 stars) with
at least 20 positives per user, which keeps 703 users, 93,238 ratings (52,244 positive) and 1,681 items (1,439 of
them with a positive). Pass ``positive_threshold=5`` to get the paper's literal rule.

Titles are "Title (YEAR)", or just the title where the year is not a 4-digit number (item 267, whose title and
year read "unkonwn" in recbole's copy; item 1412, whose title already carries its year). Titles still shared by
several items (18 pairs, e.g. "Chasing Amy (1997)", items 246 and 268) get " [2]" on the higher item id; the rule is
applied to the whole item file, so an item's title does not depend on the filter options.
"""
from __future__ import annotations

import csv
import importlib.metadata
import importlib.resources
from pathlib import Path

import pandas as pd

from .datasets import DATASETS, make_dataset, unique_titles
from .types import Dataset


def ml100k_dir() -> Path:
    return Path(str(importlib.resources.files("recbole") / "dataset_example" / "ml-100k"))


def read_ml100k_titles(path: Path) -> dict[int, str]:
    items = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE, encoding="utf-8")
    items.columns = ["item", "title", "year", "genres"]
    titles = {}
    for item, title, year in zip(items["item"], items["title"], items["year"]):
        title = title.strip()
        titles[int(item)] = f"{title} ({year})" if year.isdigit() and len(year) == 4 else title
    return unique_titles(titles)


@DATASETS.register("ml-100k")
def load_ml100k(positive_threshold: float = 4.0, min_user_positives: int = 20) -> Dataset:
    folder = ml100k_dir()
    raw = pd.read_csv(folder / "ml-100k.inter", sep="\t")
    raw.columns = ["user", "item", "rating", "timestamp"]
    return make_dataset(
        "ml-100k",
        raw,
        read_ml100k_titles(folder / "ml-100k.item"),
        positive_threshold=positive_threshold,
        min_user_positives=min_user_positives,
        info={"source": f"recbole {importlib.metadata.version('recbole')}: dataset_example/ml-100k",
              "paper_rule": "rating > 4 (ML-10M)"},
    )
