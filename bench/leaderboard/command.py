"""`python -m bench leaderboard` (run the missing cells of the paper's tables, then render them) and
`python -m bench compare` (print the regenerated tables next to the published ones).

    python -m bench leaderboard --profile tiny [--tables 1,3,fig2] [--seeds 0,1,2] [--shard 0/4]
                                [--results DIR] [--cache DIR] [--out DIR] [--dry-run | --render-only]
                                [--include MODULE] [--add-methods NAME,...]    # your own methods as extra rows
    python -m bench compare --profile tiny [--tables 1,5] [--seeds 0,1,2] [--results DIR]
"""
from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

DEFAULT_RESULTS = "runs/results"


def _common(p: argparse.ArgumentParser) -> None:
    from bench.config import PROFILES

    p.add_argument("--profile", default="tiny", help=f"{', '.join(PROFILES.names())} (default: tiny)")
    p.add_argument("--tables", help="comma-separated: 1..9, fig1, fig2, fig3, or all (default: tables 1-9, fig1, fig2)")
    p.add_argument("--seeds", help="training seeds, comma-separated (default: those of the profile's committed "
                                    "leaderboard: tiny 0,1,2; other profiles 0)")
    p.add_argument("--results", default=DEFAULT_RESULTS, help=f"records folder (default {DEFAULT_RESULTS})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value in every cell (device=cuda, sft.epochs=2, dpo.beta=0.2)")
    p.add_argument("--add-methods", help="comma-separated registered methods (yours: see --include) added as rows "
                                         "below the paper's in every method table")
    p.add_argument("--shifts", help="comma-separated: only these shifts' columns (default: all, or the profile's "
                                    "committed scope: small temporal,popularity)")
    p.add_argument("--methods", help="comma-separated: only these methods' rows, those a table lacks added as extra "
                                     "rows (default: the tables' rows, or the profile's committed scope)")


def add_parsers(sub) -> None:
    lb = sub.add_parser("leaderboard", help="run the missing cells of the paper's tables, then render them")
    _common(lb)
    lb.add_argument("--shard", help="i/n: run only groups i, i+n, ... of the sorted cell groups (0 <= i < n)")
    lb.add_argument("--cache", help="SFT/tokenizer cache folder (default: the profile's cache_dir)")
    lb.add_argument("--out", help="where the tables go (default leaderboards/<profile>)")
    lb.add_argument("--dry-run", action="store_true", help="list what would run; run and render nothing")
    lb.add_argument("--render-only", action="store_true", help="render the tables from existing records only")
    lb.add_argument("--stale-lock-hours", type=float, default=24.0, help="break group locks older than this")
    cl = lb.add_argument_group("cluster (submitit): one job per cell group, one job array per invocation")
    cl.add_argument("--launcher", choices=("slurm", "local"),
                    help="submit the groups as jobs: slurm (sbatch) or local (subprocesses here, waited for)")
    cl.add_argument("--logs", help="submitit folder for job scripts and logs (default <results>/.submitit)")
    cl.add_argument("--slurm-partition", help="SLURM partition")
    cl.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per job (>1: accelerate launch inside it)")
    cl.add_argument("--cpus-per-job", type=int, default=1, help="CPUs per job")
    cl.add_argument("--mem-gb", type=float, help="memory per job in GB")
    cl.add_argument("--time-min", type=int, default=24 * 60, help="time limit per job in minutes (then requeued)")
    cl.add_argument("--array-parallelism", type=int, default=256, help="jobs of the array running at once")
    cl.add_argument("--max-requeues", type=int, default=3, help="requeues per job after preemption or time-out")
    cl.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                    help="any other sbatch option, e.g. account=myproj, qos=high, constraint=a100 (repeatable)")
    cmp = sub.add_parser("compare", help="print the regenerated tables next to the published ones")
    _common(cmp)


def _setup(args):
    from bench.leaderboard.grids import LEADERBOARD_SCOPE, default_seeds, restrict, table_names
    from bench.leaderboard.records import profile_config

    for option, value in LEADERBOARD_SCOPE.get(args.profile, {}).items():  # the committed leaderboard's scope
        if getattr(args, option, None) is None:
            setattr(args, option, value)
    names = table_names(args.tables)
    if args.seeds is None:
        args.seeds = ",".join(map(str, default_seeds(args.profile)))
    try:
        seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds:
        raise ValueError("--seeds is empty")
    profile_config(args.profile)  # an unknown profile fails here, with "did you mean"
    args.added_methods = _added_methods(getattr(args, "add_methods", None))
    args.scope = (_names(getattr(args, "shifts", None)), _added_methods(getattr(args, "methods", None)) or None)
    names = restrict(names, *args.scope)
    if not names:
        raise ValueError(f"no table has a column of --shifts {args.shifts} and a row of --methods {args.methods} "
                         f"among --tables {args.tables}")
    check_sets(args.profile, args.set)
    return names, seeds


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] or None if text else None


def _added_methods(text: str | None) -> list[str]:
    """`--add-methods a,b`: each a registered method (did you mean), added as extra rows to the method tables."""
    import methods
    from bench.leaderboard.grids import add_method_rows

    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        methods.method_class(name)
    add_method_rows(names)
    return names


def check_sets(profile: str, sets: list[str]) -> None:
    """Every `--set` must name a config key or a registered method's hyperparameter, with a value of the right type,
    even when no cell of the chosen tables uses it: a grid passes `<method>.<key>=...` only to that method's cells,
    so a misspelt section would otherwise be ignored without a word."""
    import copy

    import methods
    from bench.config import SECTIONS, apply_overrides
    from bench.leaderboard.records import profile_config
    from methods.hparams import ConfigError
    from splits.registry import UnknownNameError

    cfg = copy.deepcopy(profile_config(profile))
    for text in sets:
        key = text.split("=", 1)[0]
        head = key.split(".", 1)[0]
        if "=" in text and "." in key and head not in SECTIONS:
            try:
                methods.method_class(head)
            except UnknownNameError as err:
                raise ConfigError(f"--set {text}: {head!r} is neither a config section ({', '.join(SECTIONS)}) "
                                  f"nor a method: {err}") from None
            apply_overrides(cfg, [text], [head])
            methods.resolve(head, cfg.method_overrides.get(head))
        else:
            apply_overrides(cfg, [text], [])


def leaderboard(args, log) -> int:
    from bench.leaderboard.grids import expand
    from bench.leaderboard.publish import publish
    from bench.leaderboard.records import profile_config
    from bench.leaderboard.runner import GridRunner, group_cells, parse_shard, shard

    names, seeds = _setup(args)
    cfg = profile_config(args.profile)
    i, n = parse_shard(args.shard)
    status = 0
    if not args.render_only:
        if not args.dry_run:
            from bench.results import check_writable
            check_writable(args.results, "--results")
        cells = expand(names, args.profile, seeds, cfg.data.dataset, cfg.backbone.name)
        groups = group_cells(cells)
        mine = shard(groups, i, n)
        log(f"leaderboard {args.profile}: {', '.join(names)}; seeds {seeds}; {len(cells)} cells in {len(groups)} "
            f"groups; shard {i}/{n}: {len(mine)} groups; records in {args.results}")
        runner = GridRunner(args.profile, args.results, args.cache, args.set, log,
                            stale_after=args.stale_lock_hours * 3600)
        if args.launcher and not args.dry_run:
            status = _launch(args, names, seeds, runner, mine, log)
            if args.launcher == "slurm":
                log(f"render the tables once the jobs are done: python -m bench leaderboard --profile "
                    f"{args.profile}" + (f" --tables {args.tables}" if args.tables else "")
                    + f" --seeds {args.seeds} --results {args.results} --render-only")
                return status
        else:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so a killed runner still releases its lock
            summary = runner.run(mine, dry_run=args.dry_run)
            for line in summary.lines():
                log(line)
            status = 1 if summary.failed else 0
            if args.dry_run:
                return status
    out = Path(args.out) if args.out else Path("leaderboards") / args.profile
    publish(names, args.profile, args.results, out, seeds, args.set, log)
    log(f"tables written to {out}")
    return status


def _launch(args, names, seeds, runner, groups, log) -> int:
    """Submit the groups with missing cells as one job array; with the local launcher, wait for them."""
    from bench.leaderboard import launch
    from bench.leaderboard.records import RecordIndex

    index = RecordIndex.load(args.results)
    todo = [g for g in groups if runner.missing(g, index)]
    if not todo:
        log("every cell has a record; nothing to submit")
        return 0
    res = launch.Resources(args.slurm_partition, args.gpus_per_job, args.cpus_per_job, args.mem_gb, args.time_min,
                           args.array_parallelism, args.max_requeues, launch.parse_extra(args.slurm_extra))
    from bench import plugins

    job = launch.GroupJob(args.profile, names, seeds, str(args.results), args.cache, args.set, args.gpus_per_job,
                          args.stale_lock_hours * 3600, plugins.split_modules(os.environ.get(plugins.ENV, "")),
                          args.added_methods, args.scope)
    folder = Path(args.logs) if args.logs else Path(args.results) / ".submitit"
    jobs = launch.submit(args.launcher, folder, res, job, [g.id for g in todo], log)
    if args.launcher == "slurm":
        return 0
    status = 0
    for group, submitted in zip(todo, jobs):
        try:
            for line in submitted.result():
                log(f"{group.describe()}: {line}")
        except Exception as err:  # noqa: BLE001 - a failed job is reported with its log, the others still count
            log(f"{group.describe()}: job {submitted.job_id} failed (logs in {folder}): {err}")
            status = 1
    return status


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def compare(args, log) -> int:
    from bench.leaderboard import datasets_table
    from bench.leaderboard.compare import compare_datasets, compare_table
    from bench.leaderboard.publish import build_tables
    from bench.leaderboard.records import RecordIndex, profile_config

    names, seeds = _setup(args)
    index = RecordIndex.load(args.results)
    log(f"compare {args.profile}: {len(index)} records in {args.results}")
    if "table2" in names:
        print(compare_datasets(datasets_table.dataset_rows(args.profile, profile_config(args.profile).data.dataset)))
    for table in build_tables(names, args.profile, index, seeds, args.set):
        if table.spec.paper_csv:
            print(compare_table(table))
    return 0
