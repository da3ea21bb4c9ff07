"""Distribution-shift splits of a dataset's positive interactions (CausalDPO, Appendix B.1).

`build_split(dataset, shift, seed)` returns a `Split` whose parts ``train``, ``valid``, ``iid_test`` and ``ood_test``
hold *positive* interactions (rows of `Dataset.positives`, index = interaction id). Every random choice comes from
one ``numpy.random.default_rng(seed)``, so a (dataset, shift, seed, options) gives the same split everywhere.
N is the number of positives; ``round(x)`` below means round half up, ``floor(x + 0.5)``.

Common pieces:

* **7:1:2 split** of a set of ids: sort the ids, permute them with the generator, cut at ``round(0.7 n)`` and
  ``round(0.8 n)`` into train / valid / iid_test.
* **per-user latest 20%**: for a user with n_u positives, the last ``k_u = round(0.2 n_u)`` of them ordered by
  (timestamp, interaction id). So k_u >= 1 whenever n_u >= 3 (in particular for n_u >= 5); a user with 1 or 2
  positives has none.
* **popularity-balanced sample** of size m from a set of ids: drawn without replacement with probability
  proportional to 1 / pop(item), pop = the item's number of positives in the whole dataset (``Generator.choice``
  with ``p``). Each item carries about the same total weight, so the sample's item counts are much flatter.

Shifts (``ood_fraction`` = 0.2 by default):

* ``iid``: 7:1:2 split of all positives; ``ood_test`` is empty.
* ``temporal``: ``ood_test`` = per-user latest 20%; the rest split 7:1:2. No OOD interaction of a user is earlier
  than any of that user's train/valid/iid_test interactions.
* ``popularity``: ``ood_test`` = popularity-balanced sample of round(0.2 N) positives; the rest split 7:1:2.
  `Split.info["flatness"]` gives the Gini coefficient and normalised entropy of the item counts of each part, over
  the items that have a positive (items absent from a part count as 0).
* ``exposure``: the per-user latest 20% of positives mark each user's OOD period, which starts at the user's first
  such interaction (by interaction id) and contains every later rating of the user, positive or not. The other
  positives are split 7:1:2 exactly as in ``temporal`` (same seed, same parts). The OOD test simulates a fully
  exposed test set by MF imputation (Saito 2020; Wei et al. 2021):
  1. fit a biased MF (`splits.imputation`, ALS, rank 16, reg 0.1, 10 epochs, seeded from the generator) on every
     rating of the dataset outside the OOD periods (train + valid + iid_test period, all ratings, not only positives)
     except implicit ones (Book-Crossing's 0s mark exposure, not a rating of 0: left out of the fit, still "rated");
  2. for each user, in user-id order (imputed `block_users` users at a time, so memory stays at a block x items
     matrix whatever the number of users; the draws do not depend on the block size), with n_u positives in the OOD
     period: candidates = items of the MF (items
     rated outside the OOD periods) that the user never rated anywhere in the dataset and whose imputed rating is
     >= the dataset's positive threshold; draw n_u of them uniformly without replacement (exposure independent of
     popularity); if fewer than n_u candidates exist, take them all and fill with the highest-imputed remaining
     unrated items (ties by item id);
  3. each target is a row with index -1, rating = its imputed rating, timestamp = the timestamp of the user's first
     OOD-period interaction (so histories are taken from before it), positive = True.
  The MF is kept in `Split.extras["imputation_mf"]` (the `oracle-mf` reference row ranks with it). Info: the MF's
  training RMSE, its RMSE on the observed OOD-period ratings, the fraction of observed OOD-period
  positives (and, for contrast, non-positives) whose imputed rating clears the threshold, and the number of
  filled targets.
* ``mixed`` (Appendix B.1: the temporal part comes "from a later (future) time window that does not overlap with
  the training period"): a **global time cut**. T = the positives after the cut, the latest round(0.2 N) by
  (timestamp, id) less those tied with the cut's timestamp, so every positive of T is strictly later than every
  other positive; R = the rest. P = popularity-balanced sample of round(0.16 N) from R; train/valid/iid_test = 7:1:2
  split of R minus P, so no training interaction lies after the cut; ood_test = P + a uniform sample L from the
  positives of T whose user has a positive before the cut (a prompt needs a history: users who arrive after the cut
  cannot be prompted), in the proportion 80% popularity / 20% temporal: |L| = min(round(0.04 N), that many) and
  |P| = 4 |L| (at most round(0.16 N)). On ML-100K users arrive over time, so only about 1,600 future positives
  belong to earlier users and the OOD part is about 15% of N instead of 20%. The rest of T is discarded (future
  data). Info records the cut, the shares and how many future positives had a known user.

Every shift records the part sizes and their fractions of N in `Split.info`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .fingerprint import fingerprint_split
from .imputation import fit_biased_mf
from .registry import Registry
from .types import PARTS, Dataset, Split

PartsAndInfo = tuple[dict[str, pd.DataFrame], dict]
ShiftBuilder = Callable[..., PartsAndInfo]
SHIFTS: Registry[ShiftBuilder] = Registry("shift")


def build_split(dataset: Dataset, shift: str, seed: int, **options) -> Split:
    """Build the named shift of ``dataset`` with ``numpy.random.default_rng(seed)``; options go to the builder."""
    make = SHIFTS.get(shift)
    n = len(dataset.positives)
    if n == 0:
        raise ValueError(f"dataset {dataset.name!r} has no positive interaction left after its filters "
                         f"({dataset.info.get('positive_rule', 'positive threshold')}, users with >= "
                         f"{dataset.min_user_positives} positives): nothing to split")
    parts, info = make(dataset, np.random.default_rng(seed), **options)
    extras = info.pop("extras", {})
    info = {
        "n_positives": n,
        "sizes": {part: len(parts[part]) for part in PARTS},
        "fractions": {part: round(len(parts[part]) / n, 4) for part in PARTS},
        **info,
    }
    return Split(dataset.name, shift, seed, parts, fingerprint_split(parts), info, extras)


# ---- common pieces -------------------------------------------------------------------------------------------

def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


def _take(positives: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    return positives.loc[np.sort(ids)]


def split_712(positives: pd.DataFrame, ids: np.ndarray, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    ids = rng.permutation(np.sort(ids))
    cut1, cut2 = _round(0.7 * len(ids)), _round(0.8 * len(ids))
    return {
        "train": _take(positives, ids[:cut1]),
        "valid": _take(positives, ids[cut1:cut2]),
        "iid_test": _take(positives, ids[cut2:]),
    }


def latest_per_user(positives: pd.DataFrame, fraction: float) -> np.ndarray:
    """Ids of each user's last round(fraction * n_u) positives, ordered by (timestamp, interaction id)."""
    ordered = positives.sort_index().sort_values(["user", "timestamp"], kind="stable")
    by_user = ordered.groupby("user")
    from_end = by_user.cumcount(ascending=False).to_numpy()
    keep = np.floor(fraction * by_user["item"].transform("size").to_numpy() + 0.5)
    return np.sort(ordered.index.to_numpy()[from_end < keep])


def global_latest(positives: pd.DataFrame, fraction: float) -> np.ndarray:
    """Ids of the positives after a global time cut: the latest ``round(fraction * N)`` by (timestamp, interaction
    id), less those sharing the cut's timestamp with an earlier positive, so every id returned is strictly later
    than every id left out (no tie straddles the cut)."""
    ordered = positives.sort_index().sort_values("timestamp", kind="stable")
    keep = len(ordered) - _round(fraction * len(ordered))
    if keep >= len(ordered):
        return np.array([], dtype=np.int64)
    cut = ordered["timestamp"].iloc[keep - 1] if keep > 0 else None
    later = ordered.iloc[keep:]
    if cut is not None:
        later = later[later["timestamp"] > cut]
    return np.sort(later.index.to_numpy())


def popularity_sample(positives: pd.DataFrame, ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` ids drawn without replacement with probability proportional to 1 / (item's positive count)."""
    ids = np.sort(ids)
    popularity = positives["item"].map(positives["item"].value_counts())
    weights = 1.0 / popularity.loc[ids].to_numpy(dtype="float64")
    return rng.choice(ids, size=size, replace=False, p=weights / weights.sum())


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = all equal, -> 1 = all mass on one entry)."""
    x = np.sort(np.asarray(counts, dtype="float64"))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(2 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def normalized_entropy(counts: np.ndarray) -> float:
    """Entropy of the count distribution divided by log(#entries) (1 = uniform)."""
    p = np.asarray(counts, dtype="float64")
    if len(p) < 2 or p.sum() == 0:
        return 0.0
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum() / np.log(len(counts)))


def item_flatness(parts: dict[str, pd.DataFrame], items: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for name, part in parts.items():
        counts = part["item"].value_counts().reindex(items, fill_value=0).to_numpy()
        out[name] = {"gini": round(gini(counts), 4), "entropy": round(normalized_entropy(counts), 4)}
    return out


# ---- shifts --------------------------------------------------------------------------------------------------

@SHIFTS.register("iid")
def iid_shift(dataset: Dataset, rng: np.random.Generator) -> PartsAndInfo:
    positives = dataset.positives
    parts = split_712(positives, positives.index.to_numpy(), rng)
    parts["ood_test"] = positives.iloc[:0]
    return parts, {}


@SHIFTS.register("temporal")
def temporal_shift(dataset: Dataset, rng: np.random.Generator, ood_fraction: float = 0.2) -> PartsAndInfo:
    positives = dataset.positives
    ood = latest_per_user(positives, ood_fraction)
    parts = split_712(positives, np.setdiff1d(positives.index.to_numpy(), ood), rng)
    parts["ood_test"] = _take(positives, ood)
    return parts, {"ood_fraction": ood_fraction, "ood_users": int(parts["ood_test"]["user"].nunique())}


@SHIFTS.register("popularity")
def popularity_shift(dataset: Dataset, rng: np.random.Generator, ood_fraction: float = 0.2) -> PartsAndInfo:
    positives = dataset.positives
    ids = positives.index.to_numpy()
    ood = popularity_sample(positives, ids, _round(ood_fraction * len(ids)), rng)
    parts = split_712(positives, np.setdiff1d(ids, ood), rng)
    parts["ood_test"] = _take(positives, ood)
    items = np.sort(positives["item"].unique())
    return parts, {"ood_fraction": ood_fraction, "flatness": item_flatness(parts, items)}


@SHIFTS.register("exposure")
def exposure_shift(
    dataset: Dataset,
    rng: np.random.Generator,
    ood_fraction: float = 0.2,
    rank: int = 16,
    reg: float = 0.1,
    epochs: int = 10,
    block_users: int = 2048,
) -> PartsAndInfo:
    positives, ratings = dataset.positives, dataset.interactions
    threshold = dataset.positive_threshold
    ood = latest_per_user(positives, ood_fraction)
    parts = split_712(positives, np.setdiff1d(positives.index.to_numpy(), ood), rng)

    observed_ood = _take(positives, ood)
    period_start = pd.Series(observed_ood.index, index=observed_ood["user"]).groupby(level=0).min()
    in_period = ratings.index.to_numpy() >= ratings["user"].map(period_start).fillna(np.inf).to_numpy()
    implicit = dataset.info.get("implicit_rating")  # Book-Crossing's 0s mark exposure, not dislike
    is_implicit = (ratings["rating"] == implicit).to_numpy() if implicit is not None else np.zeros(len(ratings), bool)
    fit = ratings[~in_period & ~is_implicit]
    mf = fit_biased_mf(fit["user"].to_numpy(), fit["item"].to_numpy(), fit["rating"].to_numpy(), rng,
                       rank=rank, reg=reg, epochs=epochs)

    known = ratings[ratings["user"].isin(mf.users) & ratings["item"].isin(mf.items)]
    known_rows = np.searchsorted(mf.users, known["user"].to_numpy())
    known_cols = np.searchsorted(mf.items, known["item"].to_numpy())
    by_row = np.argsort(known_rows, kind="stable")
    known_rows, known_cols = known_rows[by_row], known_cols[by_row]

    needed = observed_ood.groupby("user").size()
    needed = needed[needed.index.isin(mf.users)]  # always all of them when every user rated before the OOD period
    rows, filled = [], 0
    for start in range(0, len(needed), block_users):  # a block of users at a time: never a dense users x items matrix
        block = needed.iloc[start: start + block_users]
        block_rows = np.searchsorted(mf.users, block.index.to_numpy())
        scores = mf.predict_rows(block_rows)
        seen = np.zeros(scores.shape, dtype=bool)
        lo, hi = np.searchsorted(known_rows, block_rows), np.searchsorted(known_rows, block_rows, side="right")
        for local, (a, b) in enumerate(zip(lo, hi)):
            seen[local, known_cols[a:b]] = True
        for local, (user, n_u) in enumerate(block.items()):
            candidates = np.flatnonzero(~seen[local] & (scores[local] >= threshold))
            if len(candidates) >= n_u:
                picked = np.sort(rng.choice(candidates, size=n_u, replace=False))
            else:
                rest = np.flatnonzero(~seen[local] & (scores[local] < threshold))
                fill = rest[np.argsort(-scores[local, rest], kind="stable")][: n_u - len(candidates)]
                picked, filled = np.sort(np.concatenate([candidates, fill])), filled + len(fill)
            begins = ratings.at[period_start[user], "timestamp"]
            rows.append(pd.DataFrame({"user": user, "item": mf.items[picked], "rating": scores[local, picked],
                                      "timestamp": begins, "positive": True}))
    targets = pd.concat(rows, ignore_index=True) if rows else positives.iloc[:0].reset_index(drop=True)
    targets.index = pd.Index(np.full(len(targets), -1, dtype="int64"))
    parts["ood_test"] = targets.astype(positives.dtypes.to_dict())

    period = ratings[in_period & ~is_implicit & ratings["user"].isin(mf.users) & ratings["item"].isin(mf.items)]
    imputed = mf.predict(period["user"].to_numpy(), period["item"].to_numpy())
    observed_pos = period["positive"].to_numpy()
    return parts, {
        "ood_fraction": ood_fraction,
        "extras": {"imputation_mf": mf},
        "mf": {"rank": rank, "reg": reg, "epochs": epochs, "fit_ratings": len(fit),
               "implicit_ratings_left_out": int((~in_period & is_implicit).sum()),
               "train_rmse": round(mf.train_rmse, 4),
               "ood_period_rmse": round(float(np.sqrt(np.mean((imputed - period["rating"].to_numpy()) ** 2))), 4)},
        "observed_ood_positives": len(observed_ood),
        "observed_ood_positives_imputed_positive": round(float(np.mean(imputed[observed_pos] >= threshold)), 4),
        "observed_ood_negatives_imputed_positive": round(float(np.mean(imputed[~observed_pos] >= threshold)), 4),
        "filled_targets": filled,
    }


@SHIFTS.register("mixed")
def mixed_shift(
    dataset: Dataset, rng: np.random.Generator, ood_fraction: float = 0.2, popularity_share: float = 0.8
) -> PartsAndInfo:
    positives = dataset.positives
    n = len(positives)
    future = global_latest(positives, ood_fraction)
    rest = np.setdiff1d(positives.index.to_numpy(), future)
    cut = int(positives.loc[rest, "timestamp"].max())
    known = future[positives.loc[future, "user"].isin(positives.loc[rest, "user"]).to_numpy()]
    n_later = min(len(known), _round((1 - popularity_share) * ood_fraction * n))
    n_balanced = min(_round(n_later * popularity_share / (1 - popularity_share)),
                     _round(popularity_share * ood_fraction * n))
    balanced = popularity_sample(positives, rest, n_balanced, rng)
    later = rng.choice(known, size=n_later, replace=False)
    parts = split_712(positives, np.setdiff1d(rest, balanced), rng)
    parts["ood_test"] = _take(positives, np.concatenate([balanced, later]))
    n_ood = len(parts["ood_test"])
    items = np.sort(positives["item"].unique())
    return parts, {
        "ood_fraction": ood_fraction,
        "time_cut": cut,
        "ood_popularity_share": round(len(balanced) / n_ood, 4),
        "ood_temporal_share": round(len(later) / n_ood, 4),
        "future_positives": len(future),
        "future_positives_of_known_users": len(known),
        "temporal_discarded": len(future) - len(later),
        "flatness": item_flatness(parts, items),
    }
