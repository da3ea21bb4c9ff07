"""Data parallelism for real: two processes started by `accelerate launch` on the CPU, smoke profile, give the
record a single process gives (same key, split, samples; training equivalent up to data order), written once.

accelerate 1.15's `--cpu --num_processes 2` starts ONE process unless an MPI host file is configured; its torchrun
path (`--multi_gpu`) with no visible GPU runs two CPU processes over gloo, which is what this test launches."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from methods.train import distributed

ROOT = Path(__file__).resolve().parents[2]


def test_gather_and_batch_split_without_a_launcher_are_identities():
    assert distributed.world_size() == 1 and distributed.is_main()
    assert distributed.gather_rows([3, 1, 2], 3) == [3, 1, 2]
    assert distributed.per_device(16) == 16


def test_a_batch_that_does_not_split_over_the_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="batch size 16 does not divide over 3 processes"):
        distributed.per_device(16)
    assert distributed.per_device(12) == 4


def _run(prefix: list[str], out: Path, env_extra: dict | None = None) -> dict[str, dict]:
    cmd = prefix + ["-m", "bench", "run", "--profile", "smoke", "--methods", "sft,causaldpo", "--shift", "temporal",
                    "--set", f"results_dir={out / 'results'}", "--set", f"cache_dir={out / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted((out / "results").rglob("*.json"))
    return {p.name: json.loads(p.read_text()) for p in files}


@pytest.mark.slow
def test_two_cpu_processes_write_the_single_process_record(tmp_path):
    single = _run([sys.executable], tmp_path / "single")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    parallel = _run(launcher, tmp_path / "parallel", {"CUDA_VISIBLE_DEVICES": ""})
    assert set(parallel) == set(single) and len(single) == 2          # same keys, one file per method, no extras
    assert not list((tmp_path / "parallel" / "results").rglob("*.tmp*"))
    for name, one in single.items():
        two = parallel[name]
        assert two["environment"]["world_size"] == 2 and one["environment"]["world_size"] == 1
        assert two["split_fingerprint"] == one["split_fingerprint"] and two["key"] == one["key"]
        for part, res in one["results"].items():
            assert two["results"][part]["samples"] == res["samples"]   # every test sample scored once
            assert two["results"][part]["metrics"]["valid_ratio"] == res["metrics"]["valid_ratio"]
            for metric, value in res["metrics"].items():
                assert abs(two["results"][part]["metrics"][metric] - value) <= 0.05, (name, metric)
        if one["method"] == "causaldpo":   # same global batch: the loss ends where the single process's ends
            assert abs(two["method_stats"]["final_loss"] - one["method_stats"]["final_loss"]) < 0.05
            assert two["method_stats"]["pairs"] == one["method_stats"]["pairs"]
