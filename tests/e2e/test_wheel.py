"""The installed package, not the checkout: build the wheel from a copy of the source tree, install it (no `-e`) into
a fresh venv, and run the commands from a folder outside the checkout, with no PYTHONPATH. It catches a package or
a data file left out of the wheel (`bench.planner`, the paper's tables, the committed calibration), which no test
run inside the checkout can see.

It installs torch and every dependency into a new venv (about 1.5 minutes from pip's cache), so it runs only with
BENCH_WHEEL_TEST=1; `.ci/run` sets it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TORCH = "torch==2.13.0"
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "runs", "records", "tests", "__pycache__", ".tox",
                                    "*.egg-info", ".pytest_cache", ".cache", ".benchmarks")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("BENCH_WHEEL_TEST") != "1",
                                 reason="builds and installs the wheel into a new venv: set BENCH_WHEEL_TEST=1 "
                                        "(.ci/run does)")]


def _run(cmd: list, cwd: Path, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    started = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    print(f"{time.monotonic() - started:6.1f}s  {' '.join(map(str, cmd))}")
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, python of the fresh venv, a work folder outside the checkout, the environment to run it in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCE)  # the checkout's build/ may hold stale files
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", tmp / "src"], tmp)
    wheel = next((tmp / "dist").glob("dpo_shift_bench-*.whl"))
    _run([sys.executable, "-m", "venv", tmp / "venv"], tmp)
    python = tmp / "venv" / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", TORCH], tmp)  # the CPU build first, from pip's cache
    _run([python, "-m", "pip", "install", "-q", wheel], tmp)
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return wheel, python, work, env


def bench(installed, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    _, python, work, env = installed
    return _run([python, "-m", "bench", *args], work, timeout, env)


def test_the_wheel_holds_every_package_and_the_data_commands_read(installed):
    names = set(zipfile.ZipFile(installed[0]).namelist())
    for package in ("bench", "bench/leaderboard", "bench/perf", "bench/planner", "methods", "methods/ranking",
                    "methods/train", "splits", "leaderboards"):
        assert f"{package}/__init__.py" in names, package
    assert {f"leaderboards/paper/table{i}.csv" for i in range(1, 10)} <= names
    assert {"leaderboards/tiny/calibration.json", "bench/profiles/tiny.yaml", "bench/profiles/smoke.yaml"} <= names
    assert not [n for n in names if "/records/" in n], "the committed records do not belong in the wheel"
    committed = "leaderboards/small/sft/80f10d66d8509288/"
    assert {committed + f for f in ("adapter_model.safetensors", "adapter_config.json", "sft_stats.json",
                                    "sft_identity.json", "tokenizer.json")} <= names


def test_the_profiles_committed_sft_models_are_found_in_the_installed_package(installed):
    _, python, work, env = installed
    out = _run([python, "-c", "from bench.sft_models import prebuilt_folder; "
                              "print(sorted(p.name for p in prebuilt_folder('leaderboards/small/sft').iterdir()))"],
               work, env=env).stdout
    assert "80f10d66d8509288" in out, out


def test_the_installed_code_is_the_wheels_not_the_checkouts(installed):
    _, python, work, env = installed
    out = _run([python, "-c", "import bench, leaderboards; print(bench.__file__); print(leaderboards.PAPER_DIR)"],
               work, env=env).stdout
    assert str(ROOT) not in out and "site-packages" in out, out


def test_ls_lists_the_registries(installed):
    out = bench(installed, "ls").stdout
    assert "methods:" in out and "causaldpo" in out and "smoke" in out


def test_compare_prints_the_published_numbers(installed):
    proc = bench(installed, "compare", "--profile", "tiny", "--tables", "1,2",
                 "--results", str(ROOT / "leaderboards" / "tiny" / "records"))
    assert "(no published numbers)" not in proc.stdout
    assert "=== Table 1" in proc.stdout and "=== Table 2" in proc.stdout
    assert "10,000,054" in proc.stdout  # Table 2's ML-10M interactions, read from the shipped paper/table2.csv
    assert re.search(r"^Ours\s+causaldpo\s+0\.61\s", proc.stdout, re.M)  # Table 1: ML-10M temporal HR@10


def test_plan_finds_the_committed_calibration(installed):
    out = bench(installed, "plan", "--profile", "tiny", "--tables", "1").stdout
    assert "table1" in out


def test_a_smoke_run_trains_scores_and_writes_its_record(installed):
    work = installed[2]
    proc = bench(installed, "run", "--profile", "smoke", "--methods", "dpo", "--shift", "temporal",
                 "--set", f"results_dir={work / 'results'}", "--set", f"cache_dir={work / 'cache'}")
    assert any(line.startswith("dpo ") for line in proc.stdout.splitlines()), proc.stdout
    (record,) = (work / "results").rglob("dpo-*.json")
    assert json.loads(record.read_text())["method"] == "dpo"
