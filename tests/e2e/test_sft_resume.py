"""A long SFT end to end on the smoke profile: a learning curve's point stops the run part-way and the whole run
continues from its checkpoint; the checkpoint settings leave a record's key alone; a committed SFT model
(`sft.prebuilt_dir`) is ranked from without training."""
from __future__ import annotations

import json
import shutil

import torch

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


def test_a_prebuilt_model_trained_on_another_machine_is_used_and_named(tmp_path):
    """A committed model whose identity differs from the cell's only in the training machine's thread count is
    ranked from; the record names the committed model's tag. One that differs in anything else is not."""
    first, _ = smoke_run(tmp_path / "a", "r", methods=("sft",))
    tag = first["sft"]["sft_tag"]
    entry = tmp_path / "a" / "cache" / "sft" / tag
    identity = json.loads((entry / "sft_identity.json").read_text())
    assert identity["cpu_threads"] == torch.get_num_threads()
    elsewhere = tmp_path / "committed" / "0123456789abcdef"
    shutil.copytree(entry, elsewhere)
    (elsewhere / "sft_identity.json").write_text(json.dumps({**identity, "cpu_threads": 64}))
    other_seed = tmp_path / "committed" / "fedcba9876543210"
    shutil.copytree(entry, other_seed)
    (other_seed / "sft_identity.json").write_text(json.dumps({**identity, "seed": 99}))

    again, log = smoke_run(tmp_path / "b", "r", f"sft.prebuilt_dir={tmp_path / 'committed'}", methods=("sft",))
    assert "sft: training on" not in log and "trained on another machine: cpu_threads 64" in log
    assert again["sft"]["sft_tag"] == "0123456789abcdef"
    assert again["sft"]["results"]["ood_test"]["metrics"] == first["sft"]["results"]["ood_test"]["metrics"]

    (elsewhere / "sft_identity.json").write_text(json.dumps({**identity, "seed": 98}))
    own, log = smoke_run(tmp_path / "c", "r", f"sft.prebuilt_dir={tmp_path / 'committed'}", methods=("sft",))
    assert "no committed model" in log and "sft: training on" in log and own["sft"]["sft_tag"] == tag
