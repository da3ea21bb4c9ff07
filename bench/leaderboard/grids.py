"""The paper's tables and figures as grids of runs: for each table, its column groups (a dataset and a shift), its
rows (a paper label, a method, a backbone role, extra overrides), and how a profile maps them onto cells.

A cell is one record: (dataset, shift, method, seed, overrides). On the `paper` profile every column uses the
paper's dataset (Appendix B.1: Yelp2018 popularity/mixed, ML-10M temporal, Book-Crossing exposure); on every other
profile (`tiny`, `smoke`, ...) every column uses the profile's own dataset (the embedded ml-100k). Backbone roles
(`llama`, `qwen2`, `qwen3`, Table 9) map to a `backbone.name` per profile; a role equal to the profile's backbone
adds no override, so the same run is never listed twice.

Rows marked `extra` are not in the published table: they are the references the significance test and the
figures need (DPO, SFT) and the exposure column's ceiling (the imputation MF), rendered below the paper's rows. A row
may be defined for some shifts only (`Row.shifts`); its other cells are left empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field

METRICS4 = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")

PAPER_DATASETS = {"Yelp2018": "yelp2018", "ML-10M": "ml-10m", "Book-Crossing": "book-crossing"}
# The training seeds of each profile's committed leaderboard (`leaderboards/<profile>/`): what `leaderboard`,
# `compare` and `plan` use without --seeds, so the plain render-only command reproduces the committed tables.
LEADERBOARD_SEEDS = {"tiny": (0, 1, 2)}
DEFAULT_SEEDS = (0,)
# The part of the paper's grid a profile's committed leaderboard covers, when not all of it: its tables, the shifts
# (columns) and the methods (rows; those outside the paper's table are added as extra rows). `leaderboard`,
# `compare` and `plan` use it unless --tables, --shifts or --methods say otherwise.
LEADERBOARD_SCOPE = {
    "small": {"tables": "1,fig2", "shifts": "temporal,popularity",
              "methods": "sft,dpo,causaldpo,simpo,sdpo,sprec,mostpop,random,sasrec"},
}

BACKBONES = {
    "paper": {"llama": "meta-llama/Llama-3.1-8B", "qwen2": "Qwen/Qwen2.5-7B-Instruct", "qwen3": "Qwen/Qwen3-8B"},
    "default": {"llama": "tiny-llama", "qwen2": "tiny-qwen2", "qwen3": "tiny-qwen3"},
}


def default_seeds(profile: str) -> list[int]:
    """The seeds of `profile`'s committed leaderboard, else seed 0."""
    return list(LEADERBOARD_SEEDS.get(profile, DEFAULT_SEEDS))


@dataclass(frozen=True)
class Column:
    """One column group of a table: the paper's dataset label and the shift it was built with."""
    paper_dataset: str
    shift: str


@dataclass(frozen=True)
class Row:
    label: str                       # the paper's row label (or ours, for extra rows)
    method: str                      # a registered method name (`python -m bench ls`)
    backbone: str | None = None      # a backbone role (BACKBONES); None = the profile's backbone
    overrides: tuple[str, ...] = ()  # extra `--set` assignments (Figure 3's sweeps)
    extra: bool = False              # not in the published table
    shifts: tuple[str, ...] = ()     # the only shifts the row is defined for (empty: all)

    def applies(self, column: "Column") -> bool:
        return not self.shifts or column.shift in self.shifts


@dataclass(frozen=True)
class TableSpec:
    name: str                        # "table1", "fig2", ...
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    metrics: tuple[str, ...] = METRICS4
    kind: str = "metrics"            # metrics | seconds | stats | figure
    paper_csv: str | None = None     # file in leaderboards/paper/


@dataclass(frozen=True, order=True)
class GridCell:
    """One run record: a method on (dataset, shift) with a training seed and `--set` overrides."""
    dataset: str
    shift: str
    method: str
    seed: int
    overrides: tuple[str, ...] = field(default=())

    @property
    def group(self) -> tuple:
        """Cells of one group share everything but the method: one `pipeline.run` call, one SFT model."""
        return (self.dataset, self.shift, self.seed, self.overrides)


def _rows(pairs, extra=False, backbone=None) -> tuple[Row, ...]:
    return tuple(Row(label, method, backbone=backbone, extra=extra) for label, method in pairs)


# the grounding variants of Tables 1 and 5: every row ranked by unconstrained generation grounded with MiniLM (the
# untrained tiny backbone's hidden states make grounding neighbours nearly random); BIGRec keeps its own 4 beams,
# D3 grounds its decoded top-1; SASRec ranks by its own scores under any protocol (its cell is Table 1's)
GROUNDING = ("ranking.protocol=grounding", "ranking.embedder=minilm")
GROUNDING_ROW = {"bigrec": ("bigrec.embedder=minilm",), "d3": ("d3.protocol=run",)}
NO_PROTOCOL = ("sasrec",)


def _grounded(rows: tuple[Row, ...]) -> tuple[Row, ...]:
    return tuple(r if r.method in NO_PROTOCOL else
                 Row(r.label, r.method, r.backbone,
                     tuple(sorted(r.overrides + GROUNDING + GROUNDING_ROW.get(r.method, ()))), r.extra) for r in rows)


BASELINES = (("SASRec", "sasrec"), ("BIGRec", "bigrec"), ("RW", "rw"), ("D3", "d3"), ("DMPO", "dmpo"),
             ("SDPO", "sdpo"), ("RosePO", "rosepo"), ("SPRec", "sprec"), ("Ours", "causaldpo"))
REFERENCES = (("DPO", "dpo"), ("SFT", "sft"))
# the exposure shift's generating model: the ceiling of that column (a reference, never a method)
ORACLE = (Row("MF oracle (ceiling)", "oracle-mf", extra=True, shifts=("exposure",)),)
OOD = (Column("Yelp2018", "popularity"), Column("ML-10M", "temporal"), Column("Book-Crossing", "exposure"))
VARIANTS = (Column("ML-10M", "temporal"), Column("Book-Crossing", "exposure"))
BOOK = (Column("Book-Crossing", "exposure"),)
VARIANT_ROWS = (("Dr.DPO", "drdpo"), ("CPO", "cpo"), ("SimPO", "simpo"), ("DPO", "dpo"),
                ("SimPO w/ Causal Reg.", "simpo+causal"), ("CPO w/ Causal Reg.", "cpo+causal"),
                ("Dr.DPO w/ Causal Reg.", "drdpo+causal"), ("CausalDPO", "causaldpo"))

TABLES: dict[str, TableSpec] = {t.name: t for t in (
    TableSpec("table1", "Table 1: OOD performance (%) under popularity, temporal and exposure shift", OOD,
              _rows(BASELINES) + _rows(REFERENCES, extra=True) + ORACLE, paper_csv="table1.csv"),
    TableSpec("table2", "Table 2: dataset statistics", OOD, (), metrics=("#Sequence", "#Items", "#Interactions"),
              kind="stats", paper_csv="table2.csv"),
    TableSpec("table3", "Table 3: IID performance (%)",
              (Column("ML-10M", "iid"), Column("Book-Crossing", "iid")),
              _rows(BASELINES) + _rows(REFERENCES, extra=True), paper_csv="table3.csv"),
    TableSpec("table4", "Table 4: mixed shift (popularity + temporal) performance (%)", (Column("Yelp2018", "mixed"),),
              _rows(BASELINES) + _rows(REFERENCES, extra=True), paper_csv="table4.csv"),
    TableSpec("table1g", "Table 1 under the grounding protocol (MiniLM embedder): OOD performance (%)", OOD,
              _grounded(_rows(BASELINES) + _rows(REFERENCES, extra=True)), paper_csv="table1.csv"),
    TableSpec("table5", "Table 5: DPO variants with and without the causal regularizer (%)", VARIANTS,
              _rows(VARIANT_ROWS), paper_csv="table5.csv"),
    TableSpec("table5g", "Table 5 under the grounding protocol (MiniLM embedder): DPO variants (%)", VARIANTS,
              _grounded(_rows(VARIANT_ROWS)), paper_csv="table5.csv"),
    TableSpec("table6", "Table 6: seconds per epoch of preference training", BOOK,
              _rows((("DPO", "dpo"), ("CPO", "cpo"), ("SimPO", "simpo"), ("CausalDPO", "causaldpo"))),
              metrics=("seconds/epoch",), kind="seconds", paper_csv="table6.csv"),
    TableSpec("table7", "Table 7: seconds per epoch with the causal invariance regularizer", BOOK,
              _rows((("Dr.DPO w/ Causal", "drdpo+causal"), ("CPO w/ Causal", "cpo+causal"),
                     ("SimPO w/ Causal", "simpo+causal"), ("CausalDPO", "causaldpo"))) +
              _rows((("DPO", "dpo"),), extra=True),
              metrics=("seconds/epoch",), kind="seconds", paper_csv="table7.csv"),
    TableSpec("table8", "Table 8: ablation (%)", OOD,
              _rows((("w/o SFT", "causaldpo-nosft"), ("w/o CausalDPO", "sft"), ("w/o Both", "base"),
                     ("Ours", "causaldpo"))) + _rows((("DPO", "dpo"),), extra=True),
              metrics=("HR@10", "NDCG@10"), paper_csv="table8.csv"),
    TableSpec("table9", "Table 9: CausalDPO on other backbones (%)", OOD[:2],
              _rows(BASELINES[:4], backbone="llama") + (
                  Row("Ours", "causaldpo", "llama"), Row("-Qwen2.5-7B-Instruct", "causaldpo", "qwen2"),
                  Row("-Qwen3-8b-Instruct", "causaldpo", "qwen3"), Row("DPO", "dpo", "llama", extra=True)),
              paper_csv="table9.csv"),
    TableSpec("fig1", "Figure 1 (left): top-10 recommendations per popularity group", OOD[:1],
              _rows((("SFT", "sft"), ("DPO", "dpo"), ("CausalDPO", "causaldpo"))), kind="figure"),
    TableSpec("fig2", "Figure 2: NDCG@10 per popularity group (G1 head .. G5 tail) and time period (T1 .. T5); "
                      "pseudo-environments", OOD[:2],
              _rows((("SFT", "sft"), ("DPO", "dpo"), ("SDPO", "sdpo"), ("SPRec", "sprec"),
                     ("CausalDPO", "causaldpo"))), kind="figure"),
    TableSpec("fig3", "Figure 3: CausalDPO's sensitivity to iterations N, negatives and beta (NDCG@10)", BOOK,
              (Row("iterations=1", "causaldpo"),)
              + tuple(Row(f"iterations={n}", "causaldpo-selfplay", overrides=(f"causaldpo-selfplay.iterations={n}",))
                      for n in (2, 3, 4))
              + tuple(Row(f"negatives={k}", "causaldpo", overrides=(f"preference.negatives={k}",)) for k in (1, 2, 4, 8))
              + tuple(Row(f"beta={b}", "causaldpo", overrides=(f"causaldpo.beta={b}",)) for b in (0.5, 1, 2, 5)),
              metrics=("NDCG@10",), kind="figure"),
)}
DEFAULT_TABLES = ("table1", "table1g", "table2", "table3", "table4", "table5", "table5g", "table6", "table7",
                  "table8", "table9", "fig1", "fig2")  # fig3 (a sweep of 8 extra runs per seed) only when asked


def add_method_rows(names: list[str]) -> None:
    """Your own registered methods (`leaderboard --add-methods`) as extra rows, below the paper's, of every table
    whose rows are methods (metrics and seconds; not the figures or Table 2). Idempotent."""
    import dataclasses

    for key, spec in TABLES.items():
        if spec.kind not in ("metrics", "seconds"):
            continue
        have = {row.method for row in spec.rows}
        added = tuple(Row(name, name, extra=True) for name in names if name not in have)
        if any(set(GROUNDING) <= set(row.overrides) for row in spec.rows):  # Tables 1g, 5g: every row grounded
            added = _grounded(added)
        TABLES[key] = dataclasses.replace(spec, rows=spec.rows + added)


def restrict(names: list[str], shifts: list[str] | None = None, methods: list[str] | None = None) -> list[str]:
    """Narrow the named tables to the columns of `shifts` and the rows of `methods` (None: all), adding the listed
    methods that a method table lacks as extra rows (`add_method_rows`). Returns the names of the tables left with
    a column and a row (Table 2, the datasets, keeps its rows). Changes `TABLES`, as `add_method_rows` does."""
    import dataclasses

    known = {column.shift for spec in TABLES.values() for column in spec.columns}
    unknown = sorted(set(shifts or ()) - known)
    if unknown:
        raise ValueError(f"--shifts: unknown shift(s) {', '.join(unknown)}; the tables' shifts: {', '.join(sorted(known))}")
    if methods:
        add_method_rows(list(methods))
    kept = []
    for name in names:
        spec = TABLES[name]
        columns = tuple(c for c in spec.columns if shifts is None or c.shift in shifts)
        rows = tuple(r for r in spec.rows if not methods or r.method in methods)
        TABLES[name] = spec = dataclasses.replace(spec, columns=columns, rows=rows if spec.kind != "stats" else spec.rows)
        if spec.columns and (spec.rows or spec.kind == "stats"):
            kept.append(name)
    return kept


def table_names(text: str | None) -> list[str]:
    """`--tables 1,1g,fig2` -> ["table1", "table1g", "fig2"]; None -> the default set; "all" -> every table and
    figure. `1g` / `5g` are Tables 1 and 5 under the grounding protocol."""
    if not text:
        return list(DEFAULT_TABLES)
    if text.strip() == "all":
        return list(TABLES)
    names = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name = f"table{part}" if part.rstrip("g").isdigit() else part
        if name not in TABLES:
            raise ValueError(f"unknown table {part!r}; tables: {', '.join(TABLES)}")
        names.append(name)
    return names


def dataset_for(profile: str, column: Column, profile_dataset: str) -> str:
    return PAPER_DATASETS[column.paper_dataset] if profile == "paper" else profile_dataset


def backbone_overrides(profile: str, role: str | None, profile_backbone: str) -> tuple[str, ...]:
    if role is None:
        return ()
    name = BACKBONES["paper" if profile == "paper" else "default"][role]
    return () if name == profile_backbone else (f"backbone.name={name}",)


def row_cell(spec_row: Row, column: Column, profile: str, seed: int, profile_dataset: str,
             profile_backbone: str) -> GridCell:
    overrides = backbone_overrides(profile, spec_row.backbone, profile_backbone) + spec_row.overrides
    return GridCell(dataset_for(profile, column, profile_dataset), column.shift, spec_row.method, seed,
                tuple(sorted(overrides)))


def expand(names: list[str], profile: str, seeds: list[int], profile_dataset: str,
           profile_backbone: str) -> list[GridCell]:
    """Every cell the named tables need, once each, in a stable order."""
    cells = {row_cell(row, column, profile, seed, profile_dataset, profile_backbone)
             for name in names for column in TABLES[name].columns for row in TABLES[name].rows for seed in seeds
             if row.applies(column)}
    return sorted(cells)
