"""`python -m bench data {prepare,stats,download}`: raw files -> cached canonical form, Table 2, official archives.

* ``data prepare --dataset NAME --raw PATH [--data-dir DIR]``: parse the published raw files once into
  ``DIR/NAME/`` (default ``$BENCH_DATA_DIR`` or ``runs/data``), see `splits.prepared`; with ``--format FORMAT
  --columns ... [--titles FILE] [--positive-threshold X] [--min-user-positives N]``, a user's own file under a new
  NAME, see `splits.custom` (the custom options without ``--format`` are an error); the formats are those of
  `splits.formats.FORMATS`, a module's own included (``--include MODULE``, `bench.plugins`);
* ``data stats [--data-dir DIR]``: the paper's Table 2 (users/#sequence, items, interactions) before and after the
  filters, plus positives, for ml-100k, every prepared dataset and every custom dataset in the data dir;
* ``data download NAME [--dest DIR] [--url URL] [--sha256 HEX]``: fetch, verify and extract, see `splits.download`.
"""
from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub) -> list[argparse.ArgumentParser]:
    """Add ``data`` and its subcommands to `sub`; returns the subcommands' parsers."""
    from splits.formats import FORMATS
    from splits.prepared import RAW_DATASETS

    d = sub.add_parser("data", help="prepare raw datasets, print their statistics (Table 2), download archives")
    dsub = d.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("prepare", help="convert a dataset's raw files into the cached canonical form")
    p.add_argument("--dataset", required=True,
                   help=f"{', '.join(RAW_DATASETS.names())}, or a new name for your own file (with --format)")
    p.add_argument("--raw", required=True, help="folder holding the dataset's published raw files (your own "
                                                "dataset: the ratings file)")
    formats = "; ".join(name + (f" ({FORMATS.get(name).help})" if FORMATS.get(name).help else "")
                        for name in FORMATS.names())
    p.add_argument("--format", help=f"your own dataset: the files' format: {formats}")
    p.add_argument("--columns", help="your own dataset: user=COL,item=COL,timestamp=COL[,rating=COL][,title=COL]")
    p.add_argument("--titles", help="your own dataset: a file of the same format with the item and title columns")
    p.add_argument("--positive-threshold", type=float,
                   help="your own dataset: rating >= X is positive (required with rating=; without: 1)")
    p.add_argument("--min-user-positives", type=int, help="your own dataset: keep users with >= N positives "
                                                          "(default 20)")
    p.add_argument("--data-dir", help="where prepared datasets live (default: $BENCH_DATA_DIR or runs/data)")
    s = dsub.add_parser("stats", help="Table 2: users, items, interactions and positives of each dataset")
    s.add_argument("--data-dir", help="where prepared datasets live (default: $BENCH_DATA_DIR or runs/data)")
    g = dsub.add_parser("download", help="download, verify (sha256) and extract a dataset's official archive")
    g.add_argument("name", help="ml-10m or book-crossing (yelp2018 must be fetched by hand)")
    g.add_argument("--dest", default="runs/raw", help="folder to extract into, as DEST/NAME (default runs/raw)")
    g.add_argument("--url", help="another URL for the archive (a mirror)")
    g.add_argument("--sha256", help="expected sha256 of the archive")
    g.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    return [p, s, g]


def main(args: argparse.Namespace) -> int:
    try:
        if args.data_command == "prepare":
            return prepare(args)
        if args.data_command == "stats":
            return stats(args)
        return download(args)
    except OSError as err:  # FileNotFoundError, FileExistsError, URLError, ...
        print(f"error: {err}", file=sys.stderr)
        return 2


def prepare(args) -> int:
    from splits.custom import prepare_custom
    from splits.prepared import RAW_DATASETS
    from splits.prepared import prepare as run_prepare

    start = time.perf_counter()
    own = {"--columns": args.columns, "--titles": args.titles, "--positive-threshold": args.positive_threshold,
           "--min-user-positives": args.min_user_positives}
    if args.format is not None:
        folder = prepare_custom(args.dataset, args.raw, args.format, args.columns, args.titles,
                                args.positive_threshold, args.min_user_positives, args.data_dir)
    elif args.dataset in RAW_DATASETS:
        given = [flag for flag, value in own.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: options of your own datasets (with --format), not of "
                             f"{args.dataset}, whose published format is fixed")
        folder = run_prepare(args.dataset, args.raw, args.data_dir)
    else:
        from splits.formats import FORMATS
        from splits.registry import UnknownNameError
        try:
            RAW_DATASETS.get(args.dataset)
        except UnknownNameError as err:  # keep the "did you mean", say how to prepare one's own file
            generic = "|".join(name for name in FORMATS.names() if FORMATS.get(name).preset is None)
            raise ValueError(f"{err} For your own file, add --format {generic} --columns "
                             f"user=COL,item=COL,timestamp=COL,...") from None
    import json
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    print(f"prepared {args.dataset} in {folder} ({time.perf_counter() - start:.1f}s): {counts['users']} users, "
          f"{counts['items']} items, {counts['interactions']} interactions; fingerprint {manifest['fingerprint'][:12]}")
    return 0


def stats(args) -> int:
    from tabulate import tabulate

    from splits import load_dataset
    from splits.custom import custom_names
    from splits.prepared import RAW_DATASETS, NotPreparedError

    rows = []
    names = ["ml-100k", *RAW_DATASETS.names(), *custom_names(args.data_dir)]
    for name in names:
        options = {} if name == "ml-100k" else {"data_dir": args.data_dir}
        paper = RAW_DATASETS.get(name).paper_table2 if name in RAW_DATASETS else (None, None, None)
        try:
            info = load_dataset(name, **options).info
        except NotPreparedError:
            rows.append([name, "not prepared", *[None] * 8, *paper])
            continue
        rows.append([name, info["positive_rule"], info["raw_users"], info["raw_items"], info["raw_interactions"],
                     info["n_users"], info["n_items"], info["n_interactions"], info["n_positives"],
                     info["n_positive_items"], *paper])
    headers = ["dataset", "positive", "raw users", "raw items", "raw inter.", "#sequence (users)", "items",
               "interactions", "positives", "pos. items", "paper users", "paper items", "paper inter."]
    print(tabulate(rows, headers=headers, intfmt=",", missingval="-"))
    print("raw: the parsed files before the filters; the rest: after the positive rule and the per-user filter; "
          "paper: CausalDPO Table 2 (raw figures; Yelp2018's are those of the id-only graph-recommender release).")
    return 0


def download(args) -> int:
    from splits.download import download as run_download

    run_download(args.name, args.dest, url=args.url, sha256=args.sha256, timeout=args.timeout,
                 log=lambda m: print(m, flush=True))
    return 0
