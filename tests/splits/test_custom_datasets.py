"""Users' own datasets: `python -m bench data prepare --format ...` (splits.custom), loaded by name afterwards."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pandas as pd
import pytest

from bench.cli import main
from splits import DATASETS, UnknownNameError, build_split, load_dataset

CSV = """uid,iid,stars,when,name
alice,m1,5,2020-01-01,Movie One
bob,m2,4,2020-01-02T10:00:00Z,Movie Two
alice,m2,3,2020-01-03 12:00:00,Movie Two
carol,m3,5,2020-01-04,Movie Three
bob,m1,5,2020-01-05,Movie One

alice,m3,4,2020-01-06,Movie Three
bob,m3,2,2020-01-07,Movie Three
"""
CSV_COLUMNS = "user=uid,item=iid,rating=stars,timestamp=when,title=name"


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def prepare(tmp_path, name, raw, fmt, columns, *extra):
    return main(["data", "prepare", "--dataset", name, "--format", fmt, "--raw", str(raw), "--columns", columns,
                 "--data-dir", str(tmp_path / "data"), *extra])


def test_csv_string_ids_iso_dates(tmp_path, capsys):
    raw = tmp_path / "ratings.csv"
    raw.write_text(CSV)
    assert prepare(tmp_path, "mine", raw, "csv", CSV_COLUMNS, "--positive-threshold", "4",
                   "--min-user-positives", "2") == 0
    assert "prepared mine" in capsys.readouterr().out
    ds = load_dataset("mine", data_dir=tmp_path / "data")
    # alice 1, bob 2, carol 3 (first appearance); m1 1, m2 2, m3 3; carol has one positive: filtered out
    assert ds.titles == {1: "Movie One", 2: "Movie Two", 3: "Movie Three"}
    assert ds.positive_threshold == 4 and ds.min_user_positives == 2
    frame = ds.interactions
    assert frame["user"].tolist() == [1, 1, 1, 2, 2, 2]
    assert frame["item"].tolist() == [1, 2, 3, 2, 1, 3]
    assert frame["timestamp"].tolist()[:3] == [utc("2020-01-01"), utc("2020-01-03T12:00:00"), utc("2020-01-06")]
    assert frame["positive"].tolist() == [True, False, True, True, True, False]
    assert ds.info["raw_users"] == 3 and ds.info["custom"]["format"] == "csv"
    # stored settings are defaults, load options override them
    assert load_dataset("mine", data_dir=tmp_path / "data", min_user_positives=1).info["n_users"] == 3
    split = build_split(load_dataset("mine", data_dir=tmp_path / "data", min_user_positives=1), "temporal", 0)
    assert split.fingerprint
    # found through $BENCH_DATA_DIR and the registry lookup the CLI's `run` does, with no extra argument
    assert "mine" not in DATASETS.names()
    assert main(["data", "stats", "--data-dir", str(tmp_path / "data")]) == 0
    assert "mine" in capsys.readouterr().out


def test_found_by_env_and_registry_get(tmp_path, monkeypatch):
    raw = tmp_path / "ratings.csv"
    raw.write_text(CSV)
    assert prepare(tmp_path, "mine", raw, "csv", CSV_COLUMNS, "--positive-threshold", "4",
                   "--min-user-positives", "1") == 0
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    assert DATASETS.get("mine")().info["n_users"] == 3
    assert load_dataset("mine").info["n_users"] == 3
    assert load_dataset("mine", raw_path=str(tmp_path / "data" / "mine")).info["n_users"] == 3
    with pytest.raises(UnknownNameError, match="Did you mean 'ml-10m'"):
        load_dataset("ml-10n")


def test_jsonl_milliseconds_separate_titles_implicit(tmp_path):
    rows = [{"u": 7, "i": "b", "t": 1_600_000_000_000}, {"u": 7, "i": "a", "t": 1_600_000_001_500},
            {"u": 8, "i": "b", "t": 1_600_000_002_000}]
    raw = tmp_path / "r.jsonl"
    raw.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    titles = tmp_path / "t.jsonl"
    titles.write_text("\n".join(json.dumps(r) for r in [{"i": "a", "title": "Alpha"}, {"i": "zzz", "title": "Only"},
                                                         {"i": "b", "title": "Beta"}]) + "\n")
    assert prepare(tmp_path, "clicks", raw, "jsonl", "user=u,item=i,timestamp=t", "--titles", str(titles),
                   "--min-user-positives", "1") == 0
    ds = load_dataset("clicks", data_dir=tmp_path / "data")
    assert ds.titles == {1: "Beta", 2: "Alpha"}  # item ids by first appearance in the ratings file; "zzz" skipped
    assert ds.interactions["timestamp"].tolist() == [1_600_000_000, 1_600_000_001, 1_600_000_002]
    assert ds.interactions["rating"].tolist() == [1.0] * 3 and ds.positive_threshold == 1
    assert ds.info["custom"]["titles"] == "t.jsonl"


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    raw = tmp_path / "r.parquet"
    pd.DataFrame({"user": ["x", "y", "x"], "item": [10, 20, 20], "rating": [5.0, 3.0, 4.0],
                  "ts": [100, 200, 300], "title": ["Ten", "Twenty", "Twenty"]}).to_parquet(raw)
    assert prepare(tmp_path, "pq", raw, "parquet", "user=user,item=item,rating=rating,timestamp=ts,title=title",
                   "--positive-threshold", "4", "--min-user-positives", "1") == 0
    ds = load_dataset("pq", data_dir=tmp_path / "data")
    assert ds.titles == {1: "Ten", 2: "Twenty"} and ds.interactions["timestamp"].tolist() == [100, 300]
    build_split(ds, "temporal", 0)


@pytest.mark.parametrize("text, columns, extra, message", [
    (CSV, "user=uid,item=iid,rating=score,timestamp=when,title=name", ["--positive-threshold", "4"],
     r"ratings\.csv: no column 'score' \(--columns rating=score\)"),
    (CSV.replace("alice,m2,3,", "alice,m2,three,"), CSV_COLUMNS, ["--positive-threshold", "4"],
     r"ratings\.csv:4: rating 'three'"),
    (CSV.replace("alice,m3,4,2020-01-06", "alice,m3,4,yesterday"), CSV_COLUMNS, ["--positive-threshold", "4"],
     r"ratings\.csv:8: timestamp 'yesterday'"),
    (CSV, CSV_COLUMNS, [], "--positive-threshold is required"),
    (CSV.replace("Movie Three\nbob", "Film Three\nbob", 1), CSV_COLUMNS, ["--positive-threshold", "4"],
     r"ratings\.csv:8: item 'm3' has title 'Movie Three' here and 'Film Three' at .*ratings\.csv:5"),
    (CSV, "user=uid,item=iid,rating=stars,timestamp=when", ["--positive-threshold", "4"], "no titles"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, text, columns, extra, message):
    raw = tmp_path / "ratings.csv"
    raw.write_text(text)
    assert prepare(tmp_path, "mine", raw, "csv", columns, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_jsonl_bad_line_named(tmp_path, capsys):
    raw = tmp_path / "r.jsonl"
    raw.write_text('{"u": 1, "i": 2, "t": 3, "n": "x"}\n\n{"u": 1, "i": \n')
    assert prepare(tmp_path, "j", raw, "jsonl", "user=u,item=i,timestamp=t,title=n") == 2
    assert "r.jsonl:3: not JSON" in capsys.readouterr().err


def test_reserved_name_and_failure_keeps_earlier(tmp_path, capsys):
    raw = tmp_path / "ratings.csv"
    raw.write_text(CSV)
    for name in ("ml-100k", "ml-10m", "yelp2018", "book-crossing"):
        assert prepare(tmp_path, name, raw, "csv", CSV_COLUMNS, "--positive-threshold", "4") == 2
        assert "reserved" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
    assert prepare(tmp_path, "mine", raw, "csv", CSV_COLUMNS, "--positive-threshold", "4") == 0
    before = (tmp_path / "data" / "mine" / "manifest.json").read_text()
    raw.write_text(CSV.replace("bob,m2,4,", "bob,m2,x,"))
    assert prepare(tmp_path, "mine", raw, "csv", CSV_COLUMNS, "--positive-threshold", "4") == 2
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mine"]
    assert (tmp_path / "data" / "mine" / "manifest.json").read_text() == before
    # custom options with a registered dataset are an error, not silently ignored
    assert main(["data", "prepare", "--dataset", "ml-10m", "--raw", str(tmp_path), "--columns", CSV_COLUMNS]) == 2
    assert "options of your own datasets" in capsys.readouterr().err


# --- Amazon Reviews 2023 --------------------------------------------------------------------------------------------

def review(user, asin, parent, rating, ms, title="Great!"):
    """One line of <Category>.jsonl exactly as published (field order and types of the 2023 release)."""
    return {"rating": rating, "title": title, "text": "Works as described.", "images": [], "asin": asin,
            "parent_asin": parent, "user_id": user, "timestamp": ms, "helpful_vote": 0, "verified_purchase": True}


def meta(parent, title):
    """One line of meta_<Category>.jsonl (a subset of the published fields, with their nested shapes)."""
    return {"main_category": "All Beauty", "title": title, "average_rating": 4.5, "rating_number": 12,
            "features": ["a", "b"], "description": [], "price": None,
            "images": [{"thumb": "t.jpg", "large": "l.jpg", "variant": "MAIN", "hi_res": None}], "videos": [],
            "store": "Acme", "categories": [], "details": {"Brand": "Acme"}, "parent_asin": parent,
            "bought_together": None}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def amazon_files(tmp_path):
    write_jsonl(tmp_path / "All_Beauty.jsonl", [
        review("AGKH", "B01-red", "B01", 5.0, 1588687728923, title="Love this conditioner"),
        review("AGKH", "B02", "B02", 4.0, 1588687729000),
        review("AFQL", "B01-blue", "B01", 3.0, 1600000000000),   # another variant of product B01
        review("AFQL", "B03", "B03", 5.0, 1600000001000),
        review("AFQL", "B09", "B09", 5.0, 1600000002000),        # its metadata has an empty title
        review("AGKH", "B03", "B03", 5.0, 1600000003000),
    ])
    write_jsonl(tmp_path / "meta_All_Beauty.jsonl", [
        meta("B01", "Howard LC0008 Leather Conditioner, 8-Ounce"), meta("B02", 'Shampoo "Extra" 12 oz'),
        meta("B03", "Hair Clips"), meta("B09", ""), meta("B77", "Never reviewed"),
    ])
    return tmp_path / "All_Beauty.jsonl"


def test_amazon2023_reviews_with_their_metadata(tmp_path, capsys):
    raw = amazon_files(tmp_path)
    assert main(["data", "prepare", "--dataset", "beauty", "--format", "amazon2023", "--raw", str(raw),
                 "--positive-threshold", "4", "--min-user-positives", "1", "--data-dir", str(tmp_path / "data")]) == 0
    ds = load_dataset("beauty", data_dir=tmp_path / "data")
    # items are products (parent_asin: both B01 variants are item 1), titled from the metadata, never from the
    # review's own "title"; the untitled product's review is dropped and counted
    assert ds.titles == {1: "Howard LC0008 Leather Conditioner, 8-Ounce", 2: 'Shampoo "Extra" 12 oz', 3: "Hair Clips"}
    frame = ds.interactions.sort_values(["user", "timestamp"])
    assert frame["item"].tolist() == [1, 2, 3, 1, 3]
    assert frame["timestamp"].tolist() == [1588687728, 1588687729, 1600000003, 1600000000, 1600000001]
    assert frame["positive"].tolist() == [True, True, True, False, True]
    custom = ds.info["custom"]
    assert custom["format"] == "amazon2023" and custom["titles"] == "meta_All_Beauty.jsonl"
    assert ds.info["untitled_items"] == 1 and ds.info["untitled_interactions"] == 1


@pytest.mark.parametrize("extra, message", [
    (["--columns", "user=user_id,item=asin,timestamp=timestamp"], "--columns: the amazon2023 format's columns are fixed"),
    (["--titles", "nope.jsonl"], "nope.jsonl: no such file"),
])
def test_amazon2023_refuses_columns_and_missing_metadata(tmp_path, capsys, extra, message):
    raw = amazon_files(tmp_path)
    argv = ["data", "prepare", "--dataset", "beauty", "--format", "amazon2023", "--raw", str(raw),
            "--positive-threshold", "4", "--data-dir", str(tmp_path / "data"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "data" / "beauty").exists()
    (tmp_path / "meta_All_Beauty.jsonl").unlink()
    assert main(argv[:10] + ["--data-dir", str(tmp_path / "data")]) == 2
    assert "meta_All_Beauty.jsonl: no such file" in capsys.readouterr().err


def test_amazon2023_bad_review_line_is_named(tmp_path, capsys):
    raw = amazon_files(tmp_path)
    lines = raw.read_text().splitlines()
    lines[2] = lines[2][:-5]                                   # a truncated line 3
    raw.write_text("\n".join(lines) + "\n")
    assert main(["data", "prepare", "--dataset", "beauty", "--format", "amazon2023", "--raw", str(raw),
                 "--positive-threshold", "4", "--data-dir", str(tmp_path / "data")]) == 2
    assert f"{raw}:3: not JSON" in capsys.readouterr().err
