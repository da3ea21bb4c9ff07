"""Time and peak memory of the exposure split at scale: `python -m bench.perf.exposure_scale [--users N] [--items M]
[--ratings R] [--block-users B]`.

Builds a synthetic ratings table of the given size (defaults: ML-10M's 69,878 users, 10,677 items, 10,000,054
ratings; items drawn with probability ~ 1/rank^0.8, ratings 0.5-5 in half stars, uniform timestamps), turns it into a
dataset with ML-10M's filters (rating >= 4.5, users with >= 20 positives), then builds the exposure split, whose MF
imputation is the memory-hungry stage (it imputes `--block-users` users at a time). Prints each stage's seconds and
the process's peak RSS after it (measured, not asserted).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from bench.perf.paper_standins import ML10M
from splits.datasets import make_dataset
from splits.shifts import build_split


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_ratings(users: int, items: int, ratings: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    return pd.DataFrame({
        "user": rng.integers(1, users + 1, ratings),
        "item": rng.choice(np.arange(1, items + 1), ratings, p=popularity / popularity.sum()),
        "rating": rng.choice(np.array(ML10M.levels), ratings, p=ML10M.shares),
        "timestamp": rng.integers(789_652_009, 1_231_131_736, ratings),
    })


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.exposure_scale", description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=69_878)
    p.add_argument("--items", type=int, default=10_677)
    p.add_argument("--ratings", type=int, default=10_000_054)
    p.add_argument("--block-users", type=int, default=2048, help="users imputed at a time")
    p.add_argument("--min-user-positives", type=int, default=20)
    args = p.parse_args(argv)
    start = time.perf_counter()
    raw = synthetic_ratings(args.users, args.items, args.ratings)
    dataset = make_dataset("synthetic", raw, {i: f"Item {i}" for i in range(1, args.items + 1)}, 4.5,
                           args.min_user_positives)
    del raw
    print(f"dataset: {len(dataset.interactions):,} interactions, {dataset.info['n_users']:,} users "
          f"({time.perf_counter() - start:.1f} s), peak RSS {peak_rss_gb():.2f} GB", flush=True)
    start = time.perf_counter()
    split = build_split(dataset, "exposure", 0, block_users=args.block_users)
    dense = dataset.info["n_users"] * dataset.info["n_items"] * 9 / 2**30  # float64 scores + bool seen mask
    print(f"exposure split: {len(split['ood_test']):,} OOD targets, blocks of {args.block_users} users "
          f"({time.perf_counter() - start:.1f} s), peak RSS {peak_rss_gb():.2f} GB "
          f"(a dense users x items imputation would hold {dense:.2f} GB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
