"""One trained model per fit, end to end on the smoke profile: a second run of the same method under another ranking
protocol trains nothing and says which fit it ranked; ranking the first protocol again gives the first run's
metrics exactly; another method setting or seed trains again; a damaged entry is trained again, never trusted."""
from __future__ import annotations

import json

import pytest

from bench.config import apply_overrides, load_profile
from bench.pipeline import run


def smoke_run(tmp_path, results: str, *sets: str, methods=("dpo",)):
    """One in-process `bench run --profile smoke` on the temporal shift with a shared cache; (records, log)."""
    cfg = load_profile("smoke")
    apply_overrides(cfg, [f"results_dir={tmp_path / results}", f"cache_dir={tmp_path / 'cache'}",
                          "data.shift=temporal", *sets], list(methods))
    lines: list[str] = []
    records = {r["method"]: r for r in run(cfg, list(methods), log=lines.append)}
    return records, "\n".join(lines)


def trained(log: str, name: str = "dpo") -> bool:
    return f"{name}: training on" in log


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fits")
    records, log = smoke_run(tmp, "likelihood", methods=("dpo", "mostpop", "sft"))
    return tmp, records, log


def test_the_first_run_trains_and_keeps_its_model(first):
    tmp, records, log = first
    fit = records["dpo"]["fit"]
    assert trained(log) and fit["reused"] is False and fit["trained_seconds"] == records["dpo"]["fit_seconds"] > 0
    assert (tmp / "cache" / "fits" / fit["key"] / "fit.json").is_file()
    assert records["mostpop"]["fit"]["key"] is None   # its own ranker: nothing to keep
    assert records["dpo"]["environment"]["autocast"] == "fp32"   # the run's resolved mixed precision
    assert records["sft"]["fit"]["key"] is None       # opts out: the SFT model is in the cache already


def test_another_protocol_ranks_the_same_fit_without_training(first):
    tmp, records, _ = first
    again, log = smoke_run(tmp, "grounding", "ranking.protocol=grounding")
    fit, before = again["dpo"]["fit"], records["dpo"]
    assert not trained(log) and "reference log-probs" not in log
    assert f"fit: reusing {tmp / 'cache' / 'fits' / fit['key']}" in log
    assert fit["key"] == before["fit"]["key"] and fit["reused"] is True
    assert again["dpo"]["fit_seconds"] == fit["trained_seconds"] == before["fit_seconds"]  # the fit's training
    assert again["dpo"]["protocol"] == "grounding" and again["dpo"]["key"] != before["key"]
    assert again["dpo"]["method_stats"] == json.loads(json.dumps(before["method_stats"], default=str))


def test_the_first_protocol_again_gives_the_first_runs_results_exactly(first):
    tmp, records, _ = first
    again, log = smoke_run(tmp, "likelihood-again")
    assert not trained(log) and again["dpo"]["fit"]["reused"] is True
    for part, result in records["dpo"]["results"].items():
        assert again["dpo"]["results"][part]["metrics"] == result["metrics"]
        assert again["dpo"]["results"][part]["target_ranks"] == result["target_ranks"]
    assert again["dpo"]["key"] == records["dpo"]["key"]


@pytest.mark.parametrize("setting", ["dpo.beta=0.2", "seed=1", "preference.max_pairs=32"])
def test_another_method_setting_or_seed_trains_again(first, setting):
    tmp, records, _ = first
    again, log = smoke_run(tmp, f"changed-{setting}", setting, "ranking.protocol=grounding")  # grounding: faster
    assert trained(log) and again["dpo"]["fit"]["reused"] is False
    assert again["dpo"]["fit"]["key"] != records["dpo"]["fit"]["key"]


def test_a_truncated_entry_is_trained_again(tmp_path):
    records, _ = smoke_run(tmp_path, "one", "ranking.protocol=grounding")
    entry = tmp_path / "cache" / "fits" / records["dpo"]["fit"]["key"]
    weights = next(entry.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    again, log = smoke_run(tmp_path, "two", "ranking.protocol=grounding")
    assert f"fit: ignoring the corrupt cache entry {entry}" in log and trained(log)
    assert again["dpo"]["fit"] == {**again["dpo"]["fit"], "key": entry.name, "reused": False}


@pytest.mark.slow
def test_under_two_launched_processes_the_main_one_saves_and_both_reuse(tmp_path):
    """`accelerate launch` with two CPU processes: the first run saves each fit once (the main process writes, the
    other waits), the second run under another protocol loads it on both processes and trains nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    logs = []
    for protocol in ("likelihood", "grounding"):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "bench", "run",
               "--profile", "smoke", "--methods", "dpo,sprec", "--shift", "temporal", "--ranking", protocol,
               "--set", f"results_dir={tmp_path / protocol}", "--set", f"cache_dir={tmp_path / 'cache'}",
               "--set", "preference.batch_size=16"]
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        logs.append(done.stdout + done.stderr)
    assert logs[0].count("fit: saved as") == 2 and "training on" in logs[0]
    assert logs[1].count("fit: reusing") == 2 and "training on" not in logs[1]
    entries = sorted((tmp_path / "cache" / "fits").iterdir())
    assert len(entries) == 2 and not [p for p in entries if p.name.startswith(".")]
    for protocol in ("likelihood", "grounding"):
        recs = [json.loads(p.read_text()) for p in (tmp_path / protocol).rglob("*.json")]
        assert {r["fit"]["key"] for r in recs} == {p.name for p in entries}
        assert all(r["fit"]["reused"] is (protocol == "grounding") for r in recs)


def test_retrain_on_the_command_line_trains_a_cached_fit_again(first, capsys):
    """`bench run --retrain` ignores the entry the first run kept (same settings, same cache) and trains."""
    from bench.cli import main
    tmp, records, _ = first
    main(["run", "--profile", "smoke", "--methods", "dpo", "--shift", "temporal", "--retrain",
          "--set", f"results_dir={tmp / 'retrained'}", "--set", f"cache_dir={tmp / 'cache'}"])
    out = capsys.readouterr()
    log = out.out + out.err
    assert trained(log) and "fit: reusing" not in log
    record = json.loads(next((tmp / "retrained").rglob("*.json")).read_text())
    assert record["fit"]["reused"] is False and record["fit"]["key"] == records["dpo"]["fit"]["key"]
