"""Shift splits on ML-100K (splits.shifts, Appendix B.1): disjointness, proportions, determinism, shift properties."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from splits import PARTS, SHIFTS, Dataset, Split, UnknownNameError, build_split, load_dataset
from splits.fingerprint import fingerprint_split
from splits.shifts import global_latest, gini, normalized_entropy

SHIFT_NAMES = ["iid", "temporal", "popularity", "exposure", "mixed"]


@pytest.fixture(scope="module")
def ml() -> Dataset:
    return load_dataset("ml-100k")


@pytest.fixture(scope="module")
def splits(ml) -> dict[str, Split]:
    return {name: build_split(ml, name, seed=0) for name in SHIFT_NAMES}


def test_registered():
    assert SHIFTS.names() == sorted(SHIFT_NAMES)


def test_unknown_shift(ml):
    with pytest.raises(UnknownNameError, match="Did you mean 'temporal'"):
        build_split(ml, "temporl", seed=0)


@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_parts_are_disjoint_positive_rows(ml, splits, name):
    split = splits[name]
    assert (split.dataset, split.shift, split.seed) == ("ml-100k", name, 0)
    assert tuple(split.parts) == PARTS
    observed = {part: df.index[df.index >= 0] for part, df in split.parts.items()}
    for a, b in itertools.combinations(PARTS, 2):
        assert not set(observed[a]) & set(observed[b]), (a, b)
    for part, df in split.parts.items():
        assert tuple(df.columns) == tuple(ml.interactions.columns)
        assert df.dtypes.equals(ml.interactions.dtypes)
        assert df["positive"].all()
        rows = df.loc[observed[part]]
        pd.testing.assert_frame_equal(rows, ml.interactions.loc[observed[part]])
    assert split.info["sizes"] == {part: len(df) for part, df in split.parts.items()}


@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_proportions(ml, splits, name):
    n = len(ml.positives)
    sizes = splits[name].info["sizes"]
    ood = sizes["ood_test"] / n
    if name == "iid":
        assert ood == 0
    elif name == "mixed":  # limited by the future positives of users seen before the cut (see test_mixed)
        later = min(splits[name].info["future_positives_of_known_users"], round(0.04 * n))
        assert sizes["ood_test"] == later + min(4 * later, round(0.16 * n))
    else:
        assert ood == pytest.approx(0.2, abs=0.002)
    rest = sizes["train"] + sizes["valid"] + sizes["iid_test"]
    for part, share in zip(["train", "valid", "iid_test"], [0.7, 0.1, 0.2]):
        assert sizes[part] / rest == pytest.approx(share, abs=0.001)
    if name == "iid":
        assert rest == n
    elif name in ("temporal", "popularity"):
        assert rest + sizes["ood_test"] == n
    elif name == "mixed":  # the positives before the cut minus the popularity sample
        popular = round(sizes["ood_test"] * 0.8)
        assert rest == n - splits[name].info["future_positives"] - popular
    print(name, sizes)


@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_determinism(ml, splits, name):
    again = build_split(ml, name, seed=0)
    assert again.fingerprint == splits[name].fingerprint
    for part in PARTS:
        pd.testing.assert_frame_equal(again[part], splits[name][part])
    assert build_split(ml, name, seed=1).fingerprint != splits[name].fingerprint


def test_fingerprint_canonical(splits):
    parts = splits["temporal"].parts
    shuffled = {part: df.sample(frac=1.0, random_state=1) for part, df in reversed(parts.items())}
    assert fingerprint_split(shuffled) == splits["temporal"].fingerprint
    moved = dict(parts, valid=parts["valid"].iloc[1:], iid_test=pd.concat([parts["iid_test"], parts["valid"].iloc[:1]]))
    assert fingerprint_split(moved) != splits["temporal"].fingerprint


def test_temporal(ml, splits):
    split = splits["temporal"]
    ood = split["ood_test"]
    before = pd.concat([split["train"], split["valid"], split["iid_test"]])
    assert (ood["timestamp"].groupby(ood["user"]).min() >= before["timestamp"].groupby(before["user"]).max()).all()
    # per-user count = round half up of 20% of the user's positives
    n_u = ml.positives.groupby("user").size()
    expected = np.floor(0.2 * n_u + 0.5).astype(int)
    assert ood.groupby("user").size().reindex(n_u.index, fill_value=0).equals(expected)
    # the OOD rows are the latest ones: every later positive of the user is in ood_test too
    first = ood.index.to_series().groupby(ood["user"]).min()
    later = ml.positives[ml.positives.index >= ml.positives["user"].map(first)]
    assert set(later.index) == set(ood.index)


def test_popularity_flatness(ml, splits):
    flat = splits["popularity"].info["flatness"]
    print("popularity gini train %.3f ood %.3f; entropy train %.3f ood %.3f" % (
        flat["train"]["gini"], flat["ood_test"]["gini"], flat["train"]["entropy"], flat["ood_test"]["entropy"]))
    assert flat["ood_test"]["gini"] <= flat["train"]["gini"] - 0.1
    assert flat["ood_test"]["entropy"] > flat["train"]["entropy"]
    # recompute the figure from the parts
    items = np.sort(ml.positives["item"].unique())
    counts = splits["popularity"]["ood_test"]["item"].value_counts().reindex(items, fill_value=0).to_numpy()
    assert gini(counts) == pytest.approx(flat["ood_test"]["gini"], abs=1e-4)
    # and the temporal split, not popularity-balanced, is not flatter
    ood = splits["temporal"]["ood_test"]["item"].value_counts().reindex(items, fill_value=0).to_numpy()
    assert gini(ood) > flat["ood_test"]["gini"] + 0.1


def test_gini_entropy_reference_values():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert normalized_entropy(np.array([3, 3, 3])) == pytest.approx(1.0)
    assert normalized_entropy(np.array([0, 0, 7])) == pytest.approx(0.0)


def test_exposure(ml, splits):
    split = splits["exposure"]
    info = split.info
    print("exposure", info["mf"], "observed OOD positives imputed >= 4:",
          info["observed_ood_positives_imputed_positive"], "non-positives:",
          info["observed_ood_negatives_imputed_positive"], "filled:", info["filled_targets"])
    targets = split["ood_test"]
    assert (targets.index == -1).all()
    # train/valid/iid_test are those of the temporal split with the same seed
    for part in ("train", "valid", "iid_test"):
        assert split[part].index.equals(splits["temporal"][part].index)
    # as many targets per user as observed OOD-period positives, never an item the user rated, no repeats
    observed = splits["temporal"]["ood_test"]
    assert targets.groupby("user").size().equals(observed.groupby("user").size())
    rated = set(zip(ml.interactions["user"], ml.interactions["item"]))
    assert not any(pair in rated for pair in zip(targets["user"], targets["item"]))
    assert not targets.duplicated(["user", "item"]).any()
    # imputed ratings clear the threshold, except the filled ones (top imputed unrated items)
    assert (targets["rating"] < ml.positive_threshold).sum() == info["filled_targets"]
    assert info["filled_targets"] < 0.05 * len(targets)
    assert targets["rating"].between(1, 5).all()
    # timestamp = the user's first OOD-period interaction
    assert targets["timestamp"].groupby(targets["user"]).first().equals(
        observed["timestamp"].groupby(observed["user"]).min())
    # the MF is a reasonable fit and separates observed OOD positives from non-positives
    assert info["mf"]["train_rmse"] < 0.8 and info["mf"]["ood_period_rmse"] < 1.05
    assert info["observed_ood_positives_imputed_positive"] > 2 * info["observed_ood_negatives_imputed_positive"]


def test_mixed(ml, splits):
    """Appendix B.1: the temporal part lies in a future window after a global time cut, and no training
    interaction is after the cut; 80% popularity-balanced, 20% temporal."""
    split = splits["mixed"]
    info = split.info
    n = len(ml.positives)
    training = pd.concat([split["train"], split["valid"], split["iid_test"]])
    ood = split["ood_test"]
    cut = info["time_cut"]
    assert training["timestamp"].max() == cut                       # nothing trained on lies after the cut
    after = ood["timestamp"].to_numpy() > cut
    assert after.mean() == pytest.approx(0.2, abs=0.001)            # the temporal part: after the training period
    assert info["ood_popularity_share"] == pytest.approx(0.8, abs=0.001)
    assert info["ood_temporal_share"] == pytest.approx(after.mean(), abs=1e-4)
    # the future window: the globally latest ~20% of positives (ties kept before the cut), every one after the cut
    future = ml.positives[ml.positives["timestamp"] > cut]
    assert len(future) == info["future_positives"] and abs(len(future) - round(0.2 * n)) < 0.01 * n
    assert set(ood.index[after]) <= set(future.index) and not set(training.index) & set(future.index)
    # every temporal target's user has positives before the cut (a prompt needs a history)
    assert set(ood.loc[after, "user"]) <= set(ml.positives.loc[ml.positives["timestamp"] <= cut, "user"])
    assert info["temporal_discarded"] == len(future) - after.sum()
    assert info["flatness"]["ood_test"]["gini"] <= info["flatness"]["train"]["gini"] - 0.1


def test_global_latest_never_splits_a_tie():
    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 3, 4, 5], "rating": 5.0,
                          "timestamp": [10, 20, 20, 30, 40], "positive": True})
    assert global_latest(frame, 0.4).tolist() == [3, 4]             # latest two: ids 3 and 4
    assert global_latest(frame, 0.6).tolist() == [3, 4]             # the third (t=20) ties with id 1: it stays before
    assert global_latest(frame, 0.0).tolist() == []


def test_exposure_imputes_in_user_blocks_with_the_same_targets(ml, splits):
    """Users are imputed a block at a time (never a dense users x items matrix); the draws do not depend on the block
    size, and they are the targets this shift drew before blocks existed (its split fingerprint for seed 0)."""
    whole = splits["exposure"]
    assert whole.fingerprint == "7d95413e49f99173d0318a6cc35ed75061e43e5f60467edb94ba3caee12b9ba3"
    for block in (1, 37):
        blocked = build_split(ml, "exposure", 0, block_users=block)
        assert blocked.fingerprint == whole.fingerprint
        np.testing.assert_allclose(blocked["ood_test"]["rating"], whole["ood_test"]["rating"], rtol=0, atol=1e-9)
