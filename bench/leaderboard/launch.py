"""Cluster execution of a leaderboard grid through submitit (`--launcher slurm` or `--launcher local`).

    python -m bench leaderboard --profile paper --launcher slurm --slurm-partition gpu --gpus-per-job 8 \
        --cpus-per-job 32 --mem-gb 400 --time-min 1440 --slurm-extra account=myproj --slurm-extra qos=high

* One job per cell group (the cells sharing one SFT model), all groups of one invocation submitted as **one job
  array** (`executor.map_array`; `--array-parallelism` caps how many run at once). A job runs `GridRunner` on its
  own group, so finished cells are skipped and records land in `--results` as with the in-process runner; the
  group lock is still taken (a plain-shell runner on the same folder stays safe) and names the job, so a requeued
  attempt of the same job takes over its own lock.
* Logs: submitit's folder, `--logs` (default `<results>/.submitit`): `<job id>_<task>_log.out/.err` per job and the
  pickled result; the command prints the job ids and that folder.
* Requeue: `GroupJob` is a `submitit.helpers.Checkpointable`; on preemption or time-out SLURM requeues it with the
  same group (at most `--max-requeues` times), and the new attempt resumes from the records already written.
* GPUs: `--gpus-per-job G` > 1 runs the group's methods under ``accelerate launch --num_processes G -m bench run``
  (data parallelism as in the README's GPU section; the run's settings passed as ``--set`` options); with G <= 1
  the group runs in the job's own process.
* `--launcher local` runs the same jobs as subprocesses of this machine through submitit's local executor and waits
  for them (what CI tests on the smoke profile). Without `--launcher`, the runner works in-process as before.
* Outside code (`--include`, `bench.plugins`) and `--add-methods` rows travel with the job: `GroupJob` loads the
  modules again in the job's process, which exports them in `$BENCH_INCLUDE` to `accelerate launch`'s processes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import submitit

from bench.config import SECTIONS, RunConfig

LAUNCHERS = ("slurm", "local")


@dataclass
class Resources:
    """What every job of the array asks for."""
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    mem_gb: float | None = None
    time_min: int = 24 * 60
    array_parallelism: int = 256
    max_requeues: int = 3
    extra: dict[str, str] = field(default_factory=dict)  # sbatch options: account, qos, constraint, ...


def parse_extra(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--slurm-extra {item!r}: expected KEY=VALUE, e.g. account=myproj")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def run_arguments(cfg: RunConfig, names: list[str]) -> list[str]:
    """``bench run`` arguments that rebuild `cfg` exactly: every field as ``--set key=<JSON>`` (JSON is YAML)."""
    args = ["--profile", cfg.profile, "--methods", ",".join(names)]
    for key, value in cfg.to_dict().items():
        if key in ("profile", "method_overrides"):
            continue
        items = value.items() if isinstance(value, dict) and key in SECTIONS else [(None, value)]
        for name, v in items:
            args += ["--set", f"{key}.{name}={json.dumps(v)}" if name else f"{key}={json.dumps(v)}"]
    for method, overrides in cfg.method_overrides.items():
        if method not in names:  # another method's (a profile's own overrides come back with --profile)
            continue
        for name, v in overrides.items():
            args += ["--set", f"{method}.{name}={json.dumps(v)}"]
    return args


def accelerate_run(processes: int) -> Callable:
    """A `GridRunner` run function that trains the group under ``accelerate launch`` with `processes` GPUs."""
    def run(cfg: RunConfig, names: list[str], log: Callable[[str], None]) -> None:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
               "--multi_gpu", "-m", "bench", "run", *run_arguments(cfg, names)]
        log(f"accelerate launch on {processes} GPUs: {' '.join(names)}")
        subprocess.run(cmd, check=True)
    return run


class GroupJob(submitit.helpers.Checkpointable):
    """One cell group of a grid as a job; requeued by submitit on preemption/time-out (`checkpoint` resubmits the
    same call, which resumes from the records)."""

    def __init__(self, profile: str, tables: list[str], seeds: list[int], results: str, cache: str | None,
                 extra_sets: list[str], gpus: int = 0, stale_after: float = 24 * 3600.0,
                 include: list[str] = (), added_methods: list[str] = (), scope: tuple = (None, None)):
        self.profile, self.tables, self.seeds, self.results, self.cache = profile, tables, seeds, results, cache
        self.extra_sets, self.gpus, self.stale_after = list(extra_sets), gpus, stale_after
        self.include, self.added_methods = list(include), list(added_methods)  # outside code: `bench.plugins`
        self.scope = scope  # (shifts, methods) of `grids.restrict`

    def __call__(self, group_id: str) -> list[str]:
        from bench import plugins
        from bench.leaderboard.grids import add_method_rows, expand, restrict
        from bench.leaderboard.records import profile_config
        from bench.leaderboard.runner import GridRunner, group_cells

        plugins.load(self.include)  # a job is a fresh process: register the outside code again (and for accelerate)
        add_method_rows(self.added_methods)
        restrict(self.tables, *self.scope)
        cfg = profile_config(self.profile)
        groups = {g.id: g for g in group_cells(expand(self.tables, self.profile, self.seeds, cfg.data.dataset,
                                                            cfg.backbone.name))}
        if group_id not in groups:
            raise KeyError(f"group {group_id} is not in the grid of {', '.join(self.tables)} (seeds {self.seeds})")
        runner = GridRunner(self.profile, self.results, self.cache, self.extra_sets, print,
                            run_fn=accelerate_run(self.gpus) if self.gpus > 1 else None, stale_after=self.stale_after)
        summary = runner.run([groups[group_id]])
        if summary.failed or summary.locked:
            raise RuntimeError("; ".join(summary.lines()))
        return summary.lines()


def executor(launcher: str, folder: Path, res: Resources):
    if launcher == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=res.max_requeues)
        ex.update_parameters(timeout_min=res.time_min, gpus_per_node=res.gpus_per_job)
        return ex
    if launcher != "slurm":
        raise ValueError(f"--launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=res.max_requeues)
    params = {"job_name": "bench-leaderboard", "time": res.time_min, "cpus_per_task": res.cpus_per_job,
              "array_parallelism": res.array_parallelism, "additional_parameters": dict(res.extra)}
    if res.partition:
        params["partition"] = res.partition
    if res.gpus_per_job:
        params["gpus_per_node"] = res.gpus_per_job
    if res.mem_gb:
        params["mem"] = f"{int(res.mem_gb)}GB"
    ex.update_parameters(**params)
    return ex


def submit(launcher: str, folder: Path, res: Resources, job: GroupJob, group_ids: list[str],
           log: Callable[[str], None] = print) -> list:
    """Submit one job per group as one array; returns the submitit jobs."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = executor(launcher, folder, res).map_array(job, group_ids)
    log(f"{launcher}: submitted {len(jobs)} jobs (one per cell group) as one array"
        + (f", ids {jobs[0].job_id} .. {jobs[-1].job_id}" if jobs else "") + f"; logs in {folder}")
    return jobs
