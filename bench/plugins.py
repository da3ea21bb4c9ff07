"""Code from outside the checkout that registers methods, shifts, dataset formats, ranking protocols or losses.

Two ways in, both loaded by every `python -m bench` command before it reads its arguments:

* an installed package's entry point in the group ``dpo_shift_bench.plugins`` (its `pyproject.toml`:
  ``[project.entry-points."dpo_shift_bench.plugins"] mine = "my_package.bench_plugin"``): a module, imported, or a
  ``module:function``, called with no arguments;
* ``--include MODULE`` (repeatable, or comma-separated): any importable module, e.g. a file next to the command.

The included modules are written to ``$BENCH_INCLUDE`` (comma-separated), which every process the harness starts
inherits (`accelerate launch`, submitit's local and SLURM jobs: `bench.leaderboard.launch`) and loads in turn; a
registered outside method then gets the harness's rules unchanged.
"""
from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

GROUP = "dpo_shift_bench.plugins"
ENV = "BENCH_INCLUDE"
BUILTIN = ("splits", "methods", "bench")


class PluginError(ImportError):
    """An included module or an entry point that cannot be loaded; the message names it."""


def split_modules(values: list[str] | str | None) -> list[str]:
    """`["a,b", "c"]` or `"a,b"` -> `["a", "b", "c"]`, in order, each once."""
    items = [values] if isinstance(values, str) else list(values or [])
    out: list[str] = []
    for item in items:
        out += [m.strip() for m in item.split(",") if m.strip() and m.strip() not in out]
    return out


def requested(argv: list[str]) -> list[str]:
    """The modules of every `--include` in `argv` (`--include a,b`, `--include=a`), read before the full parser
    exists, so that what they register is known to it (choices in help, `--methods`, `--shift`)."""
    found = []
    for i, arg in enumerate(argv):
        if arg == "--include" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--include="):
            found.append(arg.split("=", 1)[1])
    return split_modules(found)


def load(include: list[str] | None = None) -> list[str]:
    """Load the entry points of `GROUP`, then `$BENCH_INCLUDE` and `include`; export the included modules in
    `$BENCH_INCLUDE` for child processes. Returns the included module names."""
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            loaded = ep.load()
            if callable(loaded):
                loaded()
        except Exception as err:  # noqa: BLE001 - any failure of outside code is reported with its name
            raise PluginError(f"plugin entry point {ep.name!r} ({ep.value}, group {GROUP}): {err}") from err
    modules = split_modules([os.environ.get(ENV, ""), *(include or [])])
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise PluginError(f"--include {name}: {err}") from err
        except Exception as err:  # noqa: BLE001
            raise PluginError(f"--include {name}: importing it failed: {type(err).__name__}: {err}") from err
    if modules:
        os.environ[ENV] = ",".join(modules)
    return modules


def origin(obj) -> str | None:
    """The module an outside registration comes from (None for the harness's own)."""
    module = getattr(obj, "__module__", None) or ""
    return None if module.split(".")[0] in BUILTIN else module
