"""Figures 1-3 as PNG from run records (matplotlib, if installed; otherwise each figure is skipped with a message).

* fig1: top-10 recommendations per popularity group (G1 head .. G5 tail) for SFT, DPO and CausalDPO, from
  ``results[part]["recommendation_counts"]`` (the paper's Figure 1, left);
* fig2: NDCG@10 per popularity group (``results[part]["groups"]``, top row) and per time period T1..T5 of the test
  targets (``results[part]["time_groups"]``, middle row), one column per shift, and the 2-D projection of
  CausalDPO's learned representations coloured by its pseudo-environments (``method_stats["projection"]``, from
  `methods.projection`; bottom row, seed 0's record, titled with the environments' adjusted mutual information with
  the popularity groups and time periods): the paper's Figure 2;
* fig3: CausalDPO's NDCG@10 against the training iterations N (`causaldpo-selfplay`), the number of negatives and
  beta (the paper's Figure 3).
Every figure averages over the seeds found; a method or setting without records is left out of the plot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.leaderboard.tables import Table, part_of


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _records(table: Table, label: str, column: int) -> list[dict]:
    return list(table.by_cell.get((label, column), {}).values())


def _by_group(mapping: dict) -> list:
    """Values of a {"G1": .., "G2": ..} (or "T1".."T5") mapping in group order."""
    return [mapping[k] for k in sorted(mapping, key=lambda name: int(name[1:]))]


def _group_series(records: list[dict], pick) -> np.ndarray | None:
    series = [pick(r["results"][part_of(r)]) for r in records]
    series = [s for s in series if s is not None]
    return np.nanmean(np.array(series, dtype=float), axis=0) if series else None


def figure(table: Table, out_dir: Path) -> str:
    """Write `<name>.png`; returns a one-line message saying what was written or why not."""
    plt = _pyplot()
    if plt is None:
        return f"{table.spec.name}: skipped (matplotlib is not installed)"
    if not table.records:
        return f"{table.spec.name}: skipped (no records)"
    if table.spec.name == "fig3":
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), squeeze=False)
        for ax, prefix in zip(axes[0], ("iterations", "negatives", "beta")):
            _sweep(table, prefix, ax)
    else:
        cols = len(table.datasets)
        keys = ("groups", "time_groups") if table.spec.name == "fig2" else ("recommendation_counts",)
        rows = len(keys) + (table.spec.name == "fig2")
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
        for r, key in enumerate(keys):
            for c in range(cols):
                _groups_panel(table, c, axes[r][c], key)
        if table.spec.name == "fig2":
            for c in range(cols):
                _projection_panel(table, c, axes[-1][c])
    fig.suptitle(table.spec.title, fontsize=9)
    fig.tight_layout()
    path = out_dir / f"{table.spec.name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"{table.spec.name}: wrote {path}"


def _groups_panel(table: Table, c: int, ax, key: str) -> None:
    ax.set_title(table.column_label(c), fontsize=8)
    letter = "T" if key == "time_groups" else "G"
    for row in table.rows:
        recs = _records(table, row.label, c)
        if key == "recommendation_counts":
            ys = _group_series(recs, lambda res: _by_group(res[key]))
        else:
            ys = _group_series(recs, lambda res: None if key not in res else [
                100 * g["NDCG@10"] if g["NDCG@10"] is not None else np.nan for g in _by_group(res[key])])
        if ys is None:
            continue
        if key == "recommendation_counts":  # grouped bars, as the paper's Figure 1 (left)
            width = 0.8 / len(table.rows)
            offset = (table.rows.index(row) - (len(table.rows) - 1) / 2) * width
            ax.bar(np.arange(len(ys)) + offset, ys, width, label=row.label)
            ax.set_xticks(np.arange(len(ys)), [f"G{i + 1}" for i in range(len(ys))])
        else:
            ax.plot([f"{letter}{i + 1}" for i in range(len(ys))], ys, marker="o", label=row.label)
    ax.set_ylabel("top-10 recommendations" if key == "recommendation_counts" else "NDCG@10 (%)")
    ax.legend(fontsize=7)


def _sweep(table: Table, prefix: str, ax) -> None:
    xs, ys = [], []
    for row in table.rows:
        value = table.value(row.label, 0, "NDCG@10").mean
        if row.label.startswith(prefix) and value is not None:
            xs.append(float(row.label.split("=")[1]))
            ys.append(value)
    ax.plot(xs, ys, marker="o")
    if prefix != "iterations":
        ax.set_xscale("log", base=2)
    if xs:
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_title(f"{table.column_label(0)}: {prefix}", fontsize=8)
    ax.set_xlabel(prefix)
    ax.set_ylabel("NDCG@10 (%)")


def _projection_panel(table: Table, c: int, ax) -> None:
    """The projection of the first CausalDPO record (lowest seed) of column c, one colour per pseudo-environment."""
    recs = sorted(_records(table, "CausalDPO", c), key=lambda r: r["seed"])
    proj = next((r["method_stats"]["projection"] for r in recs if "projection" in r.get("method_stats", {})), None)
    if proj is None:
        ax.set_title(f"{table.column_label(c)}: no projection in the records", fontsize=8)
        ax.axis("off")
        return
    xy, envs = np.asarray(proj["xy"]), np.asarray(proj["environment"])
    for env in sorted(set(envs.tolist())):
        at = envs == env
        ax.scatter(xy[at, 0], xy[at, 1], s=6, alpha=0.7, color="lightgrey" if env < 0 else None,
                   label="noise" if env < 0 else f"E{env + 1}")
    ami = [f"AMI pop {proj['ami_popularity']:.2f}" if proj.get("ami_popularity") is not None else "",
           f"AMI time {proj['ami_time']:.2f}" if proj.get("ami_time") is not None else ""]
    ax.set_title(f"{table.column_label(c)}\nCausalDPO pseudo-environments ({', '.join(a for a in ami if a)})",
                 fontsize=7)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    if len(set(envs.tolist())) <= 12:
        ax.legend(fontsize=6, markerscale=2)
