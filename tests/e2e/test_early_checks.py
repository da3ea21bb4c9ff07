"""A misspelt method setting fails when the command starts, not after the SFT stage: one `error:` line with the
choices and a "did you mean", status 2, nothing trained or written (on the `tiny` profile, whose SFT takes minutes)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("command, setting, message", [
    (["run", "--methods", "causaldpo"], "causaldpo.assignment=jointt",
     "error: --set causaldpo.assignment: 'jointt' is not one of joint, detached, adversarial. Did you mean 'joint'?"),
    (["run", "--methods", "dpo,bigrec"], "bigrec.protocol=grounds",
     "error: --set bigrec.protocol: 'grounds' is not one of grounding, run. Did you mean 'grounding'?"),
    (["run", "--methods", "rosepo", "--shift", "temporal"], "rosepo.negative_strategy=self-hard",
     "error: --set rosepo.negative_strategy: 'self-hard' is not one of self_hard, popularity, random, mixed. "
     "Did you mean 'self_hard'?"),
    (["leaderboard", "--tables", "1"], "sasrec.loss_type=bpr",
     "error: --set sasrec.loss_type: 'bpr' is not one of CE, BPR."),
])
def test_a_bad_choice_fails_before_any_training(tmp_path, command, setting, message):
    started = time.monotonic()
    out = ["--set", f"results_dir={tmp_path / 'results'}", "--set", f"cache_dir={tmp_path / 'cache'}"] \
        if command[0] == "run" else ["--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]
    proc = subprocess.run([sys.executable, "-m", "bench", *command, "--profile", "tiny", *out, "--set", setting],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    seconds = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [message]  # nothing logged: no data, no SFT, no traceback
    assert not tmp_path.joinpath("results").exists() and not tmp_path.joinpath("cache").exists()
    assert seconds < 120, f"{seconds:.0f}s: the check came late (a tiny SFT alone takes minutes)"
