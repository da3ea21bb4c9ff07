"""MostPop and Random (methods/baselines.py): popularity order, a seeded permutation per prompt that does not
depend on the sample's row (sharding), and both leave out the excluded (consumed) items."""
from __future__ import annotations

import types

import numpy as np

import methods


def fitted(name: str, counts: np.ndarray, seed: int = 0):
    ctx = types.SimpleNamespace(train_counts=counts, items=np.arange(100, 100 + len(counts)), seed=seed, stats={})
    return methods.resolve(name).fit(ctx), ctx


def test_mostpop_ranks_by_training_count_and_skips_excluded_items():
    ranker, ctx = fitted("mostpop", np.array([5, 9, 9, 1, 0, 7]))
    topk, valid = ranker.rank([[1], [1]], [np.array([])] * 2, 4)
    assert topk.tolist() == [[1, 2, 5, 0]] * 2 and valid.all()          # ties by position
    topk, _ = ranker.rank([[1], [1]], [np.array([])] * 2, 5, exclude=[np.array([2, 5]), np.array([0, 1, 2, 3, 5])])
    assert topk.tolist() == [[1, 0, 3, 4, -1], [4, -1, -1, -1, -1]]
    assert ctx.stats["protocol"] == "popularity order"


def test_random_is_a_seeded_permutation_per_prompt_whatever_its_row():
    ranker, _ = fitted("random", np.zeros(30))
    prompts = [[1, 5, 7], [1, 8], [1, 9, 9, 4]]
    topk, _ = ranker.rank(prompts, [np.array([])] * 3, 30)
    assert all(sorted(row.tolist()) == list(range(30)) for row in topk)
    shard, _ = ranker.rank(prompts[1:], [np.array([])] * 2, 30)        # the rows another process would get
    np.testing.assert_array_equal(shard, topk[1:])
    again, _ = fitted("random", np.zeros(30), seed=0)
    np.testing.assert_array_equal(again.rank(prompts, [np.array([])] * 3, 30)[0], topk)
    other, _ = fitted("random", np.zeros(30), seed=1)
    assert not np.array_equal(other.rank(prompts, [np.array([])] * 3, 30)[0], topk)
    excluded, _ = ranker.rank(prompts, [np.array([])] * 3, 30, exclude=[topk[0, :3], np.array([]), np.array([])])
    assert excluded[0].tolist() == topk[0, 3:].tolist() + [-1, -1, -1]
