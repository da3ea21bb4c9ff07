"""The grid runner: group the cells of the chosen tables, take this shard's groups, skip finished cells, lock each
group, and run the missing methods of a group in one `bench.pipeline.run` call (one SFT model, loaded once).

* Groups: cells sharing (dataset, shift, seed, overrides); their methods share the cached SFT model.
* Shards: groups sorted by id; shard i of n (0 <= i < n) takes groups i, i+n, i+2n, ... -- disjoint and complete,
  and stable because it is computed over all groups, finished or not.
* Resume: a cell is finished when a record with its identity exists (`records`); `pipeline.run` writes each
  method's record as soon as it is scored, so an interrupted group loses at most the method in progress.
* Concurrency: a group is run under `locks.GroupLock` (results_dir/.locks/<group>.lock); a runner that finds a
  live lock skips the group, and finished cells are re-checked after the lock is taken. A group whose SFT family
  (the groups that differ only in method-level overrides, e.g. Table 8's beta sweep) is held by another runner is
  put off to the end of this runner's list once, so two runners starting together do not train one SFT model
  twice. Families are seen among this runner's own groups (all of them without --shard).
* Methods not registered in this checkout (a grid row whose method is not written yet) are reported
  and skipped, never fatal; a group that fails is logged and the runner goes on with the next.
"""
from __future__ import annotations

import hashlib
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.leaderboard.grids import GridCell
from bench.leaderboard.locks import DEFAULT_STALE_AFTER, GroupLock
from bench.leaderboard.records import RecordIndex, cell_config, cell_identity
from methods.train.cache import remove_stale_temporaries


SFT_SECTIONS = ("backbone", "sft", "data", "seed", "device")  # overrides that change a group's SFT model


@dataclass
class Group:
    dataset: str
    shift: str
    seed: int
    overrides: tuple[str, ...]
    cells: list[GridCell] = field(default_factory=list)

    @property
    def id(self) -> str:
        tail = ""
        if self.overrides:
            tail = "-" + hashlib.sha256("\n".join(self.overrides).encode()).hexdigest()[:8]
        return f"{self.dataset}.{self.shift}.seed{self.seed}{tail}".replace("/", "_")

    @property
    def sft_family(self) -> tuple:
        """Groups of one family train the same SFT model: they differ only in method-level overrides."""
        return (self.dataset, self.shift, self.seed,
                tuple(o for o in self.overrides if o.split("=", 1)[0].split(".", 1)[0] in SFT_SECTIONS))

    def describe(self) -> str:
        sets = f" [{', '.join(self.overrides)}]" if self.overrides else ""
        return f"{self.dataset}/{self.shift} seed {self.seed}{sets}"


def group_cells(cells: list[GridCell]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for cell in sorted(set(cells)):
        groups.setdefault(cell.group, Group(*cell.group)).cells.append(cell)
    return sorted(groups.values(), key=lambda g: g.id)


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def shard(groups: list[Group], i: int, n: int) -> list[Group]:
    return sorted(groups, key=lambda g: g.id)[i::n]


@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)          # "group: method" strings
    done: int = 0                                          # cells already finished
    locked: list[str] = field(default_factory=list)       # groups held by another runner
    unavailable: dict[str, str] = field(default_factory=dict)  # method -> why
    failed: dict[str, str] = field(default_factory=dict)  # group -> error

    def lines(self) -> list[str]:
        out = [f"ran {len(self.ran)} cells, {self.done} already finished, {len(self.locked)} groups locked by "
               f"another runner, {len(self.failed)} groups failed"]
        out += [f"  not registered: {m} ({why})" for m, why in sorted(self.unavailable.items())]
        out += [f"  locked: {g}" for g in self.locked]
        out += [f"  failed: {g}: {e}" for g, e in self.failed.items()]
        return out


class GridRunner:
    def __init__(self, profile: str, results_dir: str | Path, cache_dir: str | Path | None = None,
                 extra_sets: list[str] = (), log: Callable[[str], None] = print, run_fn: Callable | None = None,
                 stale_after: float = DEFAULT_STALE_AFTER):
        self.profile, self.results_dir, self.extra_sets, self.log = profile, Path(results_dir), list(extra_sets), log
        self.cache_dir = cache_dir
        self.run_fn, self.stale_after = run_fn, stale_after

    def identity(self, cell: GridCell) -> str | None:
        return cell_identity(self.profile, cell, self.extra_sets)

    def missing(self, group: Group, index: RecordIndex, summary: Summary | None = None) -> list[GridCell]:
        """Cells of the group with no record yet (and a registered method)."""
        todo = []
        for cell in group.cells:
            ident = self.identity(cell)
            if ident is None:
                if summary is not None:
                    summary.unavailable[cell.method] = "not in `python -m bench ls`"
            elif index.get(ident) is None:
                todo.append(cell)
            elif summary is not None:
                summary.done += 1
        return todo

    def lock(self, group: Group) -> GroupLock:
        return GroupLock(self.results_dir / ".locks" / f"{group.id}.lock", self.stale_after)

    def config(self, group: Group, cells: list[GridCell]):
        cfg = cell_config(self.profile, cells[0], self.extra_sets, [c.method for c in cells])
        cfg.results_dir = str(self.results_dir)
        if self.cache_dir is not None:
            cfg.cache_dir = str(self.cache_dir)
        return cfg

    def busy_family(self, group: Group, groups: list[Group]) -> Group | None:
        """Another group of `group`'s SFT family that a live runner holds (it may be training their SFT model)."""
        for other in groups:
            if other.id != group.id and other.sft_family == group.sft_family:
                lock = self.lock(other)
                if lock.path.exists() and not lock.is_stale():
                    return other
        return None

    def clean_temporaries(self, records_hours: float = 1.0, cache_hours: float = 12.0) -> None:
        """Remove the temporaries of writers killed mid-write (a record's `.NAME.json.XXXX.tmp`, a cache entry's
        `.TAG.XXXX` folder): they never become results, but an 8B model's half-saved folder is large."""
        gone = remove_stale_temporaries(self.results_dir, "*/*/.*.json.*.tmp", records_hours)
        if self.cache_dir is not None:  # an entry's temporaries sit beside it, never inside it
            for kind in ("sft", "tokenizers", "base", "fits"):
                gone += remove_stale_temporaries(Path(self.cache_dir) / kind, ".*", cache_hours)
        if gone:
            self.log(f"removed {len(gone)} temporaries left by interrupted writers: "
                     + ", ".join(p.name for p in gone[:5]) + (" ..." if len(gone) > 5 else ""))

    def run(self, groups: list[Group], dry_run: bool = False) -> Summary:
        """Run the missing cells group by group. A group whose SFT family another runner is working on is put off to
        the end once (the SFT model is cached by then, or at least this runner did other work meanwhile), so
        runners sharing a folder do not train the same SFT model side by side."""
        summary = Summary()
        if not dry_run:
            self.clean_temporaries()
        index = RecordIndex.load(self.results_dir)
        queue = deque(enumerate(groups, 1))
        deferred: set[str] = set()
        while queue:
            n, group = queue.popleft()
            todo = self.missing(group, index, summary)
            head = f"group {n}/{len(groups)} {group.describe()}"
            if not todo:
                continue
            names = [c.method for c in todo]
            if dry_run:
                self.log(f"{head}: would run {', '.join(names)}")
                continue
            busy = self.busy_family(group, groups) if group.id not in deferred else None
            if busy is not None and queue:
                self.log(f"{head}: put off, another runner holds {busy.describe()} (same SFT model)")
                deferred.add(group.id)
                queue.append((n, group))
                continue
            with self.lock(group) as lock:
                if not lock.acquire():
                    self.log(f"{head}: locked by another runner ({lock.owner()}), skipped")
                    summary.locked.append(group.id)
                    continue
                fresh = RecordIndex.load(self.results_dir / group.dataset / group.shift)
                todo = self.missing(group, fresh)
                if not todo:
                    continue
                names = [c.method for c in todo]
                self.log(f"{head}: running {', '.join(names)}")
                try:
                    self._run_fn()(self.config(group, todo), names, self.log)
                    summary.ran += [f"{group.id}: {m}" for m in names]
                except Exception as err:  # one failing group must not stop a grid of hours
                    self.log(f"{head}: failed: {err!r}\n{traceback.format_exc()}")
                    summary.failed[group.id] = repr(err)
        return summary

    def _run_fn(self) -> Callable:
        if self.run_fn is None:
            from bench.pipeline import run
            self.run_fn = run
        return self.run_fn
