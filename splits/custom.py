"""Users' own datasets: one ratings file (csv, parquet, JSON lines, or a format of `splits.formats`) prepared once
under a name of their choice, then loaded by that name like the registered datasets.

``python -m bench data prepare --dataset NAME --format FORMAT --raw FILE [--titles FILE]
--columns user=U,item=I,rating=R,timestamp=T,title=N --positive-threshold X --min-user-positives N`` (`prepare_custom`)
parses FILE with pandas and writes ``DATA_DIR/NAME/`` like any prepared dataset (`splits.prepared`: arrays, titles,
a manifest with the raw files' sha256 and a fingerprint; a temporary folder renamed into place, so a failure leaves
nothing half-written and an earlier preparation untouched). Choices:

* Reading settings are stored in the manifest (key ``custom``: format, columns, threshold, min positives, the raw
  and titles file names), so any later process loads NAME with no extra argument: `load_dataset(NAME)` and
  ``DATASETS.get(NAME)`` fall back (`splits.datasets.DatasetRegistry`) to a custom dataset prepared in the data dir
  (the ``data_dir`` option, ``$BENCH_DATA_DIR``, ``runs/data``) when NAME is not registered; the "did you mean" error is
  unchanged when neither exists. ``positive_threshold`` / ``min_user_positives`` remain load options, defaulting to the
  stored ones. ``raw_path`` may name the prepared folder itself (as for the other datasets), not a raw file.
* Names: the registered ones (ml-100k, ml-10m, yelp2018, book-crossing) are reserved, and a name is letters, digits,
  ``.``, ``_``, ``-``, not starting with ``.`` or ``-`` (it becomes a folder name).
* Formats: the names registered in `splits.formats.FORMATS` (csv, parquet, jsonl, amazon2023, and any a module of
  yours adds, loaded with ``--include MODULE``); each says how its files are read and how a row is named in an error.
* Parsing: csv with pandas' defaults (comma-separated, a header row, UTF-8), every cell read as text (``007`` stays an
  id, numbers are parsed by us); JSON lines with ``read_json(lines=True)`` (no dtype or date guessing); parquet with
  ``read_parquet`` (needs pyarrow; without it, an error naming the package). Blank lines are skipped.
* Errors name ``file:line`` (csv: the header is line 1 and a record's line assumes one record per line, i.e. no quoted
  newlines; JSON lines: the line in the file, blank lines counted; parquet: ``file: row N``, 1-based) or the missing
  column, and are `ValueError` s, which the CLI prints as one ``error:`` line (exit 2).
* Columns: ``user``, ``item`` and ``timestamp`` are required; ``rating`` is optional (absent: implicit feedback,
  every row rating 1.0 and a default threshold of 1; ``--positive-threshold`` is then an error, as is leaving it out
  when there is a rating column); ``title`` names the title column, of FILE or (with ``--titles``) of the titles file,
  which holds the item column under the same name as FILE (``title`` defaults to "title" there). Other keys are errors.
* Ids: user and item values (strings or numbers, compared as text) become integers 1..n in order of first appearance
  in FILE; items only in the titles file are skipped. An empty id is an error.
* Ratings: numbers (text that parses as one is fine); empty, non-numeric or non-finite is an error.
* Timestamps, decided per column: if every value is numeric, all > 1e11 means Unix milliseconds (floored to seconds),
  otherwise Unix seconds (floored); else every value is parsed as an ISO 8601 date/time (``pandas.to_datetime(...,
  format="ISO8601")``), naive ones as UTC, and one that does not parse is an error. Parquet datetime columns are used
  as they are (naive = UTC).
* Titles: stripped; per item the first non-empty one; an item given two different titles is an error naming both
  lines; a rated item with no title is an error naming its first line; titles shared by several items are made unique
  with `unique_titles` (the " [k]" suffix, as for the published datasets).
* ``--format amazon2023``: the Amazon Reviews 2023 files (McAuley lab, amazon-reviews-2023.github.io): FILE is
  ``<Category>.jsonl`` (one review a line: ``rating``, ``title`` -- the *review's* title --, ``text``, ``images``,
  ``asin``, ``parent_asin``, ``user_id``, ``timestamp`` in Unix milliseconds, ``helpful_vote``,
  ``verified_purchase``), titles come from ``meta_<Category>.jsonl`` (``--titles``, else that file beside FILE):
  its ``title`` per ``parent_asin``. The columns are fixed (``--columns`` is an error): user ``user_id``, item
  ``parent_asin`` (the product, variants merged, as the dataset's own benchmarks do), rating ``rating``, timestamp
  ``timestamp``. Unlike the generic formats, reviews of products whose metadata has no title (the metadata holds a
  few such products) are dropped, and their number kept in the manifest (``untitled_items``,
  ``untitled_interactions``), since such real files cannot be fixed by the user.
* ``min_user_positives`` defaults to 20 (the paper's per-user rule). The filters run at load time (`make_dataset`):
  one interaction per (user, item), the positive threshold, the per-user filter.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .datasets import DATASETS, make_dataset, unique_titles
from .formats import FORMATS, Preset
from .prepared import (
    RAW_DATASETS,
    RawData,
    data_dir,
    is_prepared,
    read_prepared,
    write_prepared,
)
from .types import Dataset

KEYS = ("user", "item", "rating", "timestamp", "title")
REQUIRED = ("user", "item", "timestamp")
DEFAULT_MIN_USER_POSITIVES = 20
MILLISECONDS_ABOVE = 1e11
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def parse_columns(text: str) -> dict[str, str]:
    """``user=a,item=b,...`` -> ``{"user": "a", ...}``; unknown keys, repeats and missing required keys are errors."""
    columns: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, column = (s.strip() for s in part.partition("="))
        if not eq or not key or not column:
            raise ValueError(f"--columns: {part!r} is not KEY=COLUMN")
        if key not in KEYS:
            raise ValueError(f"--columns: unknown key {key!r} (keys: {', '.join(KEYS)})")
        if key in columns:
            raise ValueError(f"--columns: {key} given twice")
        columns[key] = column
    missing = [k for k in REQUIRED if k not in columns]
    if missing:
        raise ValueError(f"--columns: missing {', '.join(f'{k}=COLUMN' for k in missing)}")
    return columns


class _Table:
    """One file read by its format (`splits.formats`), every failure a `ValueError` naming the file, and how to
    name a row of it in an error."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.format = path, fmt, FORMATS.get(fmt)
        self.frame = self._read()

    def _read(self) -> pd.DataFrame:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        try:
            return self.format.read(path)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: empty file (no header)") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
        except ValueError as err:
            if str(err).startswith(str(path)):
                raise
            raise ValueError(f"{path}: cannot read as {self.fmt}: {err}") from None

    def where(self, position: int) -> str:
        """``file:line`` (or ``file: row N``) of the row at ``position`` in `frame`."""
        return self.format.locate_row(self.path, self.frame, position)

    def fail(self, position: int, message: str) -> ValueError:
        return ValueError(f"{self.where(position)}: {message}")

    def column(self, key: str, name: str) -> pd.Series:
        if name not in self.frame.columns:
            raise ValueError(f"{self.path}: no column {name!r} (--columns {key}={name}); columns: "
                             f"{', '.join(map(str, self.frame.columns))}")
        return self.frame[name]

    def text(self, key: str, name: str) -> np.ndarray:
        """The column as stripped text; missing values (None/NaN, empty) are ''."""
        values = self.column(key, name)
        return np.array(["" if _missing(v) else str(v).strip() for v in values.tolist()], dtype=object)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT or value == ""


def _ids(table: _Table, key: str, name: str) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    values = table.text(key, name)
    empty = np.flatnonzero(values == "")
    if empty.size:
        raise table.fail(int(empty[0]), f"empty {key} id (column {name!r})")
    codes, uniques = pd.factorize(values, sort=False)  # order of first appearance
    return codes.astype(np.int64) + 1, {str(u): i + 1 for i, u in enumerate(uniques)}, values


def _ratings(table: _Table, name: str) -> np.ndarray:
    column = table.column("rating", name)
    parsed = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
    bad = np.flatnonzero(~np.isfinite(parsed))
    if bad.size:
        i = int(bad[0])
        raise table.fail(i, f"rating {column.iloc[i]!r} (column {name!r}) is not a number")
    return parsed


def _timestamps(table: _Table, name: str) -> tuple[np.ndarray, str]:
    column = table.column("timestamp", name)
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
        how = "datetime column, UTC seconds"
    else:
        numbers = pd.to_numeric(column, errors="coerce") if column.dtype != bool else pd.Series(np.nan, column.index)
        if len(column) and np.isfinite(numbers.to_numpy(dtype="float64")).all():
            values = numbers.to_numpy(dtype="float64")
            if (values > MILLISECONDS_ABOVE).all():
                return np.floor(values / 1000).astype(np.int64), "Unix milliseconds, floored to seconds"
            return np.floor(values).astype(np.int64), "Unix seconds"
        text = pd.Series(["" if _missing(v) else str(v).strip() for v in column.tolist()], dtype=object)
        stamps = pd.to_datetime(text.where(text != "", None), utc=True, format="ISO8601", errors="coerce")
        how = "ISO 8601 dates, UTC seconds"
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise table.fail(i, f"timestamp {column.iloc[i]!r} (column {name!r}) is not Unix seconds, milliseconds or an "
                            f"ISO 8601 date")
    seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=np.int64), how


def _titles(table: _Table, key_values: np.ndarray, titles: np.ndarray, name: str,
            known: dict[str, int] | None) -> dict[str, tuple[str, int]]:
    """item text -> (title, row position) from the first row giving it; two different titles is an error."""
    out: dict[str, tuple[str, int]] = {}
    for i, (item, title) in enumerate(zip(key_values.tolist(), titles.tolist())):
        if not title or (known is not None and item not in known):
            continue
        if item == "":
            raise table.fail(i, "empty item id")
        first = out.get(item)
        if first is None:
            out[item] = (title, i)
        elif first[0] != title:
            raise table.fail(i, f"item {item!r} has title {title!r} here and {first[0]!r} at "
                                f"{table.where(first[1])} (column {name!r})")
    return out


def read_custom(raw: Path, fmt: str, columns: dict[str, str] | None, titles_file: Path | None = None) -> RawData:
    """Parse ``raw`` (and ``titles_file``) into a `RawData`, see the module docstring for every rule. A rated item
    without a title is an error, except for a preset format saying ``untitled="drop"`` (its interactions are left
    out and counted); a preset's own columns and titles file are used."""
    raw, preset = Path(raw), FORMATS.get(fmt).preset
    if preset is not None:
        columns, titles_file = dict(preset.columns), preset_titles_file(fmt, preset, raw, titles_file)
    table = _Table(raw, fmt)
    users, _, _ = _ids(table, "user", columns["user"])
    items, item_ids, item_text = _ids(table, "item", columns["item"])
    ratings = _ratings(table, columns["rating"]) if "rating" in columns else np.ones(len(users))
    timestamps, how = _timestamps(table, columns["timestamp"])
    files = [raw]
    if titles_file is not None:
        files.append(Path(titles_file))
        ttable = _Table(Path(titles_file), fmt)
        title_col = columns.get("title", "title")
        keys = ttable.text("item", columns["item"])
        found = _titles(ttable, keys, ttable.text("title", title_col), title_col, item_ids)
    elif "title" in columns:
        ttable = table
        found = _titles(table, item_text, table.text("title", columns["title"]), columns["title"], None)
    else:
        raise ValueError("no titles: give a title=COLUMN in --columns, or --titles FILE")
    missing = [item for item in item_ids if item not in found]
    source = fmt if preset is not None else f"custom {fmt}"
    info = {"source": f"{source}: {', '.join(p.name for p in files)}", "timestamp": how, "columns": dict(columns),
            "implicit": "rating" not in columns}
    keep = np.ones(len(users), dtype=bool)
    if missing and (preset is None or preset.untitled == "error"):
        position = int(np.argmax(items == item_ids[missing[0]]))
        where = f" in {ttable.path}" if titles_file is not None else ""
        raise table.fail(position, f"item {missing[0]!r} has no title{where}")
    if missing:
        keep = ~np.isin(items, [item_ids[m] for m in missing])
        info.update(untitled_items=len(missing), untitled_interactions=int((~keep).sum()))
        if not keep.any():
            raise ValueError(f"{raw}: no item has a title in {ttable.path}")
    titles = unique_titles({item_ids[item]: title for item, (title, _) in found.items()})
    frame = pd.DataFrame({"user": users, "item": items, "rating": ratings, "timestamp": timestamps})[keep]
    return RawData(frame.reset_index(drop=True), titles, files, info)


def preset_titles_file(fmt: str, preset: Preset, raw: Path, titles_file: Path | None) -> Path:
    """``--titles``, else the preset's titles file for ``raw``; a clear error when neither exists."""
    if titles_file is not None:
        return Path(titles_file)
    found = preset.titles_file(Path(raw))
    if not found.is_file():
        raise FileNotFoundError(f"{found}: no such file; --format {fmt} reads the titles from {preset.titles_from}, "
                                f"or from --titles FILE")
    return found


def check_name(name: str) -> None:
    if name in DATASETS or name in RAW_DATASETS:
        raise ValueError(f"--dataset {name!r} is a registered dataset (reserved: {', '.join(DATASETS.names())}); "
                         f"choose another name for your own dataset")
    if not NAME.fullmatch(name):
        raise ValueError(f"--dataset {name!r}: a custom dataset's name is letters, digits, '.', '_' or '-', not "
                         f"starting with '.' or '-'")


def settings(columns: dict[str, str], positive_threshold: float | None,
             min_user_positives: int | None) -> tuple[float, int]:
    if positive_threshold is None:
        if "rating" in columns:
            raise ValueError("--positive-threshold is required with a rating column (a rating >= it is positive)")
        positive_threshold = 1.0
    elif "rating" not in columns:
        raise ValueError("--positive-threshold needs a rating=COLUMN (without one every row is a positive, rating 1)")
    if not math.isfinite(positive_threshold):
        raise ValueError(f"--positive-threshold must be finite, got {positive_threshold}")
    if min_user_positives is None:
        min_user_positives = DEFAULT_MIN_USER_POSITIVES
    if min_user_positives < 1:
        raise ValueError(f"--min-user-positives must be at least 1, got {min_user_positives}")
    return float(positive_threshold), int(min_user_positives)


def prepare_custom(name: str, raw: str | os.PathLike, fmt: str, columns: dict[str, str] | str | None,
                   titles: str | os.PathLike | None = None, positive_threshold: float | None = None,
                   min_user_positives: int | None = None, root: str | os.PathLike | None = None) -> Path:
    """Parse a user's file and write ``root/name`` (see the module docstring); returns the folder."""
    check_name(name)
    preset = FORMATS.get(fmt).preset
    if preset is not None:
        if columns:
            fixed = ", ".join(column for key, column in preset.columns.items() if key != "title")
            raise ValueError(f"--columns: the {fmt} format's columns are fixed ({fixed}; titles from "
                             f"{preset.titles_from})")
        columns = dict(preset.columns)
        if not Path(raw).is_file():
            raise FileNotFoundError(f"{raw}: no such file")
        titles = preset_titles_file(fmt, preset, Path(raw), Path(titles) if titles is not None else None)
    elif isinstance(columns, str):
        columns = parse_columns(columns)
    elif columns is None:
        raise ValueError(f"--format {fmt} needs --columns user=COL,item=COL,timestamp=COL,...")
    threshold, min_positives = settings(columns, positive_threshold, min_user_positives)
    data = read_custom(Path(raw), fmt, columns, Path(titles) if titles is not None else None)
    custom = {"format": fmt, "columns": columns, "positive_threshold": threshold,
              "min_user_positives": min_positives, "raw": Path(raw).name,
              "titles": Path(titles).name if titles is not None else None}
    return write_prepared(name, data, raw, root, extra={"custom": custom})


def prepare_command(name: str, custom: dict, root: Path | None = None) -> str:
    """The command that prepared a custom dataset (shown when its folder must be prepared again)."""
    fmt = custom["format"]
    preset = FORMATS.get(fmt).preset if fmt in FORMATS else None  # a format of a module not loaded: not a preset
    cols = ",".join(f"{k}={v}" for k, v in custom["columns"].items())
    cmd = (f"python -m bench data prepare --dataset {name} --format {fmt} --raw {custom['raw']}"
           + (f" --titles {custom['titles']}" if custom.get("titles") else "")
           + (f" --columns {cols}" if preset is None else ""))
    if "rating" in custom["columns"]:
        cmd += f" --positive-threshold {custom['positive_threshold']:g}"
    cmd += f" --min-user-positives {custom['min_user_positives']}"
    return cmd + (f" --data-dir {root}" if root is not None else "")


def custom_manifest(folder: Path) -> dict | None:
    """The ``custom`` settings of a prepared folder, or None (not prepared, or a registered dataset's)."""
    if not is_prepared(folder):
        return None
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    custom = manifest.get("custom") if isinstance(manifest, dict) else None
    return custom if isinstance(custom, dict) else None


def custom_names(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the custom datasets prepared in the data dir."""
    folder = data_dir(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and custom_manifest(p) is not None)


def load_custom(name: str, data_dir: str | os.PathLike | None = None, raw_path: str | os.PathLike | None = None,
                positive_threshold: float | None = None, min_user_positives: int | None = None) -> Dataset:
    """Load a custom dataset from its prepared folder (``raw_path``, else ``DATA_DIR/name``)."""
    from .prepared import data_dir as resolve

    folder = Path(raw_path) if raw_path is not None else resolve(data_dir) / name
    custom = custom_manifest(folder)
    if custom is None:
        raise FileNotFoundError(f"{folder}: not a prepared custom dataset (no manifest.json with custom settings)")
    data = read_prepared(name, folder, rerun=prepare_command(name, custom, folder.parent))
    threshold = custom["positive_threshold"] if positive_threshold is None else positive_threshold
    min_positives = custom["min_user_positives"] if min_user_positives is None else min_user_positives
    return make_dataset(name, data.interactions, data.titles, threshold, min_positives,
                        info={**data.info, "custom": custom, "implicit_rating": None})


def resolve_custom(name: str, options: dict):
    """`DatasetRegistry` fallback: a loader for ``name`` if it is a custom dataset prepared where ``options`` point."""
    raw_path, root = options.get("raw_path"), options.get("data_dir")
    folder = Path(raw_path) if raw_path is not None else data_dir(root) / name
    if custom_manifest(folder) is None:
        return None

    def load(**kwargs) -> Dataset:
        return load_custom(name, **kwargs)

    return load


DATASETS.add_resolver(resolve_custom)
