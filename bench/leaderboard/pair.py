"""`python -m bench pair A.json B.json`: one method against another on the same test samples, per scored part: the
two metrics, their difference, the paired permutation p-value and the minimal detectable difference
(`bench.leaderboard.significance`), and for hit rates the discordant samples (A hits where B misses, and back).

    python -m bench pair runs/results/ml-100k/temporal/sft-*.json runs/results/ml-100k/temporal/mostpop-*.json

Both records must come from the same split (fingerprint) and score the same samples (the same parts and sample
counts), as the leaderboard's tests require; records kept gzip-compressed (`.json.gz`) read as well.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from bench.leaderboard.significance import mde, per_sample, permutation_test

SAMPLE_SETTINGS = ("history_len", "max_eval_samples", "split_seed")


def add_parser(sub) -> None:
    p = sub.add_parser("pair", help="paired test of two records on the same test samples (p-value and MDE)")
    p.add_argument("records", nargs=2, metavar="RECORD", help="two record files (.json or .json.gz)")
    p.add_argument("--metric", default="HR@10", help="HR@K or NDCG@K (default HR@10)")


def read(path: str) -> dict:
    file = Path(path)
    try:
        raw = file.read_bytes()
        return json.loads(gzip.decompress(raw) if file.suffix == ".gz" else raw)
    except FileNotFoundError:
        raise OSError(f"{path}: no such record") from None
    except (EOFError, OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable record ({err})") from None


def compare(a: dict, b: dict, metric: str, names=("A", "B")) -> list[dict]:
    """One row per part both records scored (see module docstring); ValueError when they are not paired."""
    if a.get("split_fingerprint") != b.get("split_fingerprint"):
        raise ValueError(f"{names[0]} and {names[1]} come from different splits "
                         f"({a.get('split_fingerprint')} vs {b.get('split_fingerprint')}): not paired")
    for key in SAMPLE_SETTINGS:  # what picks the test samples besides the split
        va, vb = (r.get("config", {}).get("data", {}).get(key) for r in (a, b))
        if va != vb:
            raise ValueError(f"{names[0]} has data.{key}={va}, {names[1]} {vb}: not the same test samples")
    rows = []
    for part in [p for p in a.get("results", {}) if p in b.get("results", {})]:
        x, y = per_sample(a, part, metric), per_sample(b, part, metric)
        if x is None or y is None:
            raise ValueError(f"{part}: a record without per-sample target ranks ({metric} needs them)")
        if len(x) != len(y):
            raise ValueError(f"{part}: {names[0]} scored {len(x)} samples, {names[1]} {len(y)}: not the same samples")
        d = x - y
        row = {"part": part, "n": len(d), "a": x.mean(), "b": y.mean(), "diff": d.mean(),
               "p": permutation_test(x, y), "mde": mde(d)}
        if metric.startswith("HR@"):
            row["a_only"], row["b_only"] = int((d > 0).sum()), int((d < 0).sum())
        rows.append(row)
    if not rows:
        raise ValueError(f"{names[0]} and {names[1]} share no scored part")
    return rows


def pair_command(args, log) -> int:
    a, b = (read(path) for path in args.records)
    names = [f"{r.get('method')} ({Path(p).name})" for r, p in zip((a, b), args.records)]
    rows = compare(a, b, args.metric, names)
    print(f"A = {names[0]}\nB = {names[1]}\n{args.metric} (%), paired over the same samples:")
    print(f"{'part':<10} {'n':>6} {'A':>7} {'B':>7} {'A-B':>7} {'p':>8} {'MDE':>6}  discordant A/B")
    for r in rows:
        disc = f"{r['a_only']}/{r['b_only']}" if "a_only" in r else "-"
        print(f"{r['part']:<10} {r['n']:>6} {100 * r['a']:>7.2f} {100 * r['b']:>7.2f} {100 * r['diff']:>+7.2f} "
              f"{r['p']:>8.4f} {100 * (r['mde'] or np.nan):>6.2f}  {disc}")
    return 0
