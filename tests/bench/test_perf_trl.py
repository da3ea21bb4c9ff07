"""bench/perf/trl_comparison.py: our DPO loss equals TRL DPOTrainer's on the same batch, and the script runs."""
import math

import trl.trainer.utils as trl_utils

from bench.perf.causal_overhead import ARCHS, random_pairs
from bench.perf.trl_comparison import fixed_batch_losses, id_tokenizer, main
from methods.train.config import PreferenceConfig

VOCAB = ARCHS["tiny"][1]["vocab_size"]


def test_our_dpo_loss_equals_trls_on_the_same_batch():
    pairs = random_pairs(6, VOCAB, prompt_len=12, title_len=3)
    out = fixed_batch_losses(pairs, id_tokenizer(VOCAB), PreferenceConfig(learning_rate=2e-5, batch_size=6))
    assert abs(out["ours"] - math.log(2)) > 1e-3          # policy != reference: not the trivial ln 2
    assert abs(out["ours"] - out["trl"]) < 1e-5
    assert abs(out["ours_chosen"] - out["trl_chosen"]) < 1e-3


def test_script_runs_end_to_end_and_prints_the_ratios(capsys):
    main(["--pairs", "32", "--repeats", "1", "--prompt-len", "12", "--title-len", "3"])
    out = capsys.readouterr().out
    for variant in ("trl ", "trl-compact ", "trl-pre ", "trl-pre-compact ", "ours "):
        assert any(line.startswith(variant) for line in out.splitlines())
    assert "ratio ours(M=1)/trl = " in out and "ours(M=6)/trl-compact = " in out and "(goal <= 0.8)" in out
    assert "ratio ours(M=1)/trl-pre = " in out
    steps = next(line for line in out.splitlines() if line.startswith("training losses"))
    diffs = [float(part.split()[-1]) for part in steps.split("steps: ")[1].split(", ")]
    assert len(diffs) == 4 and max(diffs) < 1e-5            # same batches, same model: same per-step losses


def test_lora_bf16_checkpointing_and_the_cuda_variant_set_run_on_the_cpu(capsys, monkeypatch):
    # `_use_triton` True: the variant set of a CUDA device, where TRL's own scoring makes -compact redundant
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: True)
    main(["--pairs", "16", "--repeats", "1", "--prompt-len", "8", "--title-len", "2", "--device", "cpu",
          "--bf16", "--lora", "--gradient-checkpointing"])
    out = capsys.readouterr().out
    assert out.startswith("tiny Llama (bf16 CPU, ") and ", LoRA, gradient checkpointing)" in out.splitlines()[0]
    assert "-compact variants skipped" in out and "trl-compact" not in out.split("-compact variants skipped")[1]
    assert "ratio ours(M=1)/trl = " in out and "ratio ours(M=1)/trl-pre = " in out
    assert "loss agreement (bf16 tolerance 2e-02)" in out and "within it" in out
