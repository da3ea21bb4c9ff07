"""A long SFT end to end on the smoke profile: a learning curve's point stops the run part-way and the whole run
continues from its checkpoint; the checkpoint settings leave a record's key alone; a committed SFT model
(`sft.prebuilt_dir`) is ranked from without training."""
from __future__ import annotations

import shutil

from tests.e2e.test_fit_cache import smoke_run


def test_a_stopped_run_continues_and_keeps_the_uninterrupted_runs_key(tmp_path):
    point, log = smoke_run(tmp_path, "r", "sft.stop_after_samples=64", "sft.save_steps=4", methods=("sft",))
    assert "stopping at step 2" in log and point["sft"]["sft"]["samples_seen"] == 64
    whole, log = smoke_run(tmp_path, "r", "sft.save_steps=4", methods=("sft",))
    assert "continuing from checkpoint-2" in log and "samples_seen" not in whole["sft"]["sft"]
    plain, log = smoke_run(tmp_path / "plain", "r", methods=("sft",))
    assert "sft: training on" in log and "checkpoints in" not in log
    assert plain["sft"]["key"] == whole["sft"]["key"] != point["sft"]["key"]
    assert abs(plain["sft"]["results"]["ood_test"]["metrics"]["HR@10"] - whole["sft"]["results"]["ood_test"]["metrics"]["HR@10"]) <= 1 / 64


def test_a_prebuilt_sft_model_is_used_untrained(tmp_path):
    first, log = smoke_run(tmp_path / "a", "r", methods=("sft",))
    tag = first["sft"]["sft_tag"]
    shutil.copytree(tmp_path / "a" / "cache" / "sft" / tag, tmp_path / "committed" / tag)
    again, log = smoke_run(tmp_path / "b", "r", f"sft.prebuilt_dir={tmp_path / 'committed'}", methods=("sft",))
    assert "sft: training on" not in log and f"sft: cached ({tmp_path / 'committed' / tag})" in log
    assert again["sft"]["key"] == first["sft"]["key"]
    assert again["sft"]["results"]["ood_test"]["metrics"] == first["sft"]["results"]["ood_test"]["metrics"]
    assert not (tmp_path / "b" / "cache" / "sft").exists()
