"""A dataset format from outside the harness, as a user's own module registers one: tab-separated files
(`tests/splits/test_dataset_formats.py` loads it by import and by ``--include tests.splits.tsv_format``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from splits.formats import FORMATS, TableFormat, line_from_index


def read_tsv(path: Path) -> pd.DataFrame:
    """A header row, then one record a line; every cell text; the index is each record's line (header: line 1)."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    frame.index = np.arange(len(frame)) + 2
    return frame


FORMATS.add("tsv", TableFormat(read_tsv, line_from_index, help="tab-separated, a header row"))
