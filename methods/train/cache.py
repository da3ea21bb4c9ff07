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


def remove_stale_temporaries(folder: Path, pattern: str, older_than_hours: float) -> list[Path]:
    """Delete what a killed writer left behind: the paths `folder.glob(pattern)` finds whose last change is older than
    `older_than_hours` (a live writer's temporary is younger). Returns what was removed."""
    cutoff = time.time() - older_than_hours * 3600
    removed = []
    for path in sorted(Path(folder).glob(pattern)) if Path(folder).is_dir() else []:
        try:
            if path.lstat().st_mtime >= cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except FileNotFoundError:  # another process cleaned it meanwhile
            continue
    return removed


def weights_problem(path: Path) -> str | None:
    """What is wrong with a saved model folder (`save_pretrained`: full weights or a LoRA adapter), or None: a
    config and safetensors files whose headers read (a truncated file fails)."""
    from safetensors import safe_open

    weights = sorted(path.glob("*.safetensors"))
    if not weights or not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
        return "no weights or no config"
    for file in weights:
        with safe_open(str(file), framework="pt"):
            pass
    return None
