"""Paired significance of a method against DPO on the same test samples.

Per-sample test (preferred): when both records carry ``results[part]["target_ranks"]`` (the 0-based rank of each
test sample's target in the top-K list, K when absent; same split and sample cap, hence the same samples in the
same order), the per-sample metric (hit@K or 1/log2(rank+2)) is averaged over seeds and a two-sided paired
sign-flip permutation test is run on the differences (10,000 permutations, fixed seed).
Fallback: with two or more seeds on both sides and no per-sample ranks, a paired t-test over the seed means
(scipy.stats.ttest_rel; pairs are the seeds both have). Otherwise no test (None).

Minimal detectable difference (`paired_mde`): the smallest true mean difference the same paired comparison would
detect with 80% power at alpha 0.05 (two-sided), given the spread of the observed paired differences:
``MDE = (z_{1-alpha/2} + z_{power}) * sd(d) / sqrt(n)`` over the n per-sample differences d (each averaged over the
seeds both records have), or, without per-sample ranks, the same with Student t quantiles (n - 1 degrees of
freedom) over the n >= 2 seed-level differences. In the metric's own units (HR@10 as a fraction; the tables
multiply by 100). A difference smaller than the MDE is one the profile cannot resolve.
"""
from __future__ import annotations

import numpy as np

PERMUTATIONS = 10_000
ALPHA, POWER = 0.05, 0.8


def per_sample(record: dict, part: str, metric: str) -> np.ndarray | None:
    ranks = record.get("results", {}).get(part, {}).get("target_ranks")
    if ranks is None:
        return None
    ranks = np.asarray(ranks, dtype=float)
    name, k = metric.split("@")
    hit = ranks < int(k)
    if name == "HR":
        return hit.astype(float)
    return np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)


def permutation_test(a: np.ndarray, b: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of mean(a - b) = 0 under random sign flips of the paired differences."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    diff = diff[diff != 0]
    if len(diff) == 0:
        return 1.0
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, permutations, 1000):
        signs = rng.choice((-1.0, 1.0), size=(min(1000, permutations - start), len(diff)))
        count += int((np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum())
    return (count + 1) / (permutations + 1)


def paired_differences(method_records: dict[int, dict], dpo_records: dict[int, dict], part: str,
                       metric: str) -> np.ndarray | None:
    """Per-sample differences (method - DPO) of the per-sample metric averaged over the seeds both have, or None
    when a record lacks per-sample ranks or the sample counts differ."""
    seeds = sorted(set(method_records) & set(dpo_records))
    a = [per_sample(method_records[s], part, metric) for s in seeds]
    b = [per_sample(dpo_records[s], part, metric) for s in seeds]
    if not seeds or any(x is None for x in a + b) or len({len(x) for x in a + b}) != 1:
        return None
    return np.mean(a, axis=0) - np.mean(b, axis=0)


def mde(differences: np.ndarray, alpha: float = ALPHA, power: float = POWER, large_sample: bool = True) -> float | None:
    """Minimal detectable mean difference of a paired test on `differences` (module docstring); None below 2."""
    from scipy.stats import norm, t

    d = np.asarray(differences, float)
    if len(d) < 2:
        return None
    quantile = norm.ppf if large_sample else (lambda q: t.ppf(q, len(d) - 1))
    return float((quantile(1 - alpha / 2) + quantile(power)) * d.std(ddof=1) / np.sqrt(len(d)))


def paired_mde(method_records: dict[int, dict], dpo_records: dict[int, dict], part: str, metric: str,
               seed_values: tuple[dict[int, float], dict[int, float]], scale: float = 1.0) -> float | None:
    """MDE of method vs DPO, per sample when both have target ranks (times `scale`, the unit of `seed_values`:
    100 for values in %), else over the seed values (>= 2 paired seeds); None otherwise."""
    d = paired_differences(method_records, dpo_records, part, metric)
    if d is not None:
        return mde(scale * d)
    mine, theirs = seed_values
    paired = [s for s in sorted(set(method_records) & set(dpo_records)) if s in mine and s in theirs]
    return mde(np.array([mine[s] - theirs[s] for s in paired]), large_sample=False) if len(paired) >= 2 else None


def paired_p(method_records: dict[int, dict], dpo_records: dict[int, dict], part: str, metric: str,
             seed_values: tuple[dict[int, float], dict[int, float]]) -> float | None:
    """p-value of method vs DPO (records by seed); None when no test applies."""
    seeds = sorted(set(method_records) & set(dpo_records))
    if not seeds:
        return None
    d = paired_differences(method_records, dpo_records, part, metric)
    if d is not None:
        return permutation_test(d, np.zeros_like(d))
    mine, theirs = seed_values
    paired = [s for s in seeds if s in mine and s in theirs]
    if len(paired) < 2:
        return None
    from scipy.stats import ttest_rel

    x, y = np.array([mine[s] for s in paired]), np.array([theirs[s] for s in paired])
    d = x - y
    if np.all(d == d[0]):  # constant difference: the t statistic is undefined
        return 0.0 if d[0] != 0 else 1.0
    return float(ttest_rel(x, y).pvalue)
