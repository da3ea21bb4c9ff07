"""Stand-ins for the paper's three datasets, written in their published raw formats at their published sizes, so that
the paper grid can be counted and priced (`python -m bench plan --profile paper`) before the real files are
downloaded: `python -m bench.perf.paper_standins --out DIR [--scale S] [--seed N]`.

Writes ``DIR/ml-10m/{ratings.dat,movies.dat}``, ``DIR/yelp2018/yelp_academic_dataset_{review,business}.json`` and
``DIR/book-crossing/BX-{Book-Ratings,Books}.csv``, each read by the suite's real loader (`bench data prepare`). The
totals are those of the releases (ML-10M: 69,878 users with a rating, 10,677 rated movies, 10,000,054 ratings;
Yelp2018: the paper's Table 2, 31,668 users, 38,048 items, 1,561,406 reviews; Book-Crossing: 105,283 users with a
rating, 271,379 books, 1,149,780 ratings, 62% of them implicit 0s), times ``--scale``. What is *not* the data's:
users' activity is log-normal (sigma below) above a floor (ML-10M's 20 ratings, Yelp2018's 10-core, 1 for
Book-Crossing), items are drawn with probability ~ 1/rank^0.8, rating levels with the release's rough shares,
times uniform over the release's span, titles made of random syllables with the real titles' typical lengths. So
the filtered sizes (users with enough positives, training samples, test samples) are of the right order, not the
real ones: a plan on stand-ins says so, and is redone on the real files once they are prepared.

``--scale`` shrinks users, items and ratings together; `write_standins(..., full_catalogue=True)` shrinks only the
users and ratings and keeps the release's items and their popularity law (the planner's small stand-ins: each
user's activity and item draws are then those of the full-size stand-in, only fewer users).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Shape:
    users: int
    items: int
    ratings: int
    floor: int                  # ratings per user at least
    sigma: float                # log-normal spread of users' activity above the floor
    levels: tuple[float, ...]   # rating values
    shares: tuple[float, ...]   # their probabilities
    title_words: int            # words per title, typical
    start: int                  # timestamps (Unix seconds) or publication years
    end: int


ML10M = Shape(69_878, 10_677, 10_000_054, 20, 1.0, tuple(np.arange(1, 11) / 2),
              (.01, .02, .02, .05, .08, .15, .2, .22, .15, .1), 3, 789_652_009, 1_231_131_736)
YELP = Shape(31_668, 38_048, 1_561_406, 10, 1.0, (1, 2, 3, 4, 5), (.10, .08, .11, .25, .46), 2,
             1_104_537_600, 1_542_240_000)
BX = Shape(105_283, 271_379, 1_149_780, 1, 1.6, tuple(range(11)),
           (.623, .001, .002, .005, .007, .042, .03, .066, .09, .057, .077), 5, 1950, 2004)
SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "tor", "vel", "an", "dre", "os", "li", "mar", "ne", "quin", "ba", "zu")


POPULARITY_EXPONENT = 0.8


def popularity(items: int) -> np.ndarray:
    """The stand-ins' item law: P(item of rank r) ~ 1/r^0.8, r = 1..items."""
    weights = 1.0 / np.arange(1, items + 1) ** POPULARITY_EXPONENT
    return weights / weights.sum()


def ratings(shape: Shape, scale: float, rng: np.random.Generator, item_scale: float | None = None):
    """(user, item, rating, time) arrays: users' counts log-normal above the floor, items ~ 1/rank^0.8; users and
    ratings times `scale`, items times `item_scale` (default: `scale`)."""
    users, total = (max(1, round(x * scale)) for x in (shape.users, shape.ratings))
    items = max(1, round(shape.items * (scale if item_scale is None else item_scale)))
    weights = rng.lognormal(0.0, shape.sigma, users)
    extra = max(0, total - users * shape.floor)
    counts = shape.floor + rng.multinomial(extra, weights / weights.sum())
    user = np.repeat(np.arange(1, users + 1), counts)
    item = rng.choice(np.arange(1, items + 1), len(user), p=popularity(items))
    rating = rng.choice(np.array(shape.levels, dtype=float), len(user), p=shape.shares)
    when = rng.integers(shape.start, shape.end, len(user))
    order = rng.permutation(len(user))
    return user[order], item[order], rating[order], when[order], items


def titles(n: int, words: int, rng: np.random.Generator) -> list[str]:
    lengths = np.clip(rng.poisson(words, n), 1, None)
    parts = rng.integers(0, len(SYLLABLES), (n, int(lengths.max()), 2))
    return [" ".join((SYLLABLES[a] + SYLLABLES[b]).capitalize() for a, b in parts[i, :lengths[i]])
            for i in range(n)]


def write_ml10m(folder: Path, scale: float, rng: np.random.Generator,
                item_scale: float | None = None) -> None:
    user, item, rating, when, items = ratings(ML10M, scale, rng, item_scale)
    with open(folder / "ratings.dat", "w") as f:
        f.writelines(f"{u}::{i}::{r:g}::{t}\n" for u, i, r, t in zip(user.tolist(), item.tolist(), rating.tolist(),
                                                                     when.tolist()))
    years = rng.integers(1915, 2009, items)
    with open(folder / "movies.dat", "w") as f:
        f.writelines(f"{i + 1}::{name} ({years[i]})::Drama\n" for i, name in enumerate(titles(items, ML10M.title_words, rng)))


def write_yelp(folder: Path, scale: float, rng: np.random.Generator,
               item_scale: float | None = None) -> None:
    user, item, rating, when, items = ratings(YELP, scale, rng, item_scale)
    dates = np.datetime_as_string(when.astype("datetime64[s]"), unit="s")
    with open(folder / "yelp_academic_dataset_review.json", "w") as f:
        f.writelines(json.dumps({"user_id": f"u{u}", "business_id": f"b{i}", "stars": r,
                                 "date": d.replace("T", " ")}) + "\n"
                     for u, i, r, d in zip(user.tolist(), item.tolist(), rating.tolist(), dates.tolist()))
    cities = titles(200, 1, rng)
    with open(folder / "yelp_academic_dataset_business.json", "w") as f:
        f.writelines(json.dumps({"business_id": f"b{i + 1}", "name": name, "city": cities[i % len(cities)]}) + "\n"
                     for i, name in enumerate(titles(items, YELP.title_words, rng)))


def write_bookcrossing(folder: Path, scale: float, rng: np.random.Generator,
                       item_scale: float | None = None) -> None:
    user, item, rating, _, items = ratings(BX, scale, rng, item_scale)
    with open(folder / "BX-Book-Ratings.csv", "w", encoding="cp1252") as f:
        f.write('"User-ID";"ISBN";"Book-Rating"\n')
        f.writelines(f'"{u}";"{i:010d}";"{int(r)}"\n' for u, i, r in zip(user.tolist(), item.tolist(),
                                                                         rating.tolist()))
    years = rng.integers(BX.start, BX.end + 1, items)
    years[rng.random(items) < 0.02] = 0  # the dump's unknown years
    with open(folder / "BX-Books.csv", "w", encoding="cp1252") as f:
        f.write('"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";'
                '"Image-URL-L"\n')
        f.writelines(f'"{i + 1:010d}";"{name}";"A. Author";"{years[i]}";"Press";"s";"m";"l"\n'
                     for i, name in enumerate(titles(items, BX.title_words, rng)))


WRITERS = {"ml-10m": write_ml10m, "yelp2018": write_yelp, "book-crossing": write_bookcrossing}
SHAPES = {"ml-10m": ML10M, "yelp2018": YELP, "book-crossing": BX}


def distinct_items(name: str, draws: float) -> float:
    """Expected distinct items among `draws` ratings drawn by the stand-in's popularity law over the release's
    items: sum over items of 1 - (1 - p_i)^draws (the catalogue a filtered stand-in of that many ratings keeps)."""
    p = popularity(SHAPES[name].items)
    return float(np.sum(-np.expm1(draws * np.log1p(-p))))


def write_standins(out: Path, scale: float = 1.0, seed: int = 0, names=tuple(WRITERS),
                   full_catalogue: bool = False) -> dict[str, Path]:
    """Write the stand-ins' raw files under ``out/<dataset>/``; returns the folders (the ``--raw`` of each).
    `full_catalogue`: only users and ratings are scaled, the items are the release's."""
    folders = {}
    for name in names:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        WRITERS[name](folder, scale, np.random.default_rng([seed, tuple(WRITERS).index(name)]),
                      1.0 if full_catalogue else None)
        folders[name] = folder
    return folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.paper_standins", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for the raw files (one sub-folder per dataset)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the published sizes (default 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name, folder in write_standins(Path(args.out), args.scale, args.seed).items():
        print(f"{name}: {folder} (then: python -m bench data prepare --dataset {name} --raw {folder})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
