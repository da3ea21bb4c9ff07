"""A table's values from run records: per (row, column group, metric) the mean and std over seeds (in % for
ranking metrics, seconds for Tables 6-7), the seeds found, a paired p-value and the minimal detectable difference
(80% power, alpha 0.05) against DPO on the same cell, and best /
second-best marks per column (higher is better; among the paper's rows; ties share a mark; none for seconds).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from bench.leaderboard.grids import TABLES, Column, Row, TableSpec, row_cell
from bench.leaderboard.records import RecordIndex, cell_identity
from bench.leaderboard.significance import paired_mde, paired_p

ALPHA = 0.05


@dataclass
class Value:
    mean: float | None = None
    std: float | None = None
    seeds: list[int] = field(default_factory=list)
    p_vs_dpo: float | None = None
    mde_vs_dpo: float | None = None  # minimal detectable difference against DPO, in the value's units
    mark: str | None = None          # "best" | "second"


@dataclass
class Table:
    spec: TableSpec
    profile: str
    datasets: list[str]              # our dataset of each column group
    rows: list[Row]
    values: dict[tuple[str, int, str], Value]   # (row label, column index, metric) -> Value
    records: list[dict] = field(default_factory=list)
    by_cell: dict[tuple[str, int], dict[int, dict]] = field(default_factory=dict)  # (row, column) -> seed -> record

    def column_label(self, i: int) -> str:
        col = self.spec.columns[i]
        ours = f"{self.datasets[i]}/{col.shift}"
        return ours if self.profile == "paper" else f"{ours} (paper: {col.paper_dataset})"

    def value(self, row: str, col: int, metric: str) -> Value:
        return self.values.get((row, col, metric), Value())

    @property
    def found(self) -> int:
        return sum(1 for v in self.values.values() if v.mean is not None)

    def protocol(self, row: str) -> str:
        """The ranking protocol(s) the row's records name ("" when none was found)."""
        return self._protocols.get(row, "")

    @functools.cached_property
    def _protocols(self) -> dict[str, str]:
        found: dict[str, set[str]] = {}
        for (label, _), by_seed in self.by_cell.items():
            found.setdefault(label, set()).update(str(r.get("protocol")) for r in by_seed.values())
        return {label: ", ".join(sorted(names)) for label, names in found.items() if names}

    def identical_rows(self) -> list[tuple[str, str, int]]:
        """(row, earlier row, column) where both rows' records give the same target ranks for every seed: rows
        that are copies of each other (e.g. a method that trains nothing beyond the SFT model)."""
        return self._identical_rows

    @functools.cached_property
    def _identical_rows(self) -> list[tuple[str, str, int]]:
        out = []
        for c in range(len(self.spec.columns)):
            seen: dict[tuple, str] = {}
            for row in self.rows:
                by_seed = self.by_cell.get((row.label, c), {})
                ranks = tuple((s, tuple(r["results"][part_of(r)].get("target_ranks") or ()))
                              for s, r in sorted(by_seed.items()))
                if not by_seed or any(not rk for _, rk in ranks):
                    continue
                if ranks in seen:
                    out.append((row.label, seen[ranks], c))
                else:
                    seen[ranks] = row.label
        return out


def part_of(record: dict) -> str:
    return next(iter(record["results"]))


def record_value(record: dict, metric: str, kind: str) -> float | None:
    if kind == "seconds":
        value = record.get("seconds_per_epoch")
        return float(value) if value is not None else None
    value = record["results"][part_of(record)]["metrics"].get(metric)
    return None if value is None else 100.0 * float(value)


def build_table(name: str, profile: str, index: RecordIndex, seeds: list[int], profile_dataset: str,
                profile_backbone: str, extra_sets: list[str] = ()) -> Table:
    spec = TABLES[name]
    datasets = [row_cell(Row("", ""), col, profile, 0, profile_dataset, profile_backbone).dataset
                for col in spec.columns]
    table = Table(spec, profile, datasets, list(spec.rows), {})
    found = table.by_cell
    for row in spec.rows:
        for c, col in enumerate(spec.columns):
            by_seed = {}
            for seed in seeds if row.applies(col) else ():
                cell = row_cell(row, col, profile, seed, profile_dataset, profile_backbone)
                record = index.get(cell_identity(profile, cell, extra_sets))
                if record is not None:
                    by_seed[seed] = record
                    table.records.append(record)
            found[(row.label, c)] = by_seed
    # the DPO row of the table itself: the one with the fewest overrides (a grounding table's DPO row carries the
    # grounding overrides every row of that table has)
    dpo_row = min((r for r in spec.rows if r.method == "dpo"), key=lambda r: len(r.overrides), default=None)
    for c in range(len(spec.columns)):
        dpo_found = found[(dpo_row.label, c)] if dpo_row else {}
        for metric in spec.metrics:
            for row in spec.rows:
                reference = dpo_found if row.method != "dpo" else {}
                table.values[(row.label, c, metric)] = _value(found[(row.label, c)], metric, spec.kind, reference)
            if spec.kind == "metrics":
                _mark([table.values[(r.label, c, metric)] for r in spec.rows if not r.extra])
    return table


def _value(by_seed: dict[int, dict], metric: str, kind: str, dpo_by_seed) -> Value:
    per_seed = {s: record_value(r, metric, kind) for s, r in by_seed.items()}
    per_seed = {s: v for s, v in per_seed.items() if v is not None}
    if not per_seed:
        return Value()
    xs = np.array(list(per_seed.values()))
    value = Value(float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else None, sorted(per_seed))
    if dpo_by_seed and kind == "metrics":
        theirs = {s: record_value(r, metric, kind) for s, r in dpo_by_seed.items()}
        part = part_of(next(iter(by_seed.values())))
        seed_values = (per_seed, {s: v for s, v in theirs.items() if v is not None})
        value.p_vs_dpo = paired_p(by_seed, dpo_by_seed, part, metric, seed_values)
        value.mde_vs_dpo = paired_mde(by_seed, dpo_by_seed, part, metric, seed_values, scale=100.0)  # in %
    return value


def _mark(values: list[Value]) -> None:
    means = sorted({round(v.mean, 10) for v in values if v.mean is not None}, reverse=True)
    for v in values:
        if v.mean is None:
            continue
        if round(v.mean, 10) == means[0]:
            v.mark = "best"
        elif len(means) > 1 and round(v.mean, 10) == means[1]:
            v.mark = "second"


def columns_of(spec: TableSpec) -> list[tuple[int, Column, str]]:
    return [(c, col, metric) for c, col in enumerate(spec.columns) for metric in spec.metrics]
