"""Where the time of the README's main job goes: `python -m bench.perf.profile_run [--limit-train N] [--limit-test N]`.

Runs `python -m bench run --methods causaldpo,sprec --shift temporal` (the tiny profile; `--methods`, `--shift`,
`--profile`, `--set` change it) through `bench.cli.main`, with a temporary results folder and cache, so nothing of
the user's `runs/` is read or written and every stage is paid as in a fresh run (the tokenizer is trained, the SFT
model and reference log-probs computed). The pipeline is not reimplemented: its stage functions are wrapped for the
duration of the run (and restored after), each wrapper timing its call and profiling it with cProfile and
`torch.profiler` (CPU activities). A stage called inside another stage counts in the outer one.

| stage | wrapped |
|---|---|
| data + split | `load_dataset`, `build_split` |
| samples | `build_samples` |
| tokenizer + prompts | `load_tokenizer` (trains the tiny word-level tokenizer), `PreparedCell.encode` |
| SFT | `cached_sft` (the cell's shared SFT model) |
| load SFT model | `PreparedCell.sft_model` |
| reference pass | `cached_reference_logps` (loading the reference model included) |
| preference training | `methods.train.preference_trainer.train_preference`, wherever a method imported it |
| sprec: self-play generation | `PreparedCell.predict_top1` (trie-constrained greedy over the drawn training samples) |
| sprec: SFT step | `PreparedCell.sft_step` |
| ranking + metrics | `PreparedCell.evaluate` (full-catalogue likelihood ranking of the test samples) |

Printed: wall seconds and share of each stage (the rest of the run is "other"), then for the `--top` heaviest
stages the functions with the most cumulative time (cProfile) and the torch ops with the most self CPU time. Both
profilers slow the run (cProfile most where Python calls are many and small); `--profiler none` gives clean stage
times. Caps (`--limit-train` = data.max_train_samples, `--limit-test` = data.max_eval_samples, `--sft-epochs`)
shrink the job: SFT scales with the training samples, ranking with the test samples; `--limit-train 4096
--limit-test 500` keeps the preference stages as in the real job (`preference.max_pairs` 4096, SPRec's 2,048 draws),
a quarter of its ranking, and took 6 minutes on two busy cores. py-spy, where installed and allowed to attach,
samples the whole run with no instrumentation:
`py-spy record -o profile.svg -- python -m bench run --methods causaldpo,sprec --shift temporal`.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import methods.train.preference_trainer
from bench import cli, pipeline
from bench.pipeline import PreparedCell

ROOT = Path(__file__).resolve().parents[2]
OTHER = "other (between stages)"
PASS_THROUGH = {"_wrapped_call_impl", "_call_impl", "wrapped_func", "wrapper"}  # nn.Module.__call__, decorators
STAGES = [  # (label, owner, attribute); owner is a module or a class
    ("data + split", pipeline, "load_dataset"), ("data + split", pipeline, "build_split"),
    ("samples", pipeline, "build_samples"),
    ("tokenizer + prompts", pipeline, "load_tokenizer"), ("tokenizer + prompts", PreparedCell, "encode"),
    ("SFT", pipeline, "cached_sft"),
    ("load SFT model", PreparedCell, "sft_model"),
    ("reference pass", pipeline, "cached_reference_logps"),
    ("sprec: self-play generation", PreparedCell, "predict_top1"),
    ("sprec: SFT step", PreparedCell, "sft_step"),
    ("ranking + metrics", PreparedCell, "evaluate"),
]


class StageProfiler:
    """Wraps functions as named stages: wall time, cProfile and torch.profiler per stage (outermost stage only)."""

    def __init__(self, use_cprofile: bool, use_torch: bool):
        self.use_cprofile, self.use_torch = use_cprofile, use_torch
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.cprofiles: dict[str, list[cProfile.Profile]] = defaultdict(list)
        self.ops: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
        self.bookkeeping = 0.0          # starting, stopping and reading the profilers: not the job's time
        self.active: str | None = None
        self.outside = cProfile.Profile() if use_cprofile else None   # everything outside the stages ("other")
        if self.outside:
            self.cprofiles[OTHER].append(self.outside)

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def staged(*args, **kwargs):
            if self.active is not None:
                return fn(*args, **kwargs)
            self.active = label
            mark = time.perf_counter()
            if self.outside:
                self.outside.disable()
            cprof = cProfile.Profile() if self.use_cprofile else None
            tprof = profile(activities=[ProfilerActivity.CPU]) if self.use_torch else contextlib.nullcontext()
            try:
                with tprof:
                    if cprof:
                        cprof.enable()
                    start = time.perf_counter()
                    self.bookkeeping += start - mark
                    try:
                        return fn(*args, **kwargs)
                    finally:
                        mark = time.perf_counter()
                        self.seconds[label] += mark - start
                        self.calls[label] += 1
                        if cprof:
                            cprof.disable()
            finally:
                self.active = None
                if cprof:
                    self.cprofiles[label].append(cprof)
                if self.use_torch:
                    for key, (seconds, count) in self_cpu_times(tprof).items():
                        self.ops[label][key][0] += seconds
                        self.ops[label][key][1] += count
                self.bookkeeping += time.perf_counter() - mark
                if self.outside:
                    self.outside.enable()
        return staged


def self_cpu_times(tprof) -> dict[str, tuple[float, int]]:
    """{op name: (self CPU seconds, calls)} of a finished torch profile: `key_averages()`'s numbers, computed from
    the raw event intervals (nesting per thread) because `key_averages` takes ~0.4 ms per event, minutes here."""
    raw = getattr(getattr(tprof, "profiler", None), "kineto_results", None)
    if raw is None:  # another torch version: the slow, public way
        return {e.key: (e.self_cpu_time_total / 1e6, e.count) for e in tprof.key_averages()}
    threads: dict[int, list] = defaultdict(list)
    for e in raw.events():
        if e.device_type() == torch.autograd.DeviceType.CPU:
            threads[e.start_thread_id()].append((e.start_ns(), -e.duration_ns(), e.name()))
    totals: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for rows in threads.values():
        rows.sort()                             # by start, the enclosing event first
        stack: list[list] = []                  # open events: [end_ns, name, self_ns]
        for start, minus_duration, name in rows + [(float("inf"), 0, None)]:
            while stack and stack[-1][0] <= start:
                end, done, own = stack.pop()
                totals[done][0] += own / 1e9
                totals[done][1] += 1
            if name is None:
                break
            if stack:
                stack[-1][2] += minus_duration  # a child's time is not its parent's own time
            stack.append([start - minus_duration, name, -minus_duration])
    return {name: (seconds, count) for name, (seconds, count) in totals.items()}


@contextlib.contextmanager
def wrapped_stages(stages: StageProfiler):
    """Install the stage wrappers, restore the originals on exit."""
    patches = [(owner, name, label) for label, owner, name in STAGES]
    original = methods.train.preference_trainer.train_preference   # imported by name into several method modules
    patches += [(module, name, "preference training") for module in list(sys.modules.values()) if module is not None
                for name, value in list(vars(module).items()) if value is original]
    saved = [(owner, name, vars(owner)[name]) for owner, name, _ in patches]
    try:
        for owner, name, label in patches:
            setattr(owner, name, stages.wrap(label, vars(owner)[name]))
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def where(key: tuple) -> str:
    file, line, name = key
    if file == "~":
        return name
    path = Path(file)
    for marker in ("site-packages", str(ROOT)):
        if marker in file:
            path = Path(file.split(marker, 1)[1].lstrip(os.sep))
            break
    return f"{path}:{line}({name})"


def top_functions(profiles: list[cProfile.Profile], n: int) -> list[tuple[float, float, int, str]]:
    stats = pstats.Stats(*profiles)
    rows = [(ct, tt, nc, where(key)) for key, (cc, nc, tt, ct, callers) in stats.stats.items()
            if "profile_run.py" not in key[0] and "_lsprof" not in key[2] and key[2] not in PASS_THROUGH]
    return sorted(rows, reverse=True)[:n]


def report(stages: StageProfiler, total: float, top: int, n_functions: int, n_ops: int) -> None:
    job = total - stages.bookkeeping
    seconds = dict(stages.seconds)
    seconds[OTHER] = job - sum(seconds.values())
    print(f"\n## Where the time goes ({job:.1f} s of the job; profiler bookkeeping {stages.bookkeeping:.1f} s more, "
          "not counted)\n")
    print("| stage | calls | seconds | share |\n|---|---|---|---|")
    ranked = sorted(seconds, key=seconds.get, reverse=True)
    for label in ranked:
        calls = stages.calls[label] if label != OTHER else "-"
        print(f"| {label} | {calls} | {seconds[label]:.3f} | {100 * seconds[label] / job:.2f}% |")
    for label in ranked[:top]:
        wall = seconds[label]
        if stages.cprofiles.get(label):
            print(f"\n### {label}: top {n_functions} functions by cumulative time (cProfile, {wall:.1f} s wall; "
                  "module-call and decorator wrappers left out)\n")
            print("| cumulative s | own s | calls | function |\n|---|---|---|---|")
            for ct, tt, nc, name in top_functions(stages.cprofiles[label], n_functions):
                print(f"| {ct:.2f} | {tt:.2f} | {nc} | `{name}` |")
        if stages.ops.get(label):
            ops = sorted(stages.ops[label].items(), key=lambda kv: kv[1][0], reverse=True)
            in_ops = sum(s for s, _ in stages.ops[label].values())
            print(f"\n### {label}: top {n_ops} torch ops by self CPU time (torch.profiler; all ops together "
                  f"{in_ops:.1f} s = {100 * in_ops / wall:.0f}% of the stage's wall)\n")
            print("| self CPU s | share of stage | calls | op |\n|---|---|---|---|")
            for key, (s, count) in ops[:n_ops]:
                print(f"| {s:.2f} | {100 * s / wall:.1f}% | {count} | `{key}` |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="causaldpo,sprec")
    parser.add_argument("--shift", default="temporal")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--limit-train", type=int, help="data.max_train_samples (default: the profile's)")
    parser.add_argument("--limit-test", type=int, help="data.max_eval_samples (default: the profile's)")
    parser.add_argument("--sft-epochs", type=float, help="sft.epochs (default: the profile's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other run override")
    parser.add_argument("--profiler", default="both", choices=("both", "cprofile", "torch", "none"))
    parser.add_argument("--top", type=int, default=3, help="heaviest stages to break down")
    parser.add_argument("--functions", type=int, default=15, help="functions listed per stage")
    parser.add_argument("--ops", type=int, default=10, help="torch ops listed per stage")
    args = parser.parse_args(argv)

    caps = [f"data.max_train_samples={args.limit_train}" if args.limit_train else None,
            f"data.max_eval_samples={args.limit_test}" if args.limit_test else None,
            f"sft.epochs={args.sft_epochs}" if args.sft_epochs else None]
    stages = StageProfiler(args.profiler in ("both", "cprofile"), args.profiler in ("both", "torch"))
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        overrides = [f"results_dir={tmp}/results", f"cache_dir={tmp}/cache"] + [c for c in caps if c] + args.set
        run_argv = ["run", "--methods", args.methods, "--shift", args.shift, "--profile", args.profile]
        run_argv += [a for o in overrides for a in ("--set", o)]
        print(f"profiling: python -m bench {' '.join(run_argv)}  (torch threads {torch.get_num_threads()}, "
              f"profiler {args.profiler})")
        start = time.perf_counter()
        with wrapped_stages(stages):
            if stages.outside:
                stages.outside.enable()
            try:
                code = cli.main(run_argv)
            finally:
                if stages.outside:
                    stages.outside.disable()
        total = time.perf_counter() - start
    if code != 0:
        print(f"the run failed (exit status {code})", file=sys.stderr)
        return code
    report(stages, total, args.top, args.functions, args.ops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
