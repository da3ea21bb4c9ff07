"""MovieLens-10M from the GroupLens release (``ml-10m.zip``, which extracts to ``ml-10M100K/``).

Files: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, 10,000,054 half-star ratings 0.5-5 by 69,878 users
on 10,677 movies, Unix seconds) and ``movies.dat`` (``MovieID::Title::Genres``, 10,681 movies; titles already end in
"(YEAR)"). ``--raw`` is that folder (or its parent). The paper's Table 2 (71,567 users, 10,681 items, 10,000,054
interactions) gives the release's README figures before any filter: 71,567 is the number of user ids in the
release, of which 69,878 have a rating in ``ratings.dat``.

Filters. The paper calls ratings "greater than 4" positive: on half stars that is ``rating >= 4.5`` (4.5 and 5),
the literal rule, which we keep (unlike ML-100K, whose whole stars would leave only 5s). Users need at least 20
*positives* (the paper says "interactions"; as for ML-100K we count positives, because only positives become
samples); all their ratings are kept, flagged by ``positive``.

A line that does not parse (not 4 ``::``-separated fields, a non-numeric id, rating or timestamp, a rating not on
the 0.5-5 half-star scale) is an error naming ``file:line``: the release has none. Titles are stripped and made
unique with `unique_titles`; ``movies.dat`` is read as UTF-8, falling back to Latin-1 line by line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .datasets import unique_titles
from .prepared import LineError, RawData, RawSpec, register_raw


def find_folder(raw: Path) -> Path:
    for folder in (raw, raw / "ml-10M100K", raw / "ml-10m"):
        if (folder / "ratings.dat").is_file() and (folder / "movies.dat").is_file():
            return folder
    raise FileNotFoundError(f"{raw}: no ratings.dat and movies.dat (expected the extracted ml-10m.zip, "
                            f"folder ml-10M100K/)")


def _check_rating_line(fields: list[str]) -> str | None:
    if len(fields) != 4:
        return f"expected 4 '::'-separated fields UserID::MovieID::Rating::Timestamp, got {len(fields)}"
    try:
        int(fields[0]), int(fields[1]), int(fields[3])
        rating = float(fields[2])
    except ValueError:
        return f"non-numeric field in {'::'.join(fields)!r}"
    if not (0.5 <= rating <= 5 and rating * 2 == int(rating * 2)):
        return f"rating {fields[2]!r} is not a half star in 0.5-5"
    return None


def read_ratings(path: Path) -> pd.DataFrame:
    """Fast path: pandas' C parser on ':' with numeric dtypes (the empty fields between '::' are columns 1, 3, 5,
    read as all-NaN floats; ~0.6 GB for the 10M ratings); on any anomaly the file is rescanned line by line to name
    the first bad line."""
    dtypes = {0: "int64", 1: "float64", 2: "int64", 3: "float64", 4: "float64", 5: "float64", 6: "int64"}
    try:
        frame = pd.read_csv(path, sep=":", header=None, names=list(range(7)), dtype=dtypes, engine="c")
        r = frame[4].to_numpy()
        if (frame[[1, 3, 5]].isna().all().all() and not np.isnan(r).any()
                and ((r >= 0.5) & (r <= 5) & (r * 2 == np.floor(r * 2))).all()):
            return pd.DataFrame({"user": frame[0], "item": frame[2], "rating": frame[4], "timestamp": frame[6]})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):  # ParserError is a ValueError
        pass
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            problem = _check_rating_line(line.rstrip("\r\n").split("::"))
            if problem:
                raise LineError(path, n, problem)
    raise ValueError(f"{path}: could not be parsed")  # pragma: no cover (the scan finds the line)


def read_movies(path: Path) -> dict[int, str]:
    titles: dict[int, str] = {}
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("latin-1")
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("::")
            if len(fields) < 3 or not fields[0].strip().isdigit():
                raise LineError(path, n, f"expected MovieID::Title::Genres, got {line[:80]!r}")
            item = int(fields[0])
            if item in titles:
                raise LineError(path, n, f"movie {item} listed twice")
            titles[item] = "::".join(fields[1:-1]).strip()
    return unique_titles(titles)


def read_ml10m(raw: Path) -> RawData:
    folder = find_folder(raw)
    ratings = read_ratings(folder / "ratings.dat")
    titles = read_movies(folder / "movies.dat")
    return RawData(ratings, titles, [folder / "ratings.dat", folder / "movies.dat"],
                   {"source": "GroupLens MovieLens 10M (ml-10m.zip): ratings.dat, movies.dat",
                    "timestamp": "Unix seconds (ratings.dat)"})


SPEC = register_raw(RawSpec(
    name="ml-10m", reader=read_ml10m, positive_threshold=4.5, min_user_positives=20,
    paper_rule="rating > 4 on half stars, i.e. >= 4.5; users with >= 20 positives",
    expected="PATH/ml-10M100K", paper_table2=(71_567, 10_681, 10_000_054)))
