"""One lock file per cell group, so that two grid runners on one results folder never train the same group.

The lock is created with O_CREAT | O_EXCL (atomic on local and NFSv3+ file systems) and holds the owner's host,
pid and start time as JSON. A lock is stale, and is broken, when its owner ran on this host and that pid is gone,
or when it is older than `stale_after` seconds (runners on other hosts cannot be probed), or when it names the
scheduler job this process belongs to (a requeued SLURM job keeps its id: the lock is its own earlier attempt's). Breaking renames the
file away (atomic) and checks that what it moved is the stale lock it judged; if another runner had meanwhile
broken it and taken a fresh lock, that lock is put back (os.link fails rather than overwrite), so two runners
breaking the same stale lock cannot both win.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

DEFAULT_STALE_AFTER = 24 * 3600.0


def job_id() -> str:
    """This process's scheduler job (SLURM array task or job id), '' outside one; a requeued job keeps it."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID", "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GroupLock:
    def __init__(self, path: str | Path, stale_after: float = DEFAULT_STALE_AFTER):
        self.path, self.stale_after, self.held = Path(path), stale_after, False

    def owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def is_stale(self) -> bool:
        owner = self.owner()
        if owner is None:  # unreadable or half-written: judge by the file's age
            try:
                return time.time() - self.path.stat().st_mtime > min(self.stale_after, 60.0)
            except OSError:
                return True
        if time.time() - float(owner.get("time", 0)) > self.stale_after:
            return True
        if owner.get("job") and owner.get("job") == job_id():
            return True
        return owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1)))

    def acquire(self) -> bool:
        """Take the lock; False when another live runner holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                seen = self._raw()
                if not self.is_stale():
                    return False
                self._break(seen)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "job": job_id()}, fh)
            self.held = True
            return True
        return False

    def _raw(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def _break(self, seen: bytes | None) -> None:
        grave = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{time.time_ns()}")
        try:
            os.replace(self.path, grave)
        except OSError:
            return  # another runner broke it first
        try:
            if grave.read_bytes() != seen and seen is not None:
                os.link(grave, self.path)  # not the lock we judged stale: put it back
        except OSError:
            pass
        finally:
            grave.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self) -> "GroupLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
