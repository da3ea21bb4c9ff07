"""Run records (bench/results.py): atomic writes that honour the umask, and an environment that says what a CPU
result is bit-identical to (CPU model, threads, kernels)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import torch

from bench.results import environment, read_records, write_record
from methods.train.cache import save_atomically
from splits.permissions import honour_umask


@pytest.fixture
def umask():
    """Set a umask for the test; restore the caller's afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_record_gets_the_mode_of_a_plain_file(tmp_path, umask, mask, expected):
    umask(mask)
    path = tmp_path / "ml-100k" / "temporal" / "dpo-abc.json"
    write_record(path, {"method": "dpo", "value": 1.5})
    assert mode(path) == expected                      # not mkstemp's 0600: a group-shared folder stays readable
    assert json.loads(path.read_text()) == {"method": "dpo", "value": 1.5}
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temporary file left
    assert read_records(tmp_path) == [{"method": "dpo", "value": 1.5}]


def test_a_cache_entry_folder_gets_the_mode_of_a_plain_folder(tmp_path, umask):
    umask(0o002)

    class Saver:
        def save_pretrained(self, target):
            (Path(target) / "config.json").write_text("{}")

    entry = tmp_path / "sft" / "tag"
    save_atomically(Saver(), entry)
    assert mode(entry) == 0o775 and mode(entry / "config.json") == 0o664   # not mkdtemp's 0700


def test_honour_umask_on_a_nested_folder(tmp_path, umask):
    umask(0o027)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    os.chmod(tmp_path / "a", 0o700)
    os.chmod(tmp_path / "a" / "b" / "f", 0o600)
    honour_umask(tmp_path / "a")
    assert (mode(tmp_path / "a"), mode(tmp_path / "a" / "b"), mode(tmp_path / "a" / "b" / "f")) == (0o750, 0o750, 0o640)


def test_environment_names_what_cpu_floats_depend_on():
    env = environment("cpu")
    assert env["torch_threads"] == torch.get_num_threads() and env["cpu_count"] == os.cpu_count()
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]
    assert env["cpu_kernels"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(env["cpu_kernels"]) == {"capability", "blas", "onednn", "native_bf16"}   # bf16 matmuls in hardware
    assert env["cpu_model"] in env["device"] and f"{torch.get_num_threads()} threads" in env["device"]


def test_a_runner_removes_old_temporaries_of_killed_writers_only(tmp_path):
    from bench.leaderboard.runner import GridRunner

    results, cache = tmp_path / "results", tmp_path / "cache"
    old_record = results / "ml-100k" / "temporal" / ".dpo-abc.json.x1y2.tmp"
    young_record = results / "ml-100k" / "temporal" / ".sft-def.json.z3.tmp"
    record = results / "ml-100k" / "temporal" / "dpo-abc.json"
    old_entry, live_entry = cache / "sft" / ".tag.k4", cache / "sft" / ".tag2.k5"
    entry = cache / "sft" / "tag"
    for folder in (old_entry, live_entry, entry / ".hidden-inside"):
        folder.mkdir(parents=True)
    for path in (old_record, young_record, record, entry / "config.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    day_ago = time.time() - 86_400
    for path in (old_record, record, old_entry, entry, entry / "config.json", entry / ".hidden-inside"):
        os.utime(path, (day_ago, day_ago))
    GridRunner("tiny", results, cache, log=lambda m: None).clean_temporaries()
    assert not old_record.exists() and not old_entry.exists()
    assert young_record.exists() and live_entry.exists()                 # a live writer's are young
    assert record.exists() and (entry / "config.json").exists() and (entry / ".hidden-inside").exists()


def test_compressed_records_are_read_like_plain_ones(tmp_path):
    """Committed leaderboard records are gzipped (`gzip -n`); a folder may mix both, and a broken file is skipped."""
    write_record(tmp_path / "a" / "x.json", {"key": "x", "value": 1})
    write_record(tmp_path / "a" / "y.json", {"key": "y", "value": 2})
    subprocess.run(["gzip", "-n", str(tmp_path / "a" / "y.json")], check=True)
    (tmp_path / "a" / "z.json.gz").write_bytes(b"not gzip")
    assert sorted(r["key"] for r in read_records(tmp_path)) == ["x", "y"]
