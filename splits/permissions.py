"""Modes for files and folders written atomically through `tempfile` (which makes them 0600 / 0700): after the
rename they get the mode a plain ``open()`` / ``mkdir()`` would give, 0666 / 0777 less the process umask, so a
results folder or cache shared by a group on a cluster is readable by the group (umask 0002 or 0022)."""
from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; set it straight back
    os.umask(mask)
    return mask


def honour_umask(path: str | Path) -> None:
    """chmod `path` (a file, or a folder and everything in it) as if it had been created without `tempfile`."""
    mask = current_umask()
    path = Path(path)
    targets = [path, *path.rglob("*")] if path.is_dir() else [path]
    for target in targets:
        os.chmod(target, (0o777 if target.is_dir() else 0o666) & ~mask)
