"""The CausalDPO paper's published numbers (arXiv 2603.22335v2), as stored in `leaderboards/paper/*.csv`.

Layout: ``dataset, shift, metric, <paper row label>...``, values in % (seconds for Tables 6-7) as printed;
Table 2 is ``statistic, <dataset>...``. See `leaderboards/paper/README.md` for the transcription notes.
The folder ships inside the installed package (`leaderboards` package data); a missing file is an error, never
"no published numbers".
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from leaderboards import PAPER_DIR


class PaperDataMissing(FileNotFoundError):
    """A published table that should ship with the package is not there (a broken installation or folder)."""


def _paper_file(folder: str | Path, file_name: str) -> Path:
    path = Path(folder) / file_name
    if not path.is_file():
        raise PaperDataMissing(f"the paper's published numbers {path} are missing: the installation is incomplete "
                               f"(reinstall dpo-shift-bench; they ship as package data of `leaderboards`)")
    return path


@dataclass
class PaperTable:
    labels: list[str]                                   # the paper's row labels (methods)
    cells: dict[tuple[str, str, str, str], str]         # (dataset, shift, metric, label) -> printed text

    def get(self, dataset: str, shift: str, metric: str, label: str) -> float | None:
        text = self.cells.get((dataset, shift, metric, label))
        try:
            return float(text) if text not in (None, "") else None
        except ValueError:
            return None

    def text(self, dataset: str, shift: str, metric: str, label: str) -> str | None:
        return self.cells.get((dataset, shift, metric, label))


def load_paper(file_name: str, folder: str | Path = PAPER_DIR) -> PaperTable:
    path = _paper_file(folder, file_name)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if header[:3] != ["dataset", "shift", "metric"]:
        raise ValueError(f"{path}: expected a dataset,shift,metric,... header, got {header[:3]}")
    labels = header[3:]
    cells = {(r[0], r[1], r[2], label): r[3 + j] for r in body for j, label in enumerate(labels)}
    return PaperTable(labels, cells)


def load_table2(folder: str | Path = PAPER_DIR) -> dict[str, dict[str, int]]:
    """Table 2: statistic -> {paper dataset label: value}."""
    with open(_paper_file(folder, "table2.csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    return {r[0]: {d: int(v) for d, v in zip(rows[0][1:], r[1:])} for r in rows[1:]}
