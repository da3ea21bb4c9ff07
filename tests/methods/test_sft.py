"""SFT (methods/train/sft.py): the completion-only loss and the per-cell cache."""
import json

import numpy as np
import torch

from methods.train.config import SFTConfig
from methods.train.sequences import completion_logps
from methods.train.sft import CompletionCollator, cached_sft, run_sft
from tests.support import word_model_setup

WORDS = [f"w{i}" for i in range(60)]


def test_completion_loss_equals_masked_token_mean_of_the_standard_lm_loss():
    tok, model, prompts, completions = word_model_setup()
    rows = [{"input_ids": p + c, "labels": [-100] * len(p) + c} for p, c in zip(prompts[:5], completions[:5])]
    batch = CompletionCollator(tok.pad_token_id)(rows)
    with torch.no_grad():
        logps, _, _ = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                       batch["lengths"])
        ours = -logps.sum() / batch["lengths"].sum()
        total, count = 0.0, 0
        for row in rows:                                  # HF's own loss, one unpadded sequence at a time
            out = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]]))
            n = sum(label != -100 for label in row["labels"])
            total, count = total + out.loss.item() * n, count + n
    assert np.isclose(ours.item(), total / count, atol=1e-5)


def mean_nll(model, tok, prompts, completions):
    batch = CompletionCollator(tok.pad_token_id)(
        [{"input_ids": p + c, "labels": [-100] * len(p) + c} for p, c in zip(prompts, completions)])
    with torch.no_grad():
        logps, _, _ = completion_logps(model.eval(), batch["input_ids"], batch["attention_mask"],
                                       batch["position_ids"], batch["lengths"])
    return (-logps.sum() / batch["lengths"].sum()).item()


def test_sft_learns_the_completions():
    tok, model, prompts, completions = word_model_setup(n=16)
    before = [p.detach().clone() for p in model.parameters()]
    initial = mean_nll(model, tok, prompts, completions)
    model, seconds = run_sft(model, tok, prompts, completions, epochs=20, learning_rate=1e-2, batch_size=8, seed=0,
                             device="cpu")
    assert seconds > 0 and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert mean_nll(model, tok, prompts, completions) < 0.5 * initial


def test_cached_sft_trains_once(tmp_path):
    tok, _, prompts, completions = word_model_setup(n=8)
    built = []

    def build():
        built.append(1)
        return word_model_setup()[1]

    cfg = SFTConfig(epochs=1, learning_rate=1e-3, batch_size=4)
    first = cached_sft(tmp_path / "cell", build, tok, prompts, completions, cfg, 0, "cpu", "float32", log=lambda m: 0)
    second = cached_sft(tmp_path / "cell", build, tok, prompts, completions, cfg, 0, "cpu", "float32",
                        log=lambda m: 0)
    assert built == [1] and first == second
    assert json.loads((tmp_path / "cell" / "sft_stats.json").read_text())["samples"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temporary folder left behind


def test_sample_weights_reach_the_loss():
    """Weights of 0 give a zero loss (no update); weights of 1 on equal-length completions train the same model
    as no weights (the per-sample mean equals the token mean)."""
    tok, model, prompts, completions = word_model_setup(n=8)
    before = [p.detach().clone() for p in model.parameters()]
    model, _ = run_sft(model, tok, prompts, completions, epochs=1, learning_rate=1e-2, batch_size=4, seed=0,
                       device="cpu", weights=[0.0] * 8)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))

    equal = [c[:2] + [tok.eos_token_id] for c in completions]
    plain, _ = run_sft(word_model_setup()[1], tok, prompts, equal, epochs=2, learning_rate=1e-2, batch_size=4, seed=0,
                       device="cpu")
    ones, _ = run_sft(word_model_setup()[1], tok, prompts, equal, epochs=2, learning_rate=1e-2, batch_size=4, seed=0,
                      device="cpu", weights=[1.0] * 8)
    for a, b in zip(plain.parameters(), ones.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
