"""The command line end to end on the `smoke` profile, and its error handling."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--set", f"results_dir={tmp / 'results'}",
           "--set", f"cache_dir={tmp / 'cache'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)


def records(tmp: Path) -> dict[str, dict]:
    return {r["method"]: r for r in map(json.loads, map(Path.read_text, (tmp / "results").rglob("*.json")))}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run1")
    proc = run_cli(tmp, "--methods", "causaldpo,sprec,dpo,mostpop", "--shift", "temporal")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, proc


def test_main_command_prints_a_table_and_writes_one_record_per_method(first_run):
    tmp, proc = first_run
    for name in ("causaldpo", "sprec", "dpo", "mostpop"):
        assert any(line.startswith(name) for line in proc.stdout.splitlines())
    assert "HR@10" in proc.stdout and "NDCG@20" in proc.stdout
    recs = records(tmp)
    assert set(recs) == {"causaldpo", "sprec", "dpo", "mostpop"}
    rec = recs["causaldpo"]
    assert rec["shift"] == "temporal" and rec["protocol"] == "likelihood"
    assert set(rec["results"]["ood_test"]["metrics"]) >= {"HR@10", "NDCG@10", "HR@20", "NDCG@20", "valid_ratio"}
    assert set(rec["results"]["ood_test"]["groups"]) == {"G1", "G2", "G3", "G4", "G5"}
    assert rec["seconds_per_epoch"] > 0 and rec["memory"]["peak_rss_mb"] > 0
    assert rec["environment"]["versions"]["trl"] and len(rec["split_fingerprint"]) == 64
    assert rec["sft_tag"] == recs["dpo"]["sft_tag"] == recs["sprec"]["sft_tag"]      # one SFT model per cell
    assert rec["hyperparameters"]["mmd_weight"] == 1.0
    assert "sft: training" in proc.stderr and proc.stderr.count("sft: training") == 1
    assert not list((tmp / "results").rglob("*.tmp"))


def test_same_seed_gives_identical_metrics_in_a_fresh_process(first_run, tmp_path):
    tmp, _ = first_run
    proc = run_cli(tmp_path, "--methods", "causaldpo,sprec,dpo,mostpop", "--shift", "temporal")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again, before = records(tmp_path), records(tmp)
    for name, rec in before.items():
        assert again[name]["results"]["ood_test"]["metrics"] == rec["results"]["ood_test"]["metrics"], name
        assert again[name]["split_fingerprint"] == rec["split_fingerprint"]
        assert again[name]["key"] == rec["key"]


@pytest.mark.parametrize("argv, message", [
    (["run", "--methods", "causaldop"], "did you mean 'causaldpo'"),
    (["run", "--methods", "dpo", "--shift", "temporl"], "did you mean 'temporal'"),
    (["run", "--methods", "dpo", "--dataset", "ml-100"], "did you mean 'ml-100k'"),
    (["run", "--methods", "dpo", "--profile", "tiyn"], "did you mean 'tiny'"),
    (["run", "--methods", "dpo", "--set", "sft.epoch=2"], "did you mean 'epochs'"),
    (["run", "--methods", "dpo", "--set", "sft.epochs=many"], "expected float"),
    (["run", "--methods", "dpo", "--set", "nosuch.key=1"], "unknown section"),
    (["run", "--methods", "dpo", "--set", "dpo.gamma=1"], "unknown hyperparameter 'gamma'"),
    (["run", "--methods", "dpo", "--set", "sft.epochs"], "expected key=value"),
    (["run", "--methods", "dpo", "--ranking", "groundin"], "unknown ranking protocol"),
    (["run", "--methods", "sprec+causal"], "unknown method"),
])
def test_bad_input_exits_2_naming_it(argv, message, capsys, tmp_path):
    argv = argv + ["--set", f"results_dir={tmp_path}"]
    assert main(argv) == 2
    assert message.lower() in capsys.readouterr().err.lower()
    assert not any(tmp_path.iterdir())


def test_ls_lists_the_registries(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in ("ml-100k", "temporal", "exposure", "causaldpo", "sprec", "likelihood", "beam", "smoke"):
        assert name in out
