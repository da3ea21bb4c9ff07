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


def error_line(err: str) -> str:
    """The one `error: ...` line of a refused command's stderr (no traceback, no second error)."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["run", "--methods", "causaldop"], "unknown method 'causaldop'. Did you mean 'causaldpo'"),
    (["run", "--methods", "sprec+causal"], "unknown method 'sprec+causal'. Registered: "),
    (["run", "--methods", "dpo", "--shift", "temporl"], "unknown shift 'temporl'. Did you mean 'temporal'?"),
    (["run", "--methods", "dpo", "--set", "data.shift=temporl"], "unknown shift 'temporl'. Did you mean 'temporal'?"),
    (["run", "--methods", "dpo", "--dataset", "ml-100"], "unknown dataset 'ml-100'. Did you mean 'ml-100k'"),
    (["run", "--methods", "dpo", "--set", "data.dataset=ml10m"], "unknown dataset 'ml10m'. Did you mean 'ml-10m'"),
    (["run", "--methods", "dpo", "--profile", "tiyn"], "unknown profile 'tiyn'. Did you mean 'tiny'?"),
    (["run", "--methods", "dpo", "--ranking", "groundin"],
     "unknown ranking protocol 'groundin'. Did you mean 'grounding'?"),
    (["run", "--methods", "dpo", "--set", "ranking.protocol=bem"],
     "unknown ranking protocol 'bem'. Did you mean 'beam'?"),
    (["run", "--methods", "dpo", "--set", "sft.epoch=2"], "--set sft.epoch=2: unknown key 'sft.epoch'. Did you mean "
                                                          "'epochs'?"),
    (["run", "--methods", "dpo", "--set", "nosuch.key=1"], "--set nosuch.key=1: unknown section 'nosuch'"),
    (["run", "--methods", "dpo", "--set", "dpo.gamma=1"], "--set dpo: unknown hyperparameter 'gamma'"),
    (["run", "--methods", "dpo", "--set", "sft.epochs=many"], "--set sft.epochs=many: sft.epochs: expected float, "
                                                              "got 'many'"),
    (["run", "--methods", "dpo", "--set", "seed=x"], "--set seed=x: seed: expected int, got 'x'"),
    (["run", "--methods", "dpo", "--set", "sft.epochs"], "--set 'sft.epochs': expected key=value"),
    (["run", "--methods", "dpo", "--set", "ranking.k=5"], "ranking.k=5: the metrics go to K=20"),
    (["run", "--methods", "dpo", "--set", "backbone.name=smollm2-135m", "--set", "backbone.gguf_file=nope.gguf"],
     "backbone 'smollm2-135m': GGUF file"),
])
def test_bad_input_exits_2_naming_it(argv, message, capsys, tmp_path):
    argv = argv + ["--set", f"results_dir={tmp_path}"]
    assert main(argv) == 2
    assert error_line(capsys.readouterr().err).startswith(f"error: {message}")
    assert not any(tmp_path.iterdir())


def test_ls_lists_the_registries(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in ("ml-100k", "temporal", "exposure", "causaldpo", "sprec", "likelihood", "beam", "smoke", "small",
                 "smollm2-135m", "tiny-qwen3"):
        assert name in out
