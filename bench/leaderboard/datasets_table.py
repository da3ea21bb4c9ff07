"""Table 2 (dataset statistics) for the datasets a profile's tables use, next to the paper's numbers.

#Sequence = users after the filters, #Items and #Interactions after the filters (`splits` loaders' `info`), as
`python -m bench data stats` prints them; a dataset whose raw files are not prepared is listed as such.
"""
from __future__ import annotations

import csv
import io

from tabulate import tabulate

from bench.leaderboard.grids import OOD, dataset_for
from bench.leaderboard.paper import PAPER_DIR, load_table2

PAPER_LABEL = {"ML-10M": "Movielens-10M", "Yelp2018": "Yelp2018", "Book-Crossing": "Book-Crossing"}
STATISTICS = (("#Sequence", "n_users"), ("#Items", "n_items"), ("#Interactions", "n_interactions"))


def dataset_rows(profile: str, profile_dataset: str, paper_dir=PAPER_DIR) -> list[list]:
    """[dataset, paper dataset, statistic, ours, paper] rows."""
    from splits import load_dataset
    from splits.prepared import NotPreparedError

    paper = load_table2(paper_dir)  # shipped with the package: a missing file is an error, not an empty column
    rows, seen = [], set()
    for column in OOD:
        name = dataset_for(profile, column, profile_dataset)
        if (name, column.paper_dataset) in seen:
            continue
        seen.add((name, column.paper_dataset))
        try:
            info = load_dataset(name).info
        except NotPreparedError:
            info = {}
        for label, key in STATISTICS:
            rows.append([name, column.paper_dataset, label, info.get(key),
                         paper.get(label, {}).get(PAPER_LABEL[column.paper_dataset])])
    return rows


HEADERS = ["dataset", "paper dataset", "statistic", "ours", "paper"]


def markdown(rows: list[list]) -> str:
    return ("### Table 2: dataset statistics (ours after the filters; paper: Table 2)\n\n"
            + tabulate(rows, headers=HEADERS, tablefmt="github", intfmt=",", missingval="not prepared") + "\n")


def latex(rows: list[list]) -> str:
    return tabulate(rows, headers=HEADERS, tablefmt="latex_booktabs", intfmt=",", missingval="--") + "\n"


def to_csv(rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADERS)
    w.writerows([["" if v is None else v for v in r] for r in rows])
    return buf.getvalue()
