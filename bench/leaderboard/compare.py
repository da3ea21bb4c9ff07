"""Regenerated tables next to the published ones, column by column: for each (dataset/shift, metric) column,
each row's paper value, our value, the difference, and Kendall's tau between the two orderings of the methods
both have (does the ranking of methods reproduce, even where absolute numbers cannot on another dataset/model?).
Tables 6-7 also show each time relative to DPO's (the paper: CausalDPO +19.7% over DPO).
"""
from __future__ import annotations

from tabulate import tabulate

from bench.leaderboard import datasets_table
from bench.leaderboard.paper import PAPER_DIR, load_paper
from bench.leaderboard.render import number
from bench.leaderboard.tables import Table, columns_of


def _tau(pairs: list[tuple[float, float]]) -> str:
    if len(pairs) < 3:
        return "n/a (fewer than 3 methods with both)"
    from scipy.stats import kendalltau

    tau = kendalltau([p for p, _ in pairs], [o for _, o in pairs]).statistic
    return f"{tau:+.2f} over {len(pairs)} methods"


def compare_table(table: Table, paper_dir=PAPER_DIR) -> str:
    spec = table.spec
    paper = load_paper(spec.paper_csv, paper_dir) if spec.paper_csv else None
    lines = [f"=== {spec.title} ({table.found} of {len(table.values)} values regenerated, profile {table.profile})"]
    if paper is None:
        return "\n".join(lines + ["(no published numbers)"]) + "\n"
    dpo_paper = load_paper("table6.csv", paper_dir) if spec.kind == "seconds" else None
    for c, col, metric in columns_of(spec):
        rows, pairs = [], []
        dpo_ours = next((table.value(r.label, c, metric).mean for r in table.rows if r.method == "dpo"), None)
        dpo_theirs = dpo_paper.get(col.paper_dataset, col.shift, metric, "DPO") if dpo_paper else None
        for row in table.rows:
            theirs = None if row.extra else paper.get(col.paper_dataset, col.shift, metric, row.label)
            value = table.value(row.label, c, metric)
            ours = value.mean
            diff = None if theirs is None or ours is None else ours - theirs
            digits = 1 if spec.kind == "seconds" else 2
            line = [row.label + (" (extra)" if row.extra else ""), row.method,
                    None if theirs is None else f"{theirs:.{digits}f}", number(value, spec.kind),
                    None if diff is None else f"{diff:+.{digits}f}"]
            if spec.kind == "seconds":
                line += [_ratio(ours, dpo_ours), _ratio(theirs, dpo_theirs)]
            rows.append(line)
            if theirs is not None and ours is not None:
                pairs.append((theirs, ours))
        headers = ["row", "method", "paper", "ours", "ours - paper"]
        if spec.kind == "seconds":
            headers += ["ours vs DPO", "paper vs DPO"]
        lines.append(f"--- {table.column_label(c)} | {metric} | paper: {col.paper_dataset} | "
                     f"Kendall tau (paper vs ours): {_tau(pairs)}")
        lines.append(tabulate(rows, headers=headers, missingval="–", disable_numparse=True))
    return "\n".join(lines) + "\n"


def _ratio(x: float | None, dpo: float | None) -> str | None:
    if x is None or not dpo:
        return None
    return f"{100 * (x / dpo - 1):+.1f}%"


def compare_datasets(rows: list[list]) -> str:
    table = [[*r[:3], r[3], r[4], None if r[3] is None or not r[4] else f"{r[3] / r[4]:.3f}"] for r in rows]
    return ("=== Table 2: dataset statistics\n"
            + tabulate(table, headers=[*datasets_table.HEADERS, "ours / paper"], intfmt=",",
                       missingval="not prepared") + "\n")
