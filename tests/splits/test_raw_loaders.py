"""Raw readers of ML-10M, Yelp2018 and Book-Crossing on small files in each published format (splits.ml10m,
splits.yelp, splits.bookcrossing), checked against hand-computed counts."""
from __future__ import annotations

import pandas as pd
import pytest

from splits import DATASETS, load_dataset
from splits.prepared import LineError
from splits.types import COLUMNS
from tests.support import ml10m_lines, write_bx, write_ml10m, write_yelp


# ---------------------------------------------------------------- ML-10M
def test_registered():
    for name in ("ml-100k", "ml-10m", "yelp2018", "book-crossing"):
        assert name in DATASETS


def test_ml10m_counts(tmp_path):
    ds = load_dataset("ml-10m", raw_path=str(write_ml10m(tmp_path)))
    info = ds.info
    assert (info["raw_users"], info["raw_interactions"]) == (3, 22 + 24 + 25)
    # user 3 rated items 1-4 twice (4.5, then 3.5): one interaction per (user, item), the first, is kept
    assert info["duplicate_interactions"] == 5 + 4                   # users 2 (items 1-5) and 3 (items 1-4)
    assert (info["n_users"], info["n_interactions"], info["n_positives"]) == (2, 22 + 21, 20 + 21)
    assert ds.positive_threshold == 4.5 and ds.min_user_positives == 20
    df = ds.interactions
    assert tuple(df.columns) == COLUMNS and df.index.equals(pd.RangeIndex(len(df)))
    assert sorted(df["user"].unique()) == [1, 3]
    assert not df.loc[df["rating"] == 4.0, "positive"].any()  # 4 is not "> 4"
    assert df.loc[df["rating"] >= 4.5, "positive"].all()
    first = df[df["user"] == 1].iloc[0]
    assert (first["item"], first["timestamp"]) == (21, 900)  # sorted by time, not file order
    assert ds.titles[7] == "Hamlet (1990)" and ds.titles[8] == "Hamlet (1990) [2]"
    assert ds.titles[3] == "Misérables, Les (1995)"
    assert ds.titles[1] == "Movie 1 (1991)"
    # the paper's literal count would differ only through the options
    assert load_dataset("ml-10m", raw_path=str(tmp_path), min_user_positives=19).info["n_users"] == 3


@pytest.mark.parametrize("bad, line", [
    ("1::2::abc::978300760", "non-numeric"),
    ("1::2::4.3::978300760", "half star"),
    ("1::2::4::978300760::9", "expected 4"),
    ("1::2::4", "expected 4"),
])
def test_ml10m_malformed_line_names_file_and_line(tmp_path, bad, line):
    lines = ml10m_lines()
    lines.insert(2, bad)
    folder = write_ml10m(tmp_path, lines)
    with pytest.raises(LineError, match=rf"ratings\.dat:3: .*{line}"):
        load_dataset("ml-10m", raw_path=str(folder))


def test_ml10m_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="ratings.dat"):
        load_dataset("ml-10m", raw_path=str(tmp_path))


# ---------------------------------------------------------------- Yelp
def test_yelp_counts(tmp_path):
    ds = load_dataset("yelp2018", raw_path=str(write_yelp(tmp_path / "yelp")))
    info = ds.info
    assert info["businesses_without_name"] == 1 and info["reviews_dropped_no_business"] == 3
    assert (info["raw_users"], info["raw_interactions"]) == (2, 44 + 49)
    assert info["duplicate_interactions"] == 1                       # user A's second review of b1
    assert (info["n_users"], info["n_interactions"], info["n_positives"]) == (1, 43, 40)
    assert ds.positive_threshold == 5.0 and ds.min_user_positives == 40
    assert {i: ds.titles[i] for i in range(1, 5)} == {1: "Starbucks (Las Vegas)", 2: "Starbucks (Las Vegas) [2]",
                                                      3: "Joe's (Phoenix)", 4: "Starbucks (Toronto)"}  # b4: no id
    df = ds.interactions
    assert (df["timestamp"].diff().dropna() > 0).all()
    assert df["timestamp"].iloc[0] == int(pd.Timestamp("2015-01-02 12:00:00", tz="UTC").timestamp())
    assert not df.loc[df["rating"] == 4, "positive"].any()
    assert not df.duplicated(["user", "item"]).any()
    first_b1 = df[(df["item"] == 1)]
    assert len(first_b1) == 1 and first_b1["rating"].iloc[0] == 5  # the first review (5 stars), not the 2-star one
    assert load_dataset("yelp2018", raw_path=str(tmp_path / "yelp"), min_user_positives=39).info["n_users"] == 2


def test_yelp_date_only_format(tmp_path):
    folder = write_yelp(tmp_path / "yelp")
    path = folder / "yelp_academic_dataset_review.json"
    path.write_text(path.read_text().replace(" 12:00:00", ""))  # older rounds: "YYYY-MM-DD"
    ds = load_dataset("yelp2018", raw_path=str(folder))
    assert ds.info["n_positives"] == 40
    assert ds.interactions["timestamp"].iloc[0] == int(pd.Timestamp("2015-01-02", tz="UTC").timestamp())


@pytest.mark.parametrize("bad, why", [("{not json", "not JSON"), ('{"user_id": "u", "stars": 5}', "missing field"),
                                      ('{"user_id": "u", "business_id": "b1", "stars": 5, "date": "2015/01/01"}',
                                       "bad stars/date")])
def test_yelp_malformed_line(tmp_path, bad, why):
    folder = write_yelp(tmp_path / "yelp", extra_review=bad)
    with pytest.raises(LineError, match=rf"yelp_academic_dataset_review\.json:5: {why}"):
        load_dataset("yelp2018", raw_path=str(folder))


# ---------------------------------------------------------------- Book-Crossing
def test_bookcrossing_counts(tmp_path):
    ds = load_dataset("book-crossing", raw_path=str(write_bx(tmp_path / "bx")))
    info = ds.info
    assert info["skipped_lines"] == {"BX-Books.csv": 1, "BX-Book-Ratings.csv": 2}
    assert info["skipped_examples"][0].startswith("BX-Books.csv:4:")
    assert info["ratings_without_book"] == 2 and info["duplicate_isbns"] == 0
    assert info["implicit_ratings"] == 2 + 5
    assert (info["raw_users"], info["raw_interactions"]) == (2, 24 + 24)
    assert info["duplicate_interactions"] == 1                       # user 10 re-rated book 0001
    assert (info["n_users"], info["n_interactions"], info["n_positives"]) == (1, 23, 20)
    assert ds.positive_threshold == 8.0 and ds.min_user_positives == 20
    assert {i: ds.titles[i] for i in range(1, 7)} == {
        1: "Tom & Jerry", 2: "Les Misérables", 3: "Tom & Jerry [2]", 4: "Dad’s Book", 5: 'The "Best" Book',
        6: 'The "Secret" Garden'}                                    # the dump's \" unescaped
    df = ds.interactions
    assert not df.loc[df["rating"] <= 7, "positive"].any() and df.loc[df["rating"] >= 8, "positive"].all()
    assert df.loc[df["item"] == 1, "rating"].tolist() == [8.0]      # the first rating of 0001 kept, not the 3
    # timestamp = year of publication (unknown/impossible -> 0), ties in file order
    years = {1: 1999, 2: 0, 3: 0, 4: 1980, 5: 2001, 6: 1911, **{6 + k: 1950 + k for k in range(1, 31)}}
    assert (df["timestamp"] == df["item"].map(years)).all()
    assert df["timestamp"].is_monotonic_increasing
    assert list(df["item"].head(2)) == [2, 3]  # items 2 and 3 (year 0), in file order
    assert load_dataset("book-crossing", raw_path=str(tmp_path / "bx"), min_user_positives=19).info["n_users"] == 2
