"""Resumable SFT (methods/train/checkpoints.py, `cached_sft` with checkpoints): a run stopped part-way and continued
reaches the uninterrupted run's weights, a learning curve's points are stops of one run, and a cut-off checkpoint
is never resumed from."""
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from methods.train.checkpoints import complete_checkpoints, resume_point
from methods.train.config import SFTConfig
from methods.train.sft import cached_sft, stop_step_for
from tests.support import word_model_setup

QUIET = dict(log=lambda m: None)


def setup(n=24):
    tok, _, prompts, completions = word_model_setup(n=n)
    return tok, prompts, completions, lambda: word_model_setup()[1]


def weights(path):
    return {k: v for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol), key


def sft(tmp_path, name, cfg, data, checkpoints="ckpt"):
    tok, prompts, completions, build = data
    stats = cached_sft(tmp_path / name, build, tok, prompts, completions, cfg, 0, "cpu", "float32", **QUIET,
                       checkpoints=tmp_path / checkpoints if checkpoints else None)
    return stats, weights(tmp_path / name)


def test_stop_step_counts_whole_steps_and_ignores_stops_at_or_past_the_end():
    cfg = SFTConfig(epochs=2, batch_size=4, grad_accum=2)       # 24 samples: 6 batches, 3 steps per epoch, 6 steps
    assert stop_step_for(cfg, 24) is None
    assert stop_step_for(SFTConfig(epochs=2, batch_size=4, grad_accum=2, stop_after_samples=8), 24) == 1
    assert stop_step_for(SFTConfig(epochs=2, batch_size=4, grad_accum=2, stop_after_samples=9), 24) == 2
    assert stop_step_for(SFTConfig(epochs=2, batch_size=4, grad_accum=2, stop_after_samples=48), 24) is None
    assert stop_step_for(SFTConfig(epochs=2, batch_size=4, grad_accum=2, stop_after_samples=40), 24) == 5


def test_a_stopped_and_continued_run_reaches_the_uninterrupted_weights(tmp_path):
    data = setup()
    base = dict(epochs=2, learning_rate=1e-2, batch_size=4, group_by_length=True, warmup_ratio=0.1)
    _, whole = sft(tmp_path, "whole", SFTConfig(**base), data, checkpoints=None)
    first, early = sft(tmp_path, "early", SFTConfig(**base, save_steps=2, stop_after_samples=12), data)
    assert first["stop_step"] == 3 and first["samples_seen"] == 12
    assert sorted(complete_checkpoints(tmp_path / "ckpt")) == [2, 3]   # every 2 steps, and at the stop
    assert not all(torch.allclose(whole[k], early[k], atol=1e-6) for k in whole)   # the stop is another model
    resumed_stats, resumed = sft(tmp_path, "resumed", SFTConfig(**base, save_steps=2), data)
    assert_same_weights(whole, resumed)
    assert sorted(complete_checkpoints(tmp_path / "ckpt")) == [2, 3, 4, 6, 8, 10, 12]
    assert resumed_stats["train_seconds"] > first["train_seconds"] > 0     # the run's seconds, over both sessions
    assert resumed_stats["seconds_per_epoch"] > 0


def test_a_curve_point_comes_from_its_checkpoint_without_training(tmp_path):
    data = setup()
    base = dict(epochs=1, learning_rate=1e-2, batch_size=4)
    _, trained = sft(tmp_path, "a", SFTConfig(**base, stop_after_samples=8), data)
    built = []
    tok, prompts, completions, build = data
    stats = cached_sft(tmp_path / "b", lambda: built.append(1) or build(), tok, prompts, completions,
                       SFTConfig(**base, stop_after_samples=8), 0, "cpu", "float32", **QUIET,
                       checkpoints=tmp_path / "ckpt")
    assert built == [] and stats["stop_step"] == 2 and stats["seconds_per_epoch"] > 0
    assert_same_weights(trained, weights(tmp_path / "b"), atol=0)


def test_a_later_point_continues_from_an_earlier_one(tmp_path):
    data = setup()
    base = dict(epochs=1, learning_rate=1e-2, batch_size=4)
    _, direct = sft(tmp_path, "direct", SFTConfig(**base, stop_after_samples=16), data, checkpoints="other")
    sft(tmp_path, "p8", SFTConfig(**base, stop_after_samples=8), data)
    _, chained = sft(tmp_path, "p16", SFTConfig(**base, stop_after_samples=16), data)
    assert sorted(complete_checkpoints(tmp_path / "ckpt")) == [2, 4]
    assert_same_weights(direct, chained)


def test_a_cut_off_checkpoint_is_not_resumed_from(tmp_path):
    data = setup()
    base = dict(epochs=1, learning_rate=1e-2, batch_size=4)
    sft(tmp_path, "p8", SFTConfig(**base, stop_after_samples=8), data)
    cut = tmp_path / "ckpt" / "checkpoint-4"
    shutil.copytree(tmp_path / "ckpt" / "checkpoint-2", cut)
    (cut / "trainer_state.json").unlink()                     # the Trainer writes it last
    assert resume_point(tmp_path / "ckpt", None).name == "checkpoint-2"
    json.loads((tmp_path / "ckpt" / "checkpoint-2" / "trainer_state.json").read_text())


@pytest.mark.parametrize("setting", ["save_steps", "stop_after_samples"])
def test_the_settings_do_not_leak_into_the_model_identity_but_stops_do(setting):
    from bench.pipeline import stable_config
    from bench.config import RunConfig

    cfg = RunConfig()
    setattr(cfg.sft, setting, 8)
    assert bool(stable_config(cfg.to_dict())["sft"]) == (setting == "stop_after_samples")


def test_a_folder_of_another_run_is_refused(tmp_path):
    data = setup(n=8)
    tok, prompts, completions, build = data
    cfg = SFTConfig(epochs=1, learning_rate=1e-2, batch_size=4, save_steps=1)
    cached_sft(tmp_path / "a", build, tok, prompts, completions, cfg, 0, "cpu", "float32", **QUIET,
               checkpoints=tmp_path / "ckpt", run_key="run-a")
    assert json.loads((tmp_path / "ckpt" / "run.json").read_text()) == {"run": "run-a"}
    with pytest.raises(ValueError, match=r"run\.json: the checkpoints of SFT run run-a, not of this run \(run-b\)"):
        cached_sft(tmp_path / "b", build, tok, prompts, completions, cfg, 0, "cpu", "float32", **QUIET,
                   checkpoints=tmp_path / "ckpt", run_key="run-b")


def test_keep_checkpoints_keeps_the_newest(tmp_path):
    data = setup(n=24)
    sft(tmp_path, "a", SFTConfig(epochs=1, learning_rate=1e-2, batch_size=4, save_steps=1, keep_checkpoints=2), data)
    assert sorted(complete_checkpoints(tmp_path / "ckpt")) == [5, 6]
