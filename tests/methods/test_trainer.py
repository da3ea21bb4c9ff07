"""The shared preference trainer (methods/train/preference_trainer.py): completion log-probs against naive scoring (also in
the trainer's own (1+K)*B layout for K > 1), the reference log-probs and their cache, one training run."""
import tempfile

import numpy as np
import pytest
import torch
from transformers import TrainingArguments

from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import dpo_loss, mean_reduce
from methods.train.config import PreferenceConfig as PrefCfg
from methods.train.loop import training_arguments
from methods.train.preference_trainer import (NonFiniteLoss, PairCollator, PairDataset, PreferencePairs, PreferenceTrainer,
                                      cached_reference_logps, reference_logps, train_preference)
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


def multi_negative_pairs():
    """4 prompts of lengths 2..9, each with a chosen and K = 3 rejected completions of lengths 1..5 (EOS last), so
    every row of a batch is padded differently and the slots of one prompt differ in length."""
    rng = np.random.default_rng(7)
    tokens = lambda n: rng.integers(3, 40, size=n).tolist()
    completion = lambda n: tokens(n - 1) + [2]
    prompts = [tokens(n) for n in (2, 9, 5, 3)]
    chosen = [completion(n) for n in (1, 4, 2, 5)]
    rejected = [[completion(n) for n in slot] for slot in ((3, 5, 1), (1, 2, 4), (5, 3, 2), (2, 1, 3))]
    return PreferencePairs(prompts, chosen, rejected)


def captured_trainer_logps(model, data, ref_chosen, ref_rejected):
    """The `LogProbs` that `PreferenceTrainer.compute_loss` hands its loss function for one collated batch of all of
    `data` (the training path: `PairDataset` -> `PairCollator` -> compute_loss)."""
    seen = {}

    def loss_fn(policy, reference):
        seen.update(policy=policy, reference=reference)
        return policy.chosen

    batch = PairCollator(PAD)([PairDataset(data, ref_chosen, ref_rejected)[i] for i in range(len(data))])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(**training_arguments(out, 1, len(data), 1, 1e-3, 0.0, 0, "cpu"))
        trainer = PreferenceTrainer(model=model, args=args, loss_fn=loss_fn, reduce=mean_reduce, beta=0.1)
        with torch.no_grad():
            trainer.compute_loss(model, batch)
    return seen["policy"], seen["reference"]


def test_trainer_layout_for_k_negatives_gives_every_chosen_and_rejected_logp():
    model, data = tiny_model(), multi_negative_pairs()
    ref_chosen = np.array([-1.0, -2.0, -3.0, -4.0], np.float32)                    # distinct per (prompt, slot)
    ref_rejected = -10.0 * np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    policy, reference = captured_trainer_logps(model, data, ref_chosen, ref_rejected)
    assert policy.chosen.shape == (4,) and policy.rejected.shape == (4, 3)
    for i, prompt in enumerate(data.prompts):
        assert policy.chosen[i].item() == pytest.approx(naive_logp(model, prompt, data.chosen[i]), abs=1e-4)
        assert policy.chosen_len[i].item() == len(data.chosen[i])
        for j, completion in enumerate(data.rejected[i]):
            assert policy.rejected[i, j].item() == pytest.approx(naive_logp(model, prompt, completion), abs=1e-4), \
                (i, j)
            assert policy.rejected_len[i, j].item() == len(completion)
    # the reference values travel from the dataset to the same (prompt, slot)
    assert reference.chosen.tolist() == ref_chosen.tolist() and reference.rejected.tolist() == ref_rejected.tolist()
    assert torch.equal(reference.chosen_len, policy.chosen_len) and torch.equal(reference.rejected_len,
                                                                                policy.rejected_len)


def test_reference_logps_for_k_negatives_equal_the_trainer_layout():
    model, data = tiny_model(), multi_negative_pairs()
    chosen, rejected = reference_logps(model, data, PAD, "cpu", batch_size=3)      # batches of 3 and 1 prompts
    assert chosen.shape == (4,) and rejected.shape == (4, 3)
    policy, _ = captured_trainer_logps(model, data, np.zeros(4, np.float32), np.zeros((4, 3), np.float32))
    np.testing.assert_allclose(chosen, policy.chosen.numpy(), atol=1e-4)
    np.testing.assert_allclose(rejected, policy.rejected.numpy(), atol=1e-4)
    naive = [[naive_logp(model, p, c) for c in r] for p, r in zip(data.prompts, data.rejected)]
    np.testing.assert_allclose(rejected, naive, atol=1e-4)


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
