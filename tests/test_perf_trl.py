"""bench/perf/trl_comparison.py: our DPO loss equals TRL DPOTrainer's on the same batch, and the script runs."""
import math

from bench.config import PreferenceConfig
from bench.perf.causal_overhead import ARCHS, random_pairs
from bench.perf.trl_comparison import fixed_batch_losses, id_tokenizer, main

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
