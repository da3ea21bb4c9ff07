"""Command line: `python -m bench run ...`, `python -m bench ls` and `python -m bench data ...` (bench.data_cli).

Bad input (an unknown method, shift, dataset, profile or `--set` key, a wrong value type, a missing model file, a
results folder that cannot be written) is reported on stderr as one `error:` line naming the input, with a non-zero
exit and nothing written (status 2; 1 for a training run stopped by a non-finite loss, whose message names the step).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from tabulate import tabulate

from bench.plugins import origin

METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20", "valid_ratio")


def log(message: str) -> None:
    if os.environ.get("RANK", "0") != "0":  # under `accelerate launch` only the main process talks
        return
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    from bench.config import PROFILES
    from methods.ranking import PROTOCOLS
    from splits import SHIFTS

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and score methods on one shift")
    r.add_argument("--methods", required=True, help="comma-separated method names (see `ls`)")
    r.add_argument("--shift", help=f"{', '.join(SHIFTS.names())} (default: the profile's)")
    r.add_argument("--dataset", help="dataset name (default: the profile's)")
    r.add_argument("--profile", default="tiny", help=f"{', '.join(PROFILES.names())} (default: tiny)")
    r.add_argument("--seed", type=int, help="training seed (the split seed is data.split_seed)")
    r.add_argument("--ranking", help=f"ranking protocol: {', '.join(PROTOCOLS.names())} (default: the profile's)")
    r.add_argument("--negatives", type=int, help="rejected responses per prompt for preference methods")
    r.add_argument("--retrain", action="store_true",
                   help="train every method again instead of ranking its cached fit (<cache>/fits/; a fit is "
                        "cached under everything that shaped it except the ranking settings)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile value (data.shift=iid, sft.epochs=2, causaldpo.mmd_weight=0.5)")
    ls = sub.add_parser("ls", help="list datasets, shifts, methods, ranking protocols and profiles; "
                                   "`ls METHOD` shows a method's paper and hyperparameters")
    ls.add_argument("method", nargs="?", help="a method name: its paper, and its config fields with types, defaults "
                                              "and help (`--set METHOD.FIELD=VALUE` overrides one)")
    from bench import data_cli
    data_commands = data_cli.add_parser(sub)
    from bench.leaderboard import command as leaderboard_command
    leaderboard_command.add_parsers(sub)
    from bench.planner import command as plan_command
    plan_command.add_parser(sub)
    from bench.leaderboard import pair
    pair.add_parser(sub)
    for command in [sub.choices[name] for name in ("run", "ls", "leaderboard", "compare", "plan")] + data_commands:
        command.add_argument(
            "--include", action="append", default=[], metavar="MODULE",
            help="import MODULE first (repeatable or comma-separated): a module of yours that registers methods, "
                 "shifts, dataset formats or ranking protocols; passed on to every process the command starts")
    return p


def main(argv: list[str] | None = None) -> int:
    from bench import plugins

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        plugins.load(plugins.requested(argv))  # before the parser: what they register is known to it
    except (plugins.PluginError, ValueError) as err:  # ValueError: a name registered twice
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from bench.backbone import BackboneError
    from methods.hparams import ConfigError
    from splits.registry import UnknownNameError

    try:
        if args.command == "ls":
            return describe_method(args.method) if args.method else list_registries()
        if args.command == "data":
            from bench import data_cli
            return data_cli.main(args)
        if args.command in ("leaderboard", "compare"):
            from bench.leaderboard import command as leaderboard_command
            return getattr(leaderboard_command, args.command)(args, log)
        if args.command == "pair":
            from bench.leaderboard import pair
            return pair.pair_command(args, log)
        if args.command == "plan":
            from bench.planner import command as plan_command
            return plan_command.plan_command(args, log)
        return run_command(args)
    except (UnknownNameError, ConfigError, BackboneError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # methods.train.preference_trainer.NonFiniteLoss, the SFT loss: "... at step N"
        print(f"error: {err}", file=sys.stderr)
        return 1


def backbone_names() -> list[str]:
    import importlib.util

    from bench.backbone import TINY, WHEELS

    wheels = [name + ("" if importlib.util.find_spec(w.package) else f" [not installed: {w.install}]")
              for name, w in WHEELS.items()]
    return [*TINY, *wheels]


def _named(registry) -> list[str]:
    """A registry's names, an outside registration followed by its module."""
    return [name + (f" [from {origin(registry.get(name))}]" if origin(registry.get(name)) else "")
            for name in registry.names()]


def list_registries() -> int:
    import methods
    from bench.config import PROFILES
    from methods.ranking import PROTOCOLS
    from splits import DATASETS, SHIFTS

    print("datasets:  ", ", ".join(_named(DATASETS)))
    print("shifts:    ", ", ".join(_named(SHIFTS)))
    print("protocols: ", ", ".join(_named(PROTOCOLS)))
    print("profiles:  ", ", ".join(PROFILES.names()))
    print("backbones: ", ", ".join(backbone_names()), "(or a Hugging Face model id, local folder or .gguf file)")
    print("methods:")
    width = max(len(n) for n in methods.METHODS.names())
    for name in methods.METHODS.names():
        cls = methods.METHODS.get(name)
        paper, source = cls.paper, origin(cls)
        print(f"  {name:<{width}} {paper.title}" + (f" (arXiv {paper.arxiv})" if paper.arxiv else "")
              + (f" [from {source}]" if source else ""))
    print("  <name>+causal  any pairwise preference method with CausalDPO's regularizer")
    return 0


def describe_method(name: str) -> int:
    import methods
    from methods.hparams import describe_fields

    cls = methods.method_class(name)
    paper = cls.paper
    print(f"{name}: {paper.title}" + (f" (arXiv {paper.arxiv})" if paper.arxiv else ""))
    defined = methods.method_class(name.removesuffix("+causal")) if name.endswith("+causal") else cls
    print(f"  module: {defined.__module__}" + (" (registered from outside the harness)" if origin(defined) else ""))
    if paper.note:
        print(f"  {paper.note}")
    rows = describe_fields(cls.Config)
    if not rows:
        print("no hyperparameters")
        return 0
    print(f"\nhyperparameters (--set {name}.FIELD=VALUE):")
    print(tabulate(rows, headers=["field", "type", "default", "help"], maxcolwidths=[None, None, 16, 72]))
    return 0


def run_command(args) -> int:
    import methods
    from bench.config import apply_overrides, load_profile, pair_dataset
    from methods.hparams import ConfigError
    from methods.ranking import PROTOCOLS
    from splits import DATASETS, SHIFTS

    cfg = load_profile(args.profile)
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    if not names:
        raise ValueError("--methods is empty")
    for name in names:
        methods.method_class(name)
    flags = [f"data.shift={args.shift}" if args.shift else None, f"data.dataset={args.dataset}" if args.dataset
             else None, f"seed={args.seed}" if args.seed is not None else None,
             f"ranking.protocol={args.ranking}" if args.ranking else None,
             f"preference.negatives={args.negatives}" if args.negatives is not None else None]
    apply_overrides(cfg, [f for f in flags if f] + args.set, names)
    pair_dataset(cfg, dataset_given=bool(args.dataset) or any(s.startswith("data.dataset=") for s in args.set))
    SHIFTS.get(cfg.data.shift)
    DATASETS.get(cfg.data.dataset)
    PROTOCOLS.get(cfg.ranking.protocol)
    if cfg.preference.negatives < 1:
        raise ConfigError(f"preference.negatives (--negatives) must be at least 1, got {cfg.preference.negatives}")
    for name in names:
        method = methods.resolve(name, cfg.method_overrides.get(name))
        own = getattr(method.config, "negatives", None)
        if own is not None and own < 1:
            raise ConfigError(f"--set {name}.negatives must be at least 1, got {own}")
        if method.shifts is not None and cfg.data.shift not in method.shifts:
            raise ConfigError(f"method {name!r} is defined for --shift {' or '.join(method.shifts)} only "
                              f"(got {cfg.data.shift!r})")

    from bench.pipeline import run
    from bench.results import check_writable

    check_writable(cfg.results_dir, "results_dir")  # before hours of training, not after
    log(f"run: {', '.join(names)} on {cfg.data.dataset}/{cfg.data.shift}, profile {cfg.profile}, seed {cfg.seed}")
    records = run(cfg, names, log, reuse_fits=not args.retrain)
    if os.environ.get("RANK", "0") == "0":
        print_table(records)
    return 0


def print_table(records: list[dict]) -> None:
    rows = []
    for rec in records:
        for part, res in rec["results"].items():
            m = res["metrics"]
            rows.append([rec["method"], part, *[m[k] for k in METRICS], res["samples"],
                         rec.get("seconds_per_epoch")])
    print(tabulate(rows, headers=["method", "test", *METRICS, "samples", "s/epoch"], floatfmt=".4f"))
