"""Samples and negatives: the history rule, caps, determinism."""
import numpy as np
import pandas as pd
import pytest

from methods.negatives import random_negatives
from splits import Split
from splits.samples import build_samples


def frame(rows):
    df = pd.DataFrame(rows, columns=["idx", "user", "item", "rating", "timestamp"]).set_index("idx")
    df.index.name = None
    df["positive"] = True
    return df


def toy_split():
    train = frame([(0, 1, 10, 5, 100), (1, 1, 11, 5, 200), (2, 1, 12, 5, 200), (3, 1, 13, 5, 300),
                   (5, 2, 20, 5, 50)])
    test = frame([(4, 1, 14, 5, 250), (6, 2, 21, 5, 10), (-1, 1, 15, 4.5, 200)])
    empty = test.iloc[:0]
    return Split("toy", "temporal", 0, {"train": train, "valid": empty, "iid_test": empty, "ood_test": test}, "fp")


def test_history_is_the_most_recent_training_positives_before_the_target():
    samples = build_samples(toy_split(), "ood_test", history_len=2)
    # user 1 at t=250: train items before it are 10, 11, 12 -> last two; user 2 at t=10 has none -> dropped;
    # the imputed target (id -1) at t=200 comes before the real interactions at t=200
    assert samples.targets.tolist() == [14, 15]
    assert [h.tolist() for h in samples.histories] == [[11, 12], [10]]
    assert samples.dropped == 1


def test_training_samples_never_see_their_own_target():
    samples = build_samples(toy_split(), "train", history_len=10)
    for target, history in zip(samples.targets, samples.histories):
        assert target not in history.tolist()
    assert samples.targets.tolist() == [11, 12, 13]


def test_cap_keeps_a_seeded_subset():
    split = toy_split()
    a = build_samples(split, "train", 10, max_samples=2, seed=3)
    b = build_samples(split, "train", 10, max_samples=2, seed=3)
    assert len(a) == 2 and a.targets.tolist() == b.targets.tolist()


def test_random_negatives_avoid_target_and_history_and_are_seeded():
    items = np.arange(100, 130)
    targets = np.array([100, 101, 102])
    histories = [np.array([103, 104]), np.array([105]), np.array([100, 101])]
    neg = random_negatives(targets, histories, items, 5, seed=0)
    assert neg.shape == (3, 5)
    for row, t, h in zip(neg, targets, histories):
        assert t not in row and not set(h) & set(row) and len(set(row)) == 5
    assert np.array_equal(neg, random_negatives(targets, histories, items, 5, seed=0))
    assert not np.array_equal(neg, random_negatives(targets, histories, items, 5, seed=1))


def test_catalogue_too_small_for_k_negatives_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        random_negatives(np.array([1]), [np.array([2])], np.arange(1, 4), 3, seed=0)
