"""Raw readers of ML-10M, Yelp2018 and Book-Crossing on small files in each published format (splits.ml10m,
splits.yelp, splits.bookcrossing), checked against hand-computed counts."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from splits import DATASETS, load_dataset
from splits.prepared import LineError
from splits.types import COLUMNS


# ---------------------------------------------------------------- ML-10M
def ml10m_lines() -> list[str]:
    lines = []
    # user 1: 20 positives (4.5 / 5) and 2 ratings of 4.0 (not positive: "> 4"), timestamps decreasing
    for i in range(20):
        lines.append(f"1::{i + 1}::{4.5 if i % 2 else 5}::{1_000_000 - i}")
    lines += ["1::21::4::900", "1::22::4.0::901"]
    # user 2: 19 positives and 5 ratings of 4 -> dropped
    lines += [f"2::{i + 1}::5::{2_000 + i}" for i in range(19)] + [f"2::{i + 1}::4::{3_000 + i}" for i in range(5)]
    # user 3: 21 positives (4.5) and 4 of 3.5 -> kept
    lines += [f"3::{i + 1}::4.5::{5_000 + i}" for i in range(21)] + [f"3::{i + 1}::3.5::{6_000 + i}" for i in range(4)]
    return lines


def write_ml10m(folder: Path, ratings: list[str] | None = None) -> Path:
    folder = folder / "ml-10M100K"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("\n".join(ratings or ml10m_lines()) + "\n")
    movies = b"".join(f"{i}::Movie {i} (199{i % 10})::Drama|Comedy\n".encode() for i in range(1, 23) if i not in (7, 8))
    movies += "7::Hamlet (1990)::Drama\n8::Hamlet (1990)::Drama\n".encode()
    movies = movies.replace(b"Movie 3 (1993)", "Misérables, Les (1995)".encode("latin-1"))  # a non-UTF-8 line
    (folder / "movies.dat").write_bytes(movies)
    return folder


def test_registered():
    for name in ("ml-100k", "ml-10m", "yelp2018", "book-crossing"):
        assert name in DATASETS


def test_ml10m_counts(tmp_path):
    ds = load_dataset("ml-10m", raw_path=str(write_ml10m(tmp_path)))
    info = ds.info
    assert (info["raw_users"], info["raw_interactions"]) == (3, 22 + 24 + 25)
    assert (info["n_users"], info["n_interactions"], info["n_positives"]) == (2, 22 + 25, 20 + 21)
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
def write_yelp(folder: Path, extra_review: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    businesses = [
        {"business_id": "b1", "name": "Starbucks", "city": "Las Vegas", "stars": 4.0},
        {"business_id": "b2", "name": "Starbucks", "city": "Las Vegas"},
        {"business_id": "b3", "name": "Joe's", "city": "Phoenix"},
        {"business_id": "b4", "name": None, "city": "Phoenix"},  # no name: its reviews are dropped
        {"business_id": "b5", "name": "Starbucks", "city": "Toronto"},
    ]
    (folder / "yelp_academic_dataset_business.json").write_text("".join(json.dumps(b) + "\n" for b in businesses))
    reviews = []
    day = 0

    def review(user, business, stars):
        nonlocal day
        day += 1
        reviews.append({"review_id": f"r{len(reviews)}", "user_id": user, "business_id": business, "stars": stars,
                        "date": f"2015-{1 + day // 28:02d}-{1 + day % 28:02d} 12:00:00", "text": "..."})

    bs = ["b1", "b2", "b3", "b5"]
    for i in range(40):  # user A: 40 five-star reviews, 3 four-star, 2 on the unnamed b4, 1 on an unknown business
        review("userA", bs[i % 4], 5)
    for i in range(3):
        review("userA", "b3", 4)
    review("userA", "b4", 5)
    review("userA", "b4", 5)
    review("userA", "bX", 5)
    for i in range(39):  # user B: 39 five-star + 10 others -> dropped
        review("userB", bs[i % 4], 5.0)
    for i in range(10):
        review("userB", "b1", 1 + i % 4)
    lines = [json.dumps(r) for r in reviews]
    if extra_review is not None:
        lines.insert(4, extra_review)
    (folder / "yelp_academic_dataset_review.json").write_text("\n".join(lines) + "\n")
    return folder


def test_yelp_counts(tmp_path):
    ds = load_dataset("yelp2018", raw_path=str(write_yelp(tmp_path / "yelp")))
    info = ds.info
    assert info["businesses_without_name"] == 1 and info["reviews_dropped_no_business"] == 3
    assert (info["raw_users"], info["raw_interactions"]) == (2, 43 + 49)
    assert (info["n_users"], info["n_interactions"], info["n_positives"]) == (1, 43, 40)
    assert ds.positive_threshold == 5.0 and ds.min_user_positives == 40
    assert ds.titles == {1: "Starbucks (Las Vegas)", 2: "Starbucks (Las Vegas) [2]", 3: "Joe's (Phoenix)",
                         4: "Starbucks (Toronto)"}  # b5 gets id 4: b4 (no name) gets none
    df = ds.interactions
    assert (df["timestamp"].diff().dropna() > 0).all()
    assert df["timestamp"].iloc[0] == int(pd.Timestamp("2015-01-02 12:00:00", tz="UTC").timestamp())
    assert not df.loc[df["rating"] == 4, "positive"].any()
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
BOOKS = [
    b'"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"',
    b'"0001";"Tom &amp; Jerry";"Auth";"1999";"P";"s";"m";"l"',
    b'"0002";"Les Mis\xe9rables";"Hugo";"0";"P";"s";"m";"l"',  # latin-1 byte, unknown year
    b'"0003";"DK Readers: X (Level 4)\\";Michael T";"2000";"DK";"s";"m";"l"',  # malformed: 7 fields
    b'"0004";"Tom &amp; Jerry";"Other";"2050";"P";"s";"m";"l"',  # same title, impossible year
    b'"000500000X";"Dad\x92s Book";"A";"1980";"P";"s";"m";"l"',  # cp1252 right quote
    b'"0006";"The "Best" Book";"A";"2001";"P";"s";"m";"l"',  # stray quotes inside a field
]


def write_bx(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ratings = ['"User-ID";"ISBN";"Book-Rating"']
    kept = ["0001", "0002", "0004", "000500000x", "0006"]  # lower-case x: ISBNs are matched upper-case
    ratings += [f'"10";"{kept[i % 5]}";"{8 + i % 3}"' for i in range(20)]  # 20 positives (8-10)
    ratings += ['"10";"0001";"0"', '"10";"0002";"0"', '"10";"0006";"7"']  # 2 implicit, one 7 (not "> 7")
    ratings += ['"10";"0003";"9"', '"10";"9999";"10"']  # book row skipped / unknown ISBN: dropped
    ratings += ['"12";"0001";"5";"extra"', '"abc";"0001";"5"']  # malformed: skipped
    ratings += ['"11";"0001";"9"' for _ in range(19)] + ['"11";"0002";"0"' for _ in range(5)]  # dropped user
    (folder / "BX-Book-Ratings.csv").write_bytes(("\r\n".join(ratings) + "\r\n").encode("cp1252"))
    (folder / "BX-Books.csv").write_bytes(b"\r\n".join(BOOKS) + b"\r\n")
    return folder


def test_bookcrossing_counts(tmp_path):
    ds = load_dataset("book-crossing", raw_path=str(write_bx(tmp_path / "bx")))
    info = ds.info
    assert info["skipped_lines"] == {"BX-Books.csv": 1, "BX-Book-Ratings.csv": 2}
    assert info["skipped_examples"][0].startswith("BX-Books.csv:4:")
    assert info["ratings_without_book"] == 2 and info["duplicate_isbns"] == 0
    assert info["implicit_ratings"] == 2 + 5
    assert (info["raw_users"], info["raw_interactions"]) == (2, 23 + 24)
    assert (info["n_users"], info["n_interactions"], info["n_positives"]) == (1, 23, 20)
    assert ds.positive_threshold == 8.0 and ds.min_user_positives == 20
    assert ds.titles == {1: "Tom & Jerry", 2: "Les Misérables", 3: "Tom & Jerry [2]", 4: "Dad’s Book",
                         5: 'The "Best" Book'}
    df = ds.interactions
    assert not df.loc[df["rating"] <= 7, "positive"].any() and df.loc[df["rating"] >= 8, "positive"].all()
    # timestamp = year of publication (unknown/impossible -> 0), ties in file order
    years = {1: 1999, 2: 0, 3: 0, 4: 1980, 5: 2001}
    assert (df["timestamp"] == df["item"].map(years)).all()
    assert df["timestamp"].is_monotonic_increasing
    assert list(df["item"].head(4)) == [2, 3, 2, 3]  # items 2 and 3 (year 0), in file order
    assert load_dataset("book-crossing", raw_path=str(tmp_path / "bx"), min_user_positives=19).info["n_users"] == 2
