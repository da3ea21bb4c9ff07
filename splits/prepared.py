"""Raw files -> a cached canonical form, and the loaders of the datasets that do not ship here (ML-10M, Yelp2018,
Book-Crossing).

A *raw reader* (``splits.ml10m``, ``splits.yelp``, ``splits.bookcrossing``) parses the published files into a
`RawData`: a frame ``user, item, rating, timestamp`` (integer ids, one row per rating, file order, *before* the
paper's filters), a ``{item: title}`` map (already unique) and an ``info`` dict (source, skipped rows, ...).

``python -m bench data prepare --dataset NAME --raw PATH [--data-dir DIR]`` (`prepare`) runs the reader once and
writes ``DIR/NAME/``:

* ``interactions.npz``: arrays ``user``, ``item``, ``timestamp`` (int64) and ``rating`` (float64), file order;
* ``titles.json``: ``{"item id": title}``;
* ``manifest.json``: format version, the raw files read (size and sha256), the reader's ``info``, the counts and a
  ``fingerprint`` (sha256 over the arrays and the titles) that `load_prepared` checks on every load.

Raw files that yield no rating or no title (empty, or every line skipped) are an error, and nothing is written.
The folder is written under a temporary name in ``DIR`` and renamed into place, so a failed or interrupted
preparation leaves nothing half-written (and an earlier preparation untouched). The filters are applied at load
time (`make_dataset`), so ``positive_threshold`` / ``min_user_positives`` stay options of `load_dataset`.

The data dir is, in order: the ``data_dir`` option, ``$BENCH_DATA_DIR``, ``runs/data`` (relative to the working
directory). The pipeline passes ``data.raw_path`` as the ``raw_path`` option: a prepared folder (one holding a
``manifest.json``) is read as such; any other path is parsed as raw files on every load (no cache).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .datasets import DATASETS, make_dataset
from .permissions import honour_umask
from .registry import Registry
from .types import Dataset

FORMAT_VERSION = 1
DEFAULT_DATA_DIR = Path("runs") / "data"


class NotPreparedError(FileNotFoundError):
    """A dataset whose canonical cache is missing; the message gives the command that makes it."""


@dataclass
class RawData:
    interactions: pd.DataFrame
    titles: dict[int, str]
    files: list[Path]
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RawSpec:
    name: str
    reader: Callable[[Path], RawData]
    positive_threshold: float
    min_user_positives: int
    paper_rule: str
    expected: str  # what --raw must point to
    paper_table2: tuple[int, int, int]  # (#sequence, #items, #interactions) in the paper's Table 2
    implicit_rating: float | None = None  # a rating value that marks an interaction, not an opinion (BX: 0)


RAW_DATASETS: Registry[RawSpec] = Registry("raw dataset")


def data_dir(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        return Path(path)
    return Path(os.environ.get("BENCH_DATA_DIR") or DEFAULT_DATA_DIR)


def prepare_command(name: str, root: Path | None = None) -> str:
    spec = RAW_DATASETS.get(name)
    cmd = f"python -m bench data prepare --dataset {name} --raw {spec.expected}"
    return cmd + (f" --data-dir {root}" if root is not None and Path(root) != DEFAULT_DATA_DIR else "")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_raw(arrays: dict[str, np.ndarray], titles: dict[int, str]) -> str:
    h = hashlib.sha256()
    for key in ("user", "item", "timestamp", "rating"):
        a = arrays[key]
        a = a.astype("<f8") if key == "rating" else a.astype("<i8")
        h.update(key.encode() + b"\0" + np.int64(len(a)).astype("<i8").tobytes())
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps({str(k): titles[k] for k in sorted(titles)}, ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()


def _arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"user": frame["user"].to_numpy(dtype="int64"), "item": frame["item"].to_numpy(dtype="int64"),
            "timestamp": frame["timestamp"].to_numpy(dtype="int64"),
            "rating": frame["rating"].to_numpy(dtype="float64")}


def prepare(name: str, raw: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Parse ``raw`` with the reader of ``name`` and write the canonical cache ``root/name`` atomically."""
    spec = RAW_DATASETS.get(name)
    return write_prepared(name, spec.reader(Path(raw)), raw, root)


def write_prepared(name: str, data: RawData, raw: str | os.PathLike, root: str | os.PathLike | None = None,
                   extra: dict | None = None) -> Path:
    """Write ``data`` as the canonical cache ``root/name`` atomically; ``extra`` adds manifest keys (a custom
    dataset's reading settings, `splits.custom`)."""
    root = data_dir(root)
    if len(data.interactions) == 0 or not data.titles:
        what = "titles" if not data.titles else "ratings"
        skipped = data.info.get("skipped_lines")
        raise ValueError(f"{name}: no {what} read from {', '.join(str(p) for p in data.files)} (empty, truncated or "
                         f"not in the published format/encoding?{f' skipped lines: {skipped}' if skipped else ''}); "
                         f"nothing prepared")
    arrays = _arrays(data.interactions)
    manifest = {
        "dataset": name,
        "format_version": FORMAT_VERSION,
        "raw_files": {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in data.files},
        "raw_path": str(Path(raw).resolve()),
        "info": data.info,
        "counts": {"interactions": len(data.interactions), "users": int(np.unique(arrays["user"]).size),
                   "items": int(np.unique(arrays["item"]).size), "titles": len(data.titles)},
        "fingerprint": fingerprint_raw(arrays, data.titles),
        **(extra or {}),
    }
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        np.savez_compressed(tmp / "interactions.npz", **arrays)
        (tmp / "titles.json").write_text(json.dumps({str(k): v for k, v in sorted(data.titles.items())},
                                                    ensure_ascii=False), encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        honour_umask(tmp)  # mkdtemp makes it 0700
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=root))
            os.rename(target, old / name)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def is_prepared(folder: Path) -> bool:
    return (folder / "manifest.json").is_file()


def read_prepared(name: str, folder: Path, rerun: str | None = None) -> RawData:
    """Read a prepared folder back into a `RawData`, checking its format version and fingerprint; ``rerun`` is the
    command that remakes it (default: that of the registered raw dataset ``name``)."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("dataset") != name:
        raise ValueError(f"{folder}: prepared for {manifest.get('dataset')!r}, not {name!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder}: format version {manifest.get('format_version')}, expected {FORMAT_VERSION}; "
                         f"re-run: {rerun or prepare_command(name, folder.parent)}")
    with np.load(folder / "interactions.npz") as npz:
        arrays = {k: npz[k] for k in ("user", "item", "timestamp", "rating")}
    titles = {int(k): v for k, v in json.loads((folder / "titles.json").read_text(encoding="utf-8")).items()}
    if fingerprint_raw(arrays, titles) != manifest["fingerprint"]:
        raise ValueError(f"{folder}: contents do not match the manifest's fingerprint (corrupted?); "
                         f"re-run: {rerun or prepare_command(name, folder.parent)}")
    info = {**manifest["info"], "prepared": str(folder), "prepared_fingerprint": manifest["fingerprint"]}
    return RawData(pd.DataFrame(arrays), titles, [], info)


def load_raw(name: str, raw_path: str | os.PathLike | None = None,
             data_dir_: str | os.PathLike | None = None) -> RawData:
    spec = RAW_DATASETS.get(name)
    if raw_path is not None:
        path = Path(raw_path)
        return read_prepared(name, path) if is_prepared(path) else spec.reader(path)
    root = data_dir(data_dir_)
    folder = root / name
    if not is_prepared(folder):
        raise NotPreparedError(f"dataset {name!r} is not prepared in {root}/ (no {folder / 'manifest.json'}); "
                               f"run: {prepare_command(name, data_dir_ and root)}")
    return read_prepared(name, folder)


def register_raw(spec: RawSpec) -> RawSpec:
    """Register ``spec`` as a raw dataset and its loader in `DATASETS`."""
    RAW_DATASETS.add(spec.name, spec)

    def load(raw_path: str | None = None, data_dir: str | None = None,
             positive_threshold: float = spec.positive_threshold,
             min_user_positives: int = spec.min_user_positives) -> Dataset:
        data = load_raw(spec.name, raw_path, data_dir)
        return make_dataset(spec.name, data.interactions, data.titles, positive_threshold, min_user_positives,
                            info={**data.info, "paper_rule": spec.paper_rule,
                                  "implicit_rating": spec.implicit_rating})

    load.__doc__ = f"Load {spec.name} from its prepared cache (or raw files with ``raw_path``)."
    DATASETS.add(spec.name, load)
    return spec


class LineError(ValueError):
    """A malformed line of a raw file, named as ``path:line``."""

    def __init__(self, path: Path, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")


def json_objects(path: Path):
    """(line number, object) of each non-blank line of a JSON-lines file; a line that is not UTF-8 or not a JSON
    object is a `LineError` naming it."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:  # published files are UTF-8: another encoding is a wrong file
                raise LineError(path, n, f"not UTF-8 ({err.reason} at byte {err.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise LineError(path, n, f"not JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise LineError(path, n, "not a JSON object")
            yield n, obj
