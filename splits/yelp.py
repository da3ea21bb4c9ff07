"""Yelp2018, read from the Yelp Open Dataset's JSON-lines files (``yelp.com/dataset``, terms must be accepted there,
so there is no download URL).

Files (``--raw`` is the folder holding them): ``yelp_academic_dataset_review.json`` (one JSON object a line; we read
``user_id``, ``business_id``, ``stars`` (1-5) and ``date`` ("YYYY-MM-DD HH:MM:SS", or "YYYY-MM-DD" in older
rounds; read as UTC, stored as Unix seconds)) and ``yelp_academic_dataset_business.json`` (``business_id``,
``name``, ``city``), both UTF-8 (a line that does not decode is an error naming ``file:line``).

Filters. Positive: ``stars > 4``, i.e. 5 stars (``positive_threshold=5``); users with at least 40 positives (the
paper says "interactions"; we count positives, as for the MovieLens sets).

Ids: businesses get integer ids 1..n in business-file order, users 1..m in order of first review. Title: "Name
(City)" (chains such as "Starbucks" recur in many cities), made unique with `unique_titles`. Reviews of a business
absent from the business file or without a name are dropped and counted in ``info`` (``reviews_dropped_no_business``,
``businesses_without_name``). A line that is not a JSON object with those fields is an error naming ``file:line``
(the published files have none).

Discrepancy with the paper. Its Table 2 (31,668 users, 38,048 items, 1,561,406 interactions) gives the statistics of
the id-only "yelp2018" release used by graph recommenders (LightGCN/NGCF ``train.txt``/``test.txt``: no names, no
ratings, no dates), yet the paper filters by rating, shifts by time and needs item names for an LLM. No public file
has both, so we support the raw JSON and report what it gives (``python -m bench data stats``); the counts depend on
the Yelp release downloaded and will not match Table 2.
"""
from __future__ import annotations

from array import array
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .datasets import unique_titles
from .prepared import LineError, RawData, RawSpec, json_objects, register_raw

REVIEWS = "yelp_academic_dataset_review.json"
BUSINESSES = "yelp_academic_dataset_business.json"


def find_folder(raw: Path) -> Path:
    for folder in (raw, *sorted(p for p in raw.glob("*") if p.is_dir())) if raw.is_dir() else ():
        if (folder / REVIEWS).is_file() and (folder / BUSINESSES).is_file():
            return folder
    raise FileNotFoundError(f"{raw}: no {REVIEWS} and {BUSINESSES} (expected the extracted Yelp Open Dataset)")


def _records(path: Path, keys: tuple[str, ...]):
    for n, obj in json_objects(path):
        missing = [k for k in keys if k not in obj]
        if missing:
            raise LineError(path, n, f"missing field(s) {', '.join(missing)}")
        yield n, obj


def read_businesses(path: Path) -> tuple[dict[str, int], dict[int, str], int]:
    ids: dict[str, int] = {}
    titles: dict[int, str] = {}
    unnamed = 0
    for n, obj in _records(path, ("business_id",)):
        bid = obj["business_id"]
        if bid in ids:
            raise LineError(path, n, f"business {bid} listed twice")
        name = (obj.get("name") or "").strip()
        if not name:
            unnamed += 1
            continue
        item = len(ids) + 1
        ids[bid] = item
        city = (obj.get("city") or "").strip()
        titles[item] = f"{name} ({city})" if city else name
    return ids, unique_titles(titles), unnamed


def parse_date(text: str) -> datetime:
    """"YYYY-MM-DD HH:MM:SS" (recent releases) or "YYYY-MM-DD" (the 2018-era challenge rounds), as UTC."""
    fmt = "%Y-%m-%d %H:%M:%S" if len(text) > 10 else "%Y-%m-%d"
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)


def read_reviews(path: Path, businesses: dict[str, int]) -> tuple[pd.DataFrame, int]:
    users: dict[str, int] = {}
    cols = {"user": array("q"), "item": array("q"), "rating": array("d"), "timestamp": array("q")}  # compact
    dropped = 0
    for n, obj in _records(path, ("user_id", "business_id", "stars", "date")):
        item = businesses.get(obj["business_id"])
        if item is None:
            dropped += 1
            continue
        try:
            stars = float(obj["stars"])
            when = parse_date(obj["date"])
        except (TypeError, ValueError) as err:
            raise LineError(path, n, f"bad stars/date: {err}") from None
        if not 1 <= stars <= 5:
            raise LineError(path, n, f"stars {obj['stars']!r} outside 1-5")
        cols["user"].append(users.setdefault(obj["user_id"], len(users) + 1))
        cols["item"].append(item)
        cols["rating"].append(stars)
        cols["timestamp"].append(int(when.timestamp()))
    frame = pd.DataFrame({k: np.frombuffer(v, dtype=np.float64 if k == "rating" else np.int64).copy()
                          for k, v in cols.items()})
    return frame, dropped


def read_yelp(raw: Path) -> RawData:
    folder = find_folder(raw)
    ids, titles, unnamed = read_businesses(folder / BUSINESSES)
    frame, dropped = read_reviews(folder / REVIEWS, ids)
    return RawData(frame, titles, [folder / REVIEWS, folder / BUSINESSES],
                   {"source": f"Yelp Open Dataset: {REVIEWS}, {BUSINESSES}", "timestamp": "review date, UTC seconds",
                    "businesses_without_name": unnamed, "reviews_dropped_no_business": dropped,
                    "title": "Name (City)"})


SPEC = register_raw(RawSpec(
    name="yelp2018", reader=read_yelp, positive_threshold=5.0, min_user_positives=40,
    paper_rule="stars > 4, i.e. 5 stars; users with >= 40 positives",
    expected="PATH/yelp_dataset", paper_table2=(31_668, 38_048, 1_561_406)))
