"""Atomic installation of a saved model or tokenizer folder in a cache shared by concurrent processes."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from splits.permissions import honour_umask


def save_atomically(obj, path: Path, valid: Callable[[Path], bool] | None = None) -> None:
    """`obj.save_pretrained` into a temporary sibling, then rename: a reader never sees a half-written folder.

    If `path` exists at the rename, it is kept when `valid(path)` (another process sharing the cache saved the same
    entry meanwhile, and readers may be loading it), and otherwise (the corrupt entry the caller is replacing) it is
    renamed away first: an entry is never deleted in place, so `path` is missing for two renames at most.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    graves = []
    try:
        obj.save_pretrained(tmp)
        honour_umask(tmp)  # mkdtemp makes it 0700; a cache shared by a group must stay readable
        for _ in range(3):
            try:
                os.rename(tmp, path)  # atomic; fails while `path` is a non-empty folder
                return
            except OSError:
                if not path.exists():
                    raise
            if valid is not None and valid(path):
                return
            graves.append(path.with_name(f".{path.name}.old-{os.getpid()}-{time.time_ns()}"))
            try:
                os.rename(path, graves[-1])
            except FileNotFoundError:  # another process moved it meanwhile: try again
                pass
        # still there after three tries: other processes keep installing the entry; theirs is as good as ours
    finally:
        for leftover in [tmp, *graves]:
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
