"""The paired significance test of a method against DPO (bench/leaderboard/significance.py): no difference gives
p = 1; the Monte Carlo sign-flip p-value matches the exact one enumerated over all 2^n sign flips; `paired_p`
averages the per-sample metric over seeds before testing; without per-sample ranks it falls back to scipy's paired
t-test over the seed values, and to None or a fixed answer where that test has nothing to work with."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import ttest_rel

from bench.leaderboard.significance import paired_p, per_sample, permutation_test

PART = "ood_test"


def record(ranks: list[int] | None = None, hr10: float = 0.1) -> dict:
    """The part of a run record (bench.pipeline.run) that the significance test reads."""
    part = {"metrics": {"HR@10": hr10, "NDCG@10": hr10 / 2, "HR@20": hr10, "NDCG@20": hr10 / 2, "valid_ratio": 1.0},
            "samples": 64 if ranks is None else len(ranks)}
    if ranks is not None:
        part["target_ranks"] = ranks
    return {"method": "m", "results": {PART: part}}


def exact_p(differences) -> float:
    """Two-sided sign-flip p-value by full enumeration: the share of the 2^n sign vectors (over the non-zero
    differences) whose |mean| reaches the observed |mean|."""
    d = np.asarray(differences, float)
    d = d[d != 0]
    observed = abs(d.mean())
    hits = sum(abs((np.array(signs) * d).mean()) >= observed - 1e-12
               for signs in itertools.product((-1.0, 1.0), repeat=len(d)))
    return hits / 2 ** len(d)


# --- no difference ------------------------------------------------------------------------------------------------

def test_identical_per_sample_arrays_give_p_one():
    a = np.array([1.0, 0.0, 0.5, 0.25, 1.0])
    assert permutation_test(a, a.copy()) == 1.0
    assert permutation_test(np.zeros(0), np.zeros(0)) == 1.0


def test_records_with_identical_target_ranks_give_p_one():
    ranks = [0, 3, 20, 7, 12, 1, 20, 5]
    mine = {0: record(ranks), 1: record(ranks[::-1])}
    dpo = {0: record(list(ranks)), 1: record(ranks[::-1])}
    for metric in ("HR@10", "NDCG@10", "HR@20", "NDCG@20"):
        assert paired_p(mine, dpo, PART, metric, ({}, {})) == 1.0


def test_differences_that_cancel_out_give_p_one():
    """Observed mean 0: every sign flip is at least as extreme."""
    assert permutation_test(np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0])) == 1.0
    assert permutation_test(np.array([0.7]), np.array([0.2])) == 1.0   # one difference: both signs tie


# --- the permutation p-value against the exact enumeration -----------------------------------------------------------

@pytest.mark.parametrize("differences, exact", [
    ([0.9, 0.7, 0.5, -0.2, 0.4], 4 / 32),
    ([3.0, -1.0, 2.0, 0.5, 1.5], 6 / 32),
    ([0.5, -0.25, 1.0, 0.75], 4 / 16),
    ([1.0, -1.0, 1.0, -1.0, 1.0], 1.0),
])
def test_the_monte_carlo_p_value_matches_the_exact_enumeration(differences, exact):
    assert exact_p(differences) == pytest.approx(exact)   # the hand count above
    b = np.linspace(0.0, 1.0, len(differences))
    a = b + np.array(differences)
    for seed in (0, 1):
        assert permutation_test(a, b, permutations=20_000, seed=seed) == pytest.approx(exact, abs=0.01)
    # zero differences (tied samples) are left out: they change neither the exact nor the estimated p-value
    padded_a, padded_b = np.concatenate([a, [0.3, 0.3]]), np.concatenate([b, [0.3, 0.3]])
    assert permutation_test(padded_a, padded_b, permutations=20_000) == permutation_test(a, b, permutations=20_000)


@pytest.mark.parametrize("n", [4, 5])
def test_the_most_extreme_observed_difference_gets_the_smallest_p_value(n):
    """All differences of one sign: only the identity and the all-flipped vector reach it, p = 2 / 2^n."""
    d = np.array([0.5, 1.0, 0.25, 2.0, 0.75][:n])
    assert exact_p(d) == 2 / 2 ** n
    for a, b in ((d, np.zeros(n)), (np.zeros(n), d)):   # two-sided: the direction does not matter
        assert permutation_test(a, b, permutations=20_000) == pytest.approx(2 / 2 ** n, abs=0.01)


def test_the_p_value_is_seeded_and_floored_at_one_over_permutations_plus_one():
    a, b = np.ones(30), np.zeros(30)   # exact p = 2^-29: no random flip reaches it but the identity's +1
    assert permutation_test(a, b, permutations=2_000, seed=3) == permutation_test(a, b, permutations=2_000, seed=3)
    assert permutation_test(a, b, permutations=2_000) == 1 / 2_001


# --- paired_p on per-sample target ranks -----------------------------------------------------------------------------

def test_per_sample_metrics_from_target_ranks():
    ranks = [0, 2, 6, 9, 10, 19, 20]
    rec = record(ranks)
    assert per_sample(rec, PART, "HR@10").tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert per_sample(rec, PART, "HR@20").tolist() == [1, 1, 1, 1, 1, 1, 0]
    assert per_sample(rec, PART, "NDCG@10") == pytest.approx([1, 0.5, 1 / 3, 1 / np.log2(11), 0, 0, 0])
    assert per_sample(record(None), PART, "HR@10") is None


def test_paired_p_averages_each_sample_over_the_seeds_both_records_have():
    mine = {0: record([0, 20, 3, 20, 20, 2]), 1: record([1, 20, 20, 20, 4, 0]), 7: record([0] * 6)}
    dpo = {0: record([20, 20, 3, 5, 20, 20]), 1: record([20, 0, 20, 20, 20, 20]), 9: record([20] * 6)}
    # HR@10 per sample, seeds 0 and 1 only: mine (1,0,1,0,0,1) and (1,0,0,0,1,1); DPO (0,0,1,1,0,0) and (0,1,0,0,0,0)
    d = np.array([1.0, -0.5, 0.0, -0.5, 0.5, 1.0])
    assert paired_p(mine, dpo, PART, "HR@10", ({}, {})) == permutation_test(d, np.zeros_like(d))
    # (the per-sample test needs no seed values: it ran although the t-test would have had none)
    assert paired_p(mine, dpo, PART, "HR@10", ({}, {})) == pytest.approx(exact_p(d), abs=0.01)


def test_paired_p_of_a_method_that_wins_on_every_differing_sample():
    ranks_dpo = [20, 20, 20, 20, 20, 4, 8, 20]
    ranks_mine = [0, 5, 2, 9, 1, 4, 8, 20]   # 5 wins, 3 ties
    p = paired_p({0: record(ranks_mine)}, {0: record(ranks_dpo)}, PART, "HR@10", ({}, {}))
    assert p == pytest.approx(2 / 2 ** 5, abs=0.01)
    assert paired_p({0: record(ranks_dpo)}, {0: record(ranks_mine)}, PART, "HR@10", ({}, {})) == p


# --- the t-test fallback ---------------------------------------------------------------------------------------------

def test_without_target_ranks_the_seed_values_get_scipys_paired_t_test():
    mine_values, dpo_values = {0: 5.0, 1: 6.5, 2: 4.0, 3: 7.25}, {0: 4.0, 1: 6.0, 2: 4.5, 3: 5.0}
    seeds = (0, 1, 2, 3)
    mine, dpo = {s: record(None, mine_values[s]) for s in seeds}, {s: record(None, dpo_values[s]) for s in seeds}
    expected = ttest_rel([5.0, 6.5, 4.0, 7.25], [4.0, 6.0, 4.5, 5.0]).pvalue
    assert 0 < expected < 1
    assert paired_p(mine, dpo, PART, "HR@10", (mine_values, dpo_values)) == pytest.approx(expected, rel=1e-12)
    # a record with ranks paired with one without: still the seed-level test
    mine[0] = record([0, 1, 2], mine_values[0])
    assert paired_p(mine, dpo, PART, "HR@10", (mine_values, dpo_values)) == pytest.approx(expected, rel=1e-12)


def test_the_t_test_uses_only_seeds_with_a_record_and_a_value_on_both_sides():
    mine_values, dpo_values = {0: 5.0, 1: 6.5, 2: 4.0, 3: 9.0}, {0: 4.0, 1: 6.0, 2: 4.5, 4: 1.0}
    mine = {s: record(None) for s in (0, 1, 2, 3)}
    dpo = {s: record(None) for s in (0, 1, 2, 4)}
    expected = ttest_rel([5.0, 6.5, 4.0], [4.0, 6.0, 4.5]).pvalue
    assert paired_p(mine, dpo, PART, "HR@10", (mine_values, dpo_values)) == pytest.approx(expected, rel=1e-12)


def test_fewer_than_two_paired_seeds_give_no_test():
    values = ({0: 5.0, 1: 6.0}, {0: 4.0, 1: 4.5})
    assert paired_p({0: record(None)}, {0: record(None)}, PART, "HR@10", values) is None        # one seed
    assert paired_p({0: record(None)}, {1: record(None)}, PART, "HR@10", values) is None        # none in common
    assert paired_p({}, {}, PART, "HR@10", values) is None
    both = {0: record(None), 1: record(None)}
    assert paired_p(both, dict(both), PART, "HR@10", ({0: 5.0, 1: 6.0}, {1: 4.5})) is None    # one seed valued
    # sample counts that differ: no per-sample test, and one seed is too few for the t-test
    assert paired_p({0: record([0, 1, 2])}, {0: record([0, 1])}, PART, "HR@10", values) is None


def test_a_constant_difference_over_the_seeds_gives_zero_and_no_difference_gives_one():
    seeds = (0, 1, 2)
    mine, dpo = {s: record(None) for s in seeds}, {s: record(None) for s in seeds}
    base = {0: 4.0, 1: 6.0, 2: 5.5}
    shifted = {s: v + 0.75 for s, v in base.items()}
    assert paired_p(mine, dpo, PART, "HR@10", (shifted, base)) == 0.0
    assert paired_p(mine, dpo, PART, "HR@10", (base, shifted)) == 0.0
    assert paired_p(mine, dpo, PART, "HR@10", (base, dict(base))) == 1.0
