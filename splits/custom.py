"""Users' own datasets: one ratings file (csv, parquet or JSON lines) prepared once under a name of their choice, then
loaded by that name like the registered datasets.

``python -m bench data prepare --dataset NAME --format csv|parquet|jsonl --raw FILE [--titles FILE]
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
from .prepared import (
    RAW_DATASETS,
    LineError,
    RawData,
    data_dir,
    is_prepared,
    read_prepared,
    write_prepared,
)
from .types import Dataset

FORMATS = ("csv", "parquet", "jsonl", "amazon2023")
AMAZON2023 = {"user": "user_id", "item": "parent_asin", "rating": "rating", "timestamp": "timestamp", "title": "title"}
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
    """One parsed file and how to name a row of it in an error."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self._lines: list[int] | None = None
        self.frame = self._read()

    def _read(self) -> pd.DataFrame:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        try:
            if self.fmt == "csv":
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8")
                blank = (frame == "").all(axis=1).to_numpy()
                frame.index = np.arange(len(frame)) + 2  # the line of each record: header is line 1
                return frame[~blank]
            if self.fmt == "jsonl":
                frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False, keep_default_dates=False,
                                     encoding="utf-8")
                if len(frame) and not isinstance(frame.index, pd.RangeIndex):
                    raise ValueError("not one JSON object a line")
                return frame.reset_index(drop=True)
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ValueError(f"{path}: reading parquet needs the pyarrow package (pip install pyarrow)") from None
            return pd.read_parquet(path).reset_index(drop=True)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: empty file (no header)") from None
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
        except ValueError as err:
            if str(err).startswith(str(path)):
                raise
            if self.fmt == "jsonl":
                self._find_bad_json()
            raise ValueError(f"{path}: cannot read as {self.fmt}: {err}") from None

    def _find_bad_json(self) -> None:
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise LineError(self.path, n, f"not UTF-8 ({err.reason} at byte {err.start})") from None
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise LineError(self.path, n, f"not JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(obj, dict):
                    raise LineError(self.path, n, "not a JSON object")

    def where(self, position: int) -> str:
        """``file:line`` (or ``file: row N``) of the row at ``position`` in `frame`."""
        if self.fmt == "csv":
            return f"{self.path}:{int(self.frame.index[position])}"
        if self.fmt == "parquet":
            return f"{self.path}: row {position + 1}"
        if self._lines is None:
            with open(self.path, "rb") as f:
                self._lines = [n for n, raw in enumerate(f, 1) if raw.strip()]
        return f"{self.path}:{self._lines[position]}"

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


def read_custom(raw: Path, fmt: str, columns: dict[str, str], titles_file: Path | None = None,
                untitled: str = "error") -> RawData:
    """Parse ``raw`` (and ``titles_file``) into a `RawData`, see the module docstring for every rule. `untitled`:
    "error" (a rated item without a title is an error) or "drop" (its interactions are left out and counted)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "amazon2023":
        return read_amazon2023(Path(raw), titles_file)
    raw = Path(raw)
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
    info = {"source": f"custom {fmt}: {', '.join(p.name for p in files)}", "timestamp": how,
            "columns": dict(columns), "implicit": "rating" not in columns}
    keep = np.ones(len(users), dtype=bool)
    if missing and untitled == "error":
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


def amazon2023_titles_file(raw: Path, titles_file: Path | None) -> Path:
    """``--titles``, else ``meta_<Category>.jsonl`` beside ``<Category>.jsonl``; a clear error when neither exists."""
    if titles_file is not None:
        return Path(titles_file)
    meta = Path(raw).with_name(f"meta_{Path(raw).name}")
    if not meta.is_file():
        raise FileNotFoundError(f"{meta}: no such file; --format amazon2023 reads the titles from the metadata file "
                                f"meta_<Category>.jsonl beside the reviews, or from --titles FILE")
    return meta


def read_amazon2023(raw: Path, titles_file: Path | None = None) -> RawData:
    data = read_custom(raw, "jsonl", AMAZON2023, amazon2023_titles_file(raw, titles_file), untitled="drop")
    data.info.update(source=f"amazon2023: {', '.join(p.name for p in data.files)}", columns=dict(AMAZON2023))
    return data


def check_name(name: str) -> None:
    if name in DATASETS or name in RAW_DATASETS:
        raise ValueError(f"--dataset {name!r} is a registered dataset (reserved: {', '.join(DATASETS.names())}); "
                         f"choose another name for your own dataset")
    if not NAME.fullmatch(name):
        raise ValueError(f"--dataset {name!r}: a custom dataset's name is letters, digits, '.', '_' or '-', not "
                         f"starting with '.' or '-'")


def settings(fmt: str, columns: dict[str, str], positive_threshold: float | None,
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
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "amazon2023":
        if columns:
            raise ValueError("--columns: the amazon2023 format's columns are fixed (user_id, parent_asin, rating, "
                             "timestamp; titles from meta_<Category>.jsonl)")
        columns = dict(AMAZON2023)
        if not Path(raw).is_file():
            raise FileNotFoundError(f"{raw}: no such file")
        titles = amazon2023_titles_file(Path(raw), Path(titles) if titles is not None else None)
    elif isinstance(columns, str):
        columns = parse_columns(columns)
    elif columns is None:
        raise ValueError(f"--format {fmt} needs --columns user=COL,item=COL,timestamp=COL,...")
    threshold, min_positives = settings(fmt, columns, positive_threshold, min_user_positives)
    data = read_custom(Path(raw), fmt, columns, Path(titles) if titles is not None else None)
    custom = {"format": fmt, "columns": columns, "positive_threshold": threshold,
              "min_user_positives": min_positives, "raw": Path(raw).name,
              "titles": Path(titles).name if titles is not None else None}
    return write_prepared(name, data, raw, root, extra={"custom": custom})


def prepare_command(name: str, custom: dict, root: Path | None = None) -> str:
    cols = ",".join(f"{k}={v}" for k, v in custom["columns"].items())
    cmd = (f"python -m bench data prepare --dataset {name} --format {custom['format']} --raw {custom['raw']}"
           + (f" --titles {custom['titles']}" if custom.get("titles") else "")
           + (f" --columns {cols}" if custom["format"] != "amazon2023" else ""))
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
