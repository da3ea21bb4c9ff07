"""The minimal detectable difference (bench/leaderboard/significance.py `mde`): its formula, and what it promises:
a true paired difference of one MDE is detected by the paired permutation test about 80% of the time at alpha 0.05."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, t

from bench.leaderboard.significance import mde, permutation_test


def test_mde_is_the_normal_approximation_over_samples_and_student_t_over_seeds():
    d = np.array([1.0, -1.0] * 50)
    z = norm.ppf(0.975) + norm.ppf(0.8)
    assert z == pytest.approx(2.8016, abs=1e-4)
    assert mde(d) == pytest.approx(z * d.std(ddof=1) / 10)
    seeds = np.array([0.5, 1.5, 1.0])
    tq = t.ppf(0.975, 2) + t.ppf(0.8, 2)
    assert mde(seeds, large_sample=False) == pytest.approx(tq * seeds.std(ddof=1) / np.sqrt(3))
    assert mde(np.array([0.3])) is None
    assert mde(np.zeros(50)) == 0.0                                      # identical rankings: any gap is detected


def test_a_true_difference_of_one_mde_is_detected_about_80_percent_of_the_time():
    rng = np.random.default_rng(0)
    n, p_dpo, trials = 400, 0.1, 120
    # paired hits: the method hits where DPO does, plus extra hits; the shift in mean is set to one MDE
    base = rng.random(n) < p_dpo
    pilot = (rng.random(n) < 0.2).astype(float) - (rng.random(n) < 0.2).astype(float)
    target = mde(pilot)
    detected = 0
    for _ in range(trials):
        noise = (rng.random(n) < 0.2).astype(float) - (rng.random(n) < 0.2).astype(float)
        shift = (rng.random(n) < target).astype(float)                  # adds `target` to the mean difference
        method = base + noise + shift
        detected += permutation_test(method, base.astype(float), permutations=1000, seed=int(rng.integers(1e6))) < 0.05
    assert 0.65 <= detected / trials <= 0.92, detected / trials  # 0.80 expected
