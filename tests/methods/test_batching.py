"""Length-grouped batches (`methods.train.batching`) and SFT with `group_by_length`: every sample once per epoch,
batches of similar lengths, the one short batch last, seeded orders that change with the epoch."""
import numpy as np

from methods.train.batching import LengthGroupedSampler, padding_share
from methods.train.sft import sft_trainer
from tests.support import word_model_setup


def batches_of(order: list[int], size: int) -> list[list[int]]:
    return [order[i: i + size] for i in range(0, len(order), size)]


def test_every_sample_is_visited_once_per_epoch_in_length_groups():
    lengths = np.random.default_rng(0).integers(20, 140, size=203)
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=3, window=10)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(203)) and len(sampler) == 203
        batches = batches_of(order, 8)
        assert [len(b) for b in batches] == [8] * 25 + [3]                   # the short batch comes last
        shuffled = batches_of(np.random.default_rng(epoch).permutation(203).tolist(), 8)
        assert padding_share(lengths, batches) < padding_share(lengths, shuffled) / 3
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first                                         # each epoch its own order
    again = LengthGroupedSampler(lengths, batch_size=8, seed=3, window=10)
    assert list(again) == first                                           # seeded
    assert list(LengthGroupedSampler(lengths, batch_size=8, seed=4, window=10)) != first


def test_batch_order_is_shuffled_not_a_long_to_short_sweep():
    lengths = np.arange(400)
    batches = batches_of(list(LengthGroupedSampler(lengths, batch_size=4, seed=0, window=100)), 4)
    longest = [int(lengths[b].max()) for b in batches]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_sft_with_group_by_length_batches_by_length(tmp_path):
    tok, model, prompts, completions = word_model_setup(n=40)
    trainer = sft_trainer(model, tok, prompts, completions, str(tmp_path), 1, 1e-3, 4, 0, "cpu",
                          group_by_length=True)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sorted(sampler) == list(range(40))
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    assert list(sampler.lengths) == lengths
    plain = sft_trainer(model, tok, prompts, completions, str(tmp_path), 1, 1e-3, 4, 0, "cpu")
    assert not isinstance(plain._get_train_sampler(), LengthGroupedSampler)
