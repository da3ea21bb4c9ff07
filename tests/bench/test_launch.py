"""Cluster execution through submitit: the local launcher gives the in-process runner's records, a SLURM submission
asks for the resources given (a stand-in `sbatch` records the script), requeued jobs take over their own lock, and
a run's settings survive the trip through `bench run --set` (the multi-GPU path)."""
from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import apply_overrides, load_profile
from bench.leaderboard.launch import Resources, parse_extra, run_arguments
from bench.leaderboard.locks import GroupLock
from bench.leaderboard.records import RecordIndex

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "data.max_eval_samples=16", "--set", "preference.max_pairs=16"]


def leaderboard(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench", "leaderboard", "--profile", "smoke", "--tables", "fig1", "--seeds", "0,1",
           "--results", str(tmp / "results"), "--cache", str(tmp / "cache"), "--out", str(tmp / "board"),
           *SMALL, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def metrics(results: Path) -> dict[str, dict]:
    return {ident: {p: v["target_ranks"] for p, v in rec["results"].items()}
            for ident, rec in RecordIndex.load(results).by_identity.items()}


@pytest.mark.slow
def test_local_launcher_gives_the_in_process_records(tmp_path):
    launched, inline = tmp_path / "launched", tmp_path / "inline"
    proc = leaderboard(launched, "--launcher", "local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted 2 jobs (one per cell group) as one array" in proc.stderr + proc.stdout
    logs = list((launched / "results" / ".submitit").glob("*_log.out"))
    assert len(logs) == 2                                         # one log per job, in the known folder
    assert (launched / "board" / "fig1_long.csv").exists()        # waited for, then rendered
    proc = leaderboard(inline)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = metrics(launched / "results"), metrics(inline / "results")
    assert len(ours) == 6 and ours == theirs                     # same cells, same target ranks
    again = leaderboard(launched, "--launcher", "local")          # everything recorded: nothing submitted
    assert again.returncode == 0 and "nothing to submit" in again.stderr + again.stdout


def test_slurm_submission_asks_for_the_resources(tmp_path, monkeypatch):
    from bench.leaderboard.launch import GroupJob, submit

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\ncp \"$@\" {tmp_path}/submitted.sh\necho 'Submitted batch job 4242'\n")
    srun = bin_dir / "srun"                                       # submitit checks that a cluster is there
    srun.write_text("#!/bin/sh\nexit 0\n")
    for tool in (sbatch, srun):
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    res = Resources(partition="gpu", gpus_per_job=8, cpus_per_job=32, mem_gb=400, time_min=720,
                    array_parallelism=2, extra=parse_extra(["account=myproj", "qos=high"]))
    job = GroupJob("paper", ["table1"], [0], str(tmp_path / "results"), None, [], gpus=8)
    jobs = submit("slurm", tmp_path / "logs", res, job, ["g1", "g2", "g3", "g4"], log=lambda m: None)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=32",
                 "#SBATCH --mem=400GB", "#SBATCH --time=720", "#SBATCH --array=0-3%2", "#SBATCH --account=myproj",
                 "#SBATCH --qos=high", "#SBATCH --job-name=bench-leaderboard"):
        assert line in script, line
    assert str(tmp_path / "logs") in script                       # logs go to the known folder
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_extra(["account"])


def test_a_requeued_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    first = GroupLock(tmp_path / "g.lock")
    assert first.acquire()                                        # the attempt that was preempted never released it
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    assert not GroupLock(tmp_path / "g.lock").acquire()          # another live job's lock is respected
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert GroupLock(tmp_path / "g.lock").acquire()              # the requeued job 77 takes it over
    assert json.loads((tmp_path / "g.lock").read_text())["job"] == "77"


@pytest.mark.parametrize("profile", ["tiny", "paper", "small"])
def test_run_arguments_rebuild_the_config(profile):
    cfg = load_profile(profile)
    apply_overrides(cfg, ["data.shift=exposure", "seed=2", "causaldpo.mmd_weight=0.5", "ranking.exclude_seen=false",
                          "data.eval_parts=iid_test,ood_test"], ["causaldpo"])
    args = run_arguments(cfg, ["dpo", "causaldpo"])
    assert args[:4] == ["--profile", profile, "--methods", "dpo,causaldpo"]
    rebuilt = apply_overrides(load_profile(profile), args[5::2], ["dpo", "causaldpo"])
    assert rebuilt.to_dict() == copy.deepcopy(cfg).to_dict()
