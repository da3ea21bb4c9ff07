"""The file formats of users' own datasets (`splits.custom`), one registration each in `FORMATS`.

A format is a `TableFormat`: how a file is read into a frame (``read(path)``, one row a record, in file order) and
how a row of that frame is named in an error (``locate_row(path, frame, position)`` -> ``file:line`` or
``file: row N``). `splits.custom` does the rest (columns, ids, ratings, timestamps, titles) alike for every format,
and turns what a reader raises into errors naming the file (missing file, empty file, not UTF-8, any other
`ValueError` as "cannot read as FORMAT"). A format with a `Preset` is a published dataset's files on a base format:
its columns are fixed, its titles file is found beside the ratings file, and untitled items are dropped and counted
(``untitled="drop"``) instead of being an error.

Adding a format, here or in a module of one's own loaded with ``--include MODULE`` (`bench.plugins`)::

    FORMATS.add("tsv", TableFormat(read_tsv, line_from_index, help="tab-separated, a header row"))

``python -m bench data prepare --format`` takes its names and help from this registry.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from .prepared import json_objects
from .registry import Registry


@dataclass(frozen=True)
class Preset:
    """A published dataset's layout: fixed ``columns`` (keys of `splits.custom.KEYS`), ``titles_file(raw)`` the
    titles file used without ``--titles`` (``titles_from`` says where it is, in errors), and what happens to rated
    items without a title: ``"drop"`` (left out, counted in the manifest) or ``"error"``."""

    columns: Mapping[str, str]
    titles_file: Callable[[Path], Path]
    titles_from: str
    untitled: str = "drop"


@dataclass(frozen=True)
class TableFormat:
    """How a file of this format is read (``read``: path -> frame; `ValueError` s, best naming the file) and how
    its row at ``position`` is named in an error (``locate_row``); ``help`` for ``--format``; ``preset`` for a
    published dataset's files."""

    read: Callable[[Path], pd.DataFrame]
    locate_row: Callable[[Path, pd.DataFrame, int], str]
    help: str = ""
    preset: Preset | None = None


FORMATS: Registry[TableFormat] = Registry("dataset format")


def line_from_index(path: Path, frame: pd.DataFrame, position: int) -> str:
    """``file:line`` for a reader that puts each record's line number in the frame's index."""
    return f"{path}:{int(frame.index[position])}"


def row_number(path: Path, frame: pd.DataFrame, position: int) -> str:
    """``file: row N`` (1-based) for a file without lines."""
    return f"{path}: row {position + 1}"


def non_blank_line(path: Path, frame: pd.DataFrame, position: int) -> str:
    """``file:line`` of the position-th non-blank line (JSON lines: blank lines are skipped but counted)."""
    with open(path, "rb") as f:
        lines = [n for n, raw in enumerate(f, 1) if raw.strip()]
    return f"{path}:{lines[position]}"


def read_csv(path: Path) -> pd.DataFrame:
    """pandas' defaults (comma, header row, UTF-8), every cell text; the index is each record's line."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8")
    blank = (frame == "").all(axis=1).to_numpy()
    frame.index = np.arange(len(frame)) + 2  # the line of each record: header is line 1
    return frame[~blank]


def read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object a line, no dtype or date guessing; a malformed line is an error naming ``file:line``."""
    try:
        frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False, keep_default_dates=False,
                             encoding="utf-8")
        if len(frame) and not isinstance(frame.index, pd.RangeIndex):
            raise ValueError("not one JSON object a line")
    except UnicodeDecodeError:
        raise
    except ValueError:
        _raise_bad_json_line(path)
        raise
    return frame.reset_index(drop=True)


def _raise_bad_json_line(path: Path) -> None:
    """Raise a `LineError` for the first line that is not UTF-8 or not a JSON object, if there is one."""
    for _ in json_objects(path):
        pass


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError(f"{path}: reading parquet needs the pyarrow package (pip install pyarrow)") from None
    return pd.read_parquet(path).reset_index(drop=True)


def amazon2023_meta(raw: Path) -> Path:
    """``meta_<Category>.jsonl`` beside ``<Category>.jsonl``."""
    return Path(raw).with_name(f"meta_{Path(raw).name}")


CSV = TableFormat(read_csv, line_from_index, help="comma-separated, a header row")
JSONL = TableFormat(read_jsonl, non_blank_line, help="JSON lines")
FORMATS.add("csv", CSV)
FORMATS.add("parquet", TableFormat(read_parquet, row_number, help="needs pyarrow"))
FORMATS.add("jsonl", JSONL)
FORMATS.add("amazon2023", replace(
    JSONL, help="Amazon Reviews 2023 <Category>.jsonl with meta_<Category>.jsonl, columns fixed",
    preset=Preset(columns={"user": "user_id", "item": "parent_asin", "rating": "rating", "timestamp": "timestamp",
                           "title": "title"},
                  titles_file=amazon2023_meta,
                  titles_from="the metadata file meta_<Category>.jsonl beside the reviews")))
