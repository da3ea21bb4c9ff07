"""A method from the researcher's own package (`tests/plugin_example`: IPO, with its loss): loaded by `--include` or
by its installed entry point, listed by `ls` with its module, checked like the harness's own (choices at start),
run by `bench run`, and by `bench leaderboard --launcher local` in a job process the launcher starts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import plugins
from bench.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "tests" / "plugin_example"
SMALL = ["--set", "data.max_eval_samples=16", "--set", "preference.max_pairs=16"]


def bench(cwd: Path, pythonpath: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(pythonpath)}
    env.pop(plugins.ENV, None)
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The example package's source, copied (a build would leave files in the checkout)."""
    folder = tmp_path_factory.mktemp("plugin") / "src"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return folder


def records(results: Path) -> dict[str, dict]:
    return {r["method"]: r for r in map(json.loads, map(Path.read_text, results.rglob("*.json")))}


def test_the_example_loss_is_ipo(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from bench_ipo.loss import ipo_loss  # the formula alone: importing it registers nothing
    from methods.losses import LogProbs

    class Config:
        beta, negatives_reduction = 0.5, "mean"

    policy = LogProbs(torch.tensor([-1.0]), torch.tensor([[-3.0, -2.0]]))
    reference = LogProbs(torch.tensor([-2.0]), torch.tensor([[-2.0, -2.0]]))
    # h = 1 - (-1) = 2 and 1 - 0 = 1; target 1 / (2 * 0.5) = 1: losses 1 and 0
    assert ipo_loss(policy, reference, Config()).tolist() == [0.5]
    Config.negatives_reduction = "max"
    assert ipo_loss(policy, reference, Config()).tolist() == [1.0]


def test_included_modules_are_read_before_the_parser():
    assert plugins.requested(["run", "--include", "a,b", "--methods", "x", "--include=c", "--include", "a"]) == \
        ["a", "b", "c"]
    assert plugins.requested(["ls"]) == []


def test_a_missing_or_clashing_module_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(plugins.ENV, raising=False)
    assert main(["ls", "--include", "no_such_module_here"]) == 2
    assert capsys.readouterr().err == "error: --include no_such_module_here: No module named 'no_such_module_here'\n"
    (tmp_path / "clash_plugin.py").write_text(
        "from methods.base import METHODS\nMETHODS.add('dpo', object)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["ls", "--include", "clash_plugin"]) == 2
    assert "error: --include clash_plugin: importing it failed: ValueError: method 'dpo' is registered twice" in \
        capsys.readouterr().err
    assert plugins.ENV not in os.environ


def test_include_lists_checks_runs_and_launches_the_outside_method(source, tmp_path):
    listed = bench(tmp_path, source, "ls", "--include", "bench_ipo.plugin")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert any(line.split()[:1] == ["ipo"] and line.endswith("[from bench_ipo.plugin]")
               for line in listed.stdout.splitlines()), listed.stdout
    assert "ipo" not in bench(tmp_path, source, "ls").stdout.split()  # without --include: not there

    bad = bench(tmp_path, source, "run", "--include", "bench_ipo.plugin", "--methods", "ipo", "--profile", "smoke",
                "--set", "ipo.negatives_reduction=maxx")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: --set ipo.negatives_reduction: 'maxx' is not one of mean, max. "
                                  "Did you mean 'max'?")

    board = bench(tmp_path, source, "leaderboard", "--include", "bench_ipo.plugin", "--add-methods", "ipo",
                  "--launcher", "local", "--profile", "smoke", "--tables", "6", "--seeds", "0", "--results",
                  str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "board"),
                  *SMALL)
    assert board.returncode == 0, board.stderr[-3000:]
    assert "submitted 1 jobs" in board.stderr
    assert set(records(tmp_path / "results")) == {"dpo", "cpo", "simpo", "causaldpo", "ipo"}  # ipo ran in the job
    assert "| *ipo* |" in (tmp_path / "board" / "table6.md").read_text()  # below the paper's rows


def test_an_installed_entry_point_needs_no_include(source, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(source)], check=True, capture_output=True, timeout=300)
    described = bench(tmp_path, site, "ls", "ipo")
    assert described.returncode == 0, described.stderr[-2000:]
    assert "module: bench_ipo.plugin (registered from outside the harness)" in described.stdout
    assert "[choices: mean, max]" in described.stdout

    run = bench(tmp_path, site, "run", "--profile", "smoke", "--methods", "ipo", "--shift", "temporal",
                "--set", f"results_dir={tmp_path / 'results'}", "--set", f"cache_dir={tmp_path / 'cache'}", *SMALL)
    assert run.returncode == 0, run.stderr[-3000:]
    record = records(tmp_path / "results")["ipo"]
    assert record["hyperparameters"]["negatives_reduction"] == "mean"
    assert record["results"]["ood_test"]["samples"] == 16
