"""Which record belongs to which cell, without training anything.

`bench.pipeline.run` keys a record by ``record_key({method, hyperparameters, config minus volatile fields,
split fingerprint})``. The fingerprint needs the split to be built; everything else is known from the profile and
the cell. A cell's *identity* is that same hash without the fingerprint (the fingerprint is a function of the
dataset files, the shift and the split seed, all in the config), computed the same way from a cell (expected) and
from a record (found). `pipeline_key(record)` recomputes the pipeline's own key from a record; a test checks it
against real records so the two computations cannot drift apart silently.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path

from bench.config import SECTIONS, RunConfig, apply_overrides, load_profile
from bench.leaderboard.grids import GridCell
from bench.pipeline import record_key_for, stable_config, stable_hyperparameters
from bench.results import read_records, record_key


def identity(method: str, hyperparameters: dict, config: dict) -> str:
    return record_key({"method": method, "hyperparameters": stable_hyperparameters(method, hyperparameters),
                       "config": stable_config(config)})


def record_identity(record: dict) -> str:
    return identity(record["method"], record["hyperparameters"], record["config"])


def pipeline_key(record: dict) -> str:
    """The key `bench.pipeline.run` gave this record, recomputed from its fields."""
    return record_key_for(record["method"], record["hyperparameters"], record["config"], record["split_fingerprint"])


def cell_config(profile: str, cell: GridCell, extra_sets: list[str] = (), method_names: list[str] | None = None
                ) -> RunConfig:
    """The run configuration of a cell: the profile, the cell's dataset/shift/seed/overrides, then `extra_sets`.

    `method_names` (default: the cell's method) routes `<method>.<field>=...` assignments to method overrides.
    """
    names = method_names or [cell.method]
    cfg = copy.deepcopy(profile_config(profile))
    mine = [s for s in extra_sets if not _other_methods_setting(s, names)]
    sets = [f"data.dataset={cell.dataset}", f"data.shift={cell.shift}", f"seed={cell.seed}", *cell.overrides, *mine]
    return apply_overrides(cfg, sets, names)


def _other_methods_setting(assignment: str, method_names: list[str]) -> bool:
    """`dpo.beta=0.2` given to a grid concerns only dpo cells: a section that is no config section nor ours."""
    key = assignment.split("=", 1)[0]
    head = key.split(".", 1)[0]
    return "." in key and head not in SECTIONS and head not in method_names


@functools.lru_cache(maxsize=8)
def profile_config(name: str) -> RunConfig:
    """The loaded profile, cached: read it, never change it (copy it first)."""
    return load_profile(name)


def cell_identity(profile: str, cell: GridCell, extra_sets: list[str] = ()) -> str | None:
    """The identity of the cell's record, or None when the method is not registered (yet)."""
    import methods
    from splits.registry import UnknownNameError

    cfg = cell_config(profile, cell, extra_sets)
    try:
        method = methods.resolve(cell.method, cfg.method_overrides.get(cell.method))
    except UnknownNameError:
        return None
    return identity(cell.method, dataclasses.asdict(method.config), cfg.to_dict())


class RecordIndex:
    """All records under a results folder by identity; the newest record wins where several share one."""

    def __init__(self, records: list[dict]):
        self.by_identity: dict[str, dict] = {}
        for rec in sorted(records, key=lambda r: str(r.get("created", ""))):
            try:
                self.by_identity[record_identity(rec)] = rec
            except (KeyError, TypeError):
                continue  # not a run record

    @classmethod
    def load(cls, results_dir: str | Path) -> "RecordIndex":
        return cls(read_records(results_dir))

    def get(self, ident: str | None) -> dict | None:
        return self.by_identity.get(ident) if ident else None

    def __len__(self) -> int:
        return len(self.by_identity)
