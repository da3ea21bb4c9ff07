"""The shared preference trainer (methods/train/preference.py): log-probs, the reference cache, one training run."""
import numpy as np
import pytest
import torch

from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import dpo_loss, mean_reduce
from methods.train.config import PreferenceConfig as PrefCfg
from methods.train.preference import NonFiniteLoss, cached_reference_logps, reference_logps, train_preference
from methods.train.sequences import completion_logps, left_padded
from tests.support import naive_logp, pairs, tiny_model

PAD = 0


def test_left_padded_completion_logps_equal_unpadded_scoring():
    model, data = tiny_model(), pairs()
    ids, mask, pos, lengths = left_padded(data.prompts, data.chosen, PAD, "cpu")
    with torch.no_grad():
        logps, prompt_h, end_h = completion_logps(model, ids, mask, pos, lengths, want_hidden=True)
    expected = [naive_logp(model, p, c) for p, c in zip(data.prompts, data.chosen)]
    assert np.allclose(logps.numpy(), expected, atol=1e-4)
    # h_i is the hidden state of the last prompt token: it does not depend on the completion
    ids2, mask2, pos2, len2 = left_padded(data.prompts, [r[0] for r in data.rejected], PAD, "cpu")
    with torch.no_grad():
        _, prompt_h2, _ = completion_logps(model, ids2, mask2, pos2, len2, want_hidden=True)
    assert torch.allclose(prompt_h, prompt_h2, atol=1e-5)


def test_reference_logps_shapes_and_values(tmp_path):
    model, data = tiny_model(), pairs(n=5, k=3)
    chosen, rejected = reference_logps(model, data, PAD, "cpu", batch_size=2)
    assert chosen.shape == (5,) and rejected.shape == (5, 3)
    assert np.isclose(rejected[4, 2], naive_logp(model, data.prompts[4], data.rejected[4][2]), atol=1e-4)


def test_reference_cache_is_reused_and_a_corrupt_entry_recomputed(tmp_path):
    data, calls = pairs(n=4, k=1), []

    def loader():
        calls.append(1)
        return tiny_model()

    first = cached_reference_logps(tmp_path, "sft-a", loader, data, PAD, "cpu", log=lambda m: None)
    second = cached_reference_logps(tmp_path, "sft-a", loader, data, PAD, "cpu", log=lambda m: None)
    assert len(calls) == 1 and np.array_equal(first[0], second[0])
    (entry,) = (tmp_path / "reflogps").glob("*.npz")
    entry.write_bytes(b"not a zip file")
    third = cached_reference_logps(tmp_path, "sft-a", loader, data, PAD, "cpu", log=lambda m: None)
    assert len(calls) == 2 and np.allclose(third[0], first[0])
    cached_reference_logps(tmp_path, "sft-b", loader, data, PAD, "cpu", log=lambda m: None)
    assert len(calls) == 3                                  # another reference model is another entry


@pytest.mark.parametrize("causal", [False, True])
def test_training_changes_parameters_and_lowers_the_loss(causal):
    model, data = tiny_model(), pairs(n=32, k=1)
    ref = reference_logps(model, data, PAD, "cpu")
    before = [p.detach().clone() for p in model.parameters()]
    reg = CausalRegularizer(16, CausalConfig(projection_dim=4)) if causal else None
    cfg = PrefCfg(epochs=3, learning_rate=5e-3, batch_size=8, grad_accum=1, warmup_ratio=0.0, max_grad_norm=1.0)
    model, seconds, history = train_preference(model, data, ref, lambda p, r: dpo_loss(p, r, 0.5),
                                               mean_reduce, 0.5, cfg, 0, "cpu", PAD, reg)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(np.isfinite(history["pref_loss"]))
    assert np.mean(history["pref_loss"][-4:]) < np.mean(history["pref_loss"][:4])
    assert seconds > 0
    if causal:
        assert "causal/envs" in history


def test_non_finite_loss_stops_with_the_step_number():
    model, data = tiny_model(), pairs(n=8, k=1)
    ref = reference_logps(model, data, PAD, "cpu")
    cfg = PrefCfg(epochs=1, learning_rate=1e-3, batch_size=4, grad_accum=1, warmup_ratio=0.0, max_grad_norm=1.0)
    with pytest.raises(NonFiniteLoss, match="step 1"):
        train_preference(model, data, ref, lambda p, r: p.chosen * float("nan"), mean_reduce, 0.1, cfg, 0,
                         "cpu", PAD)


def test_the_padded_mask_is_causal_hides_padding_and_leaves_no_row_empty():
    from methods.train.sequences import padded_causal_mask

    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    additive = padded_causal_mask(mask, torch.float32)
    allowed = additive[:, 0] == 0
    assert allowed.shape == (2, 4, 4) and allowed.any(-1).all()               # every query sees some key
    assert allowed[0, 3].tolist() == [False, False, True, True]                # real query: real keys up to itself
    assert allowed[0, 1].tolist() == [False, True, False, False]               # padding query: only itself
    assert allowed[1].equal(torch.ones(4, 4, dtype=torch.bool).tril())         # no padding: plain causal
