"""`bench pair`: two records compared on the same samples (per-sample permutation test, MDE, discordant counts),
and records that are not paired refused."""
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from bench.leaderboard.pair import compare


def record(method, ranks, fingerprint="f1", max_eval=100):
    return {"method": method, "split_fingerprint": fingerprint,
            "config": {"data": {"history_len": 5, "max_eval_samples": max_eval, "split_seed": 0}},
            "results": {"ood_test": {"target_ranks": list(ranks)}}}


def test_the_counts_and_the_test_follow_the_hits():
    a = record("a", [0] * 30 + [50] * 70)          # 30 hits
    b = record("b", [0] * 10 + [50] * 90)          # 10 hits, all shared with a
    (row,) = compare(a, b, "HR@10")
    assert (row["n"], row["a"], row["b"], row["a_only"], row["b_only"]) == (100, 0.3, 0.1, 20, 0)
    assert np.isclose(row["diff"], 0.2) and row["p"] < 0.001 and 0 < row["mde"] < 0.2
    (same,) = compare(a, a, "HR@10")
    assert same["p"] == 1.0 and same["diff"] == 0


@pytest.mark.parametrize("other, message", [
    (record("b", [0] * 100, fingerprint="f2"), "different splits"),
    (record("b", [0] * 100, max_eval=200), "max_eval_samples=100.*200: not the same test samples"),
    (record("b", [0] * 99), "100 samples.*99: not the same samples"),
])
def test_unpaired_records_are_refused(other, message):
    with pytest.raises(ValueError, match=message):
        compare(record("a", [0] * 100), other, "HR@10")


def test_the_command_reads_compressed_records_and_names_a_missing_one(tmp_path):
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(json.dumps(record("sft", [0] * 40 + [50] * 60)).encode()))
    (tmp_path / "b.json").write_text(json.dumps(record("mostpop", [0] * 20 + [50] * 80)))
    out = subprocess.run([sys.executable, "-m", "bench", "pair", str(tmp_path / "a.json.gz"), str(tmp_path / "b.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "ood_test      100   40.00   20.00  +20.00" in out.stdout
    missing = subprocess.run([sys.executable, "-m", "bench", "pair", str(tmp_path / "a.json.gz"),
                              str(tmp_path / "c.json")], capture_output=True, text=True)
    assert missing.returncode == 2 and "c.json: no such record" in missing.stderr
