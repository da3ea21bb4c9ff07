"""Content fingerprints of datasets and splits (the sha256 of the ids).

The hash is taken over fixed-width little-endian numbers in a canonical row order, never over pandas' own
serialisation, so it does not depend on the pandas version, on the frames' row order or on their dtypes' widths.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np
import pandas as pd


def _update(h: "hashlib._Hash", label: str, rows: np.ndarray) -> None:
    h.update(label.encode() + b"\0")
    h.update(np.int64(len(rows)).astype("<i8").tobytes())
    h.update(np.ascontiguousarray(rows).tobytes())


def fingerprint_split(parts: Mapping[str, pd.DataFrame]) -> str:
    """sha256 over each part's (name, interaction index, user, item), parts by name, rows sorted by those ids."""
    h = hashlib.sha256()
    for name in sorted(parts):
        df = parts[name]
        rows = np.column_stack([
            df.index.to_numpy(dtype="int64"),
            df["user"].to_numpy(dtype="int64"),
            df["item"].to_numpy(dtype="int64"),
        ]).astype("<i8")
        rows = rows[np.lexsort(rows.T[::-1])]
        _update(h, name, rows)
    return h.hexdigest()


def fingerprint_frame(df: pd.DataFrame) -> str:
    """sha256 over (index, user, item, timestamp, positive) and the ratings of an interactions frame, by index."""
    order = np.argsort(df.index.to_numpy(dtype="int64"), kind="stable")
    ids = np.column_stack([
        df.index.to_numpy(dtype="int64"),
        df["user"].to_numpy(dtype="int64"),
        df["item"].to_numpy(dtype="int64"),
        df["timestamp"].to_numpy(dtype="int64"),
        df["positive"].to_numpy(dtype="int64"),
    ]).astype("<i8")[order]
    h = hashlib.sha256()
    _update(h, "ids", ids)
    _update(h, "rating", df["rating"].to_numpy(dtype="float64").astype("<f8")[order])
    return h.hexdigest()
