"""The exposure shift's ceiling (`oracle-mf`, methods/baselines.py): it ranks by the very MF that drew the OOD
targets (kept in `Split.extras`), leaves out excluded items, and exists for the exposure shift only."""
from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest

import methods
from methods.hparams import ConfigError
from splits import build_split, load_dataset
from splits.datasets import make_dataset


@pytest.fixture(scope="module")
def exposure():
    return build_split(load_dataset("ml-100k"), "exposure", 0)


def test_oracle_ranks_by_the_imputation_mf_of_the_split(exposure):
    mf = exposure.extras["imputation_mf"]
    items = np.array(sorted(set(mf.items.tolist()) | {99_999}))         # one item the MF never saw
    ctx = types.SimpleNamespace(split=exposure, items=items, stats={})
    ranker = methods.resolve("oracle-mf").fit(ctx)
    ood = exposure["ood_test"].iloc[:50]
    topk, valid = ranker.rank([[1]] * 50, [np.array([])] * 50, 20, users=ood["user"].to_numpy())
    assert valid.all() and ctx.stats["protocol"] == "imputation MF scores"
    for user, row in zip(ood["user"].to_numpy(), topk):
        raw = mf.predict(np.full(len(mf.items), user), mf.items)       # clipped: compare order where unclipped
        best = mf.items[np.argsort(-ranker.scores([user])[0][:-1], kind="stable")[:20]]
        assert items[row].tolist() == best.tolist() and 99_999 not in items[row]
        assert np.all(np.diff(raw[np.searchsorted(mf.items, items[row])]) <= 1e-9)
    # the imputed targets are what the MF scores highly: far above chance at HR@20
    targets = ood["item"].to_numpy()
    hits = np.mean([t in items[row] for t, row in zip(targets, topk)])
    assert hits > 5 * 20 / len(items)
    banned = [row[:5] for row in topk]
    again, _ = ranker.rank([[1]] * 50, [np.array([])] * 50, 20, exclude=banned, users=ood["user"].to_numpy())
    np.testing.assert_array_equal(again[:, :15], topk[:, 5:])


def test_oracle_exists_only_for_the_exposure_shift():
    temporal = build_split(load_dataset("ml-100k"), "temporal", 0)
    with pytest.raises(ConfigError, match="exposure"):
        methods.resolve("oracle-mf").fit(types.SimpleNamespace(split=temporal, items=np.arange(3), stats={}))
    assert methods.method_class("oracle-mf").shifts == ("exposure",)


def test_implicit_ratings_stay_out_of_the_mf_fit_but_count_as_seen():
    """Book-Crossing's 0s mark exposure, not dislike: the imputation MF never sees them as ratings of 0, yet an
    implicitly seen item is never drawn as an unseen OOD target."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(40):
        items = rng.choice(60, size=13, replace=False)
        rows += [(user, int(i), 0.0, t) for t, i in enumerate(items[:3])]                 # early implicit 0s
        rows += [(user, int(i), float(rng.integers(8, 11)), 100 + t) for t, i in enumerate(items[3:])]
    raw = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    dataset = make_dataset("toy", raw, {i: f"Book {i}" for i in range(60)}, 8.0, 5, info={"implicit_rating": 0.0})
    split = build_split(dataset, "exposure", 0)
    assert split.info["mf"]["implicit_ratings_left_out"] == 40 * 3
    assert split.info["mf"]["fit_ratings"] == len(raw) - 40 * 3 - split.info["observed_ood_positives"]
    implicit = set(zip(raw.loc[raw["rating"] == 0, "user"], raw.loc[raw["rating"] == 0, "item"]))
    ood = split["ood_test"]
    assert not implicit & set(zip(ood["user"], ood["item"]))
    without = build_split(make_dataset("toy", raw, {i: f"Book {i}" for i in range(60)}, 8.0, 5), "exposure", 0)
    assert without.info["mf"]["fit_ratings"] == split.info["mf"]["fit_ratings"] + 40 * 3   # as ratings of 0
