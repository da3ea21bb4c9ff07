"""Ranking metrics against hand-computed examples."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.metrics import grouped_metrics, ranking_metrics, recommendation_counts, valid_ratio
from splits.groups import popularity_groups


def ranked(rows: list[list[int]], width: int = 20) -> np.ndarray:
    return np.array([r + [-1] * (width - len(r)) for r in rows], dtype=np.int64)


def test_hand_computed():
    # target at rank 0, rank 1, rank 12, absent, and absent with an invalid (-1-filled) list
    topk = ranked([[7, 1, 2], [1, 7, 2], list(range(100, 112)) + [7], [1, 2, 3], []])
    targets = np.array([7, 7, 7, 7, 7])
    m = ranking_metrics(topk, targets)
    assert m["HR@10"] == pytest.approx(2 / 5)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3)) / 5)
    assert m["HR@20"] == pytest.approx(3 / 5)
    assert m["NDCG@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(14)) / 5)
    assert set(m) == {"HR@10", "NDCG@10", "HR@20", "NDCG@20"}
    assert all(type(v) is float for v in m.values())


def test_minus_one_never_hits_and_nothing_dropped():
    topk = ranked([[], [], [0]])
    m = ranking_metrics(topk, np.array([0, 0, 0]), valid=np.array([False, False, True]))
    assert m["HR@10"] == pytest.approx(1 / 3) and m["NDCG@10"] == pytest.approx(1 / 3)
    assert m["valid_ratio"] == pytest.approx(1 / 3)
    assert valid_ratio(np.array([True, True, False, True])) == 0.75
    with pytest.raises(ValueError):
        ranking_metrics(topk, np.array([-1, 0, 0]))  # a -1 target would match -1 fill
    with pytest.raises(ValueError):
        ranking_metrics(ranked([[0]], width=10), np.array([0]))  # HR@20 from a top-10 list


def test_popularity_groups():
    counts = np.array([5, 9, 0, 9, 1, 3, 3, 7, 2, 4])
    groups = popularity_groups(counts)
    # order by count desc, position asc: 1(9) 3(9) 7(7) 0(5) 9(4) 5(3) 6(3) 8(2) 4(1) 2(0)
    expected = {1: 0, 3: 0, 7: 1, 0: 1, 9: 2, 5: 2, 6: 3, 8: 3, 4: 4, 2: 4}
    assert groups.tolist() == [expected[i] for i in range(10)]
    assert np.bincount(popularity_groups(np.zeros(12), 5)).tolist() == [3, 3, 2, 2, 2]  # ties: by position
    assert popularity_groups(np.zeros(12), 5)[:3].tolist() == [0, 0, 0]


def test_grouped_metrics_and_counts():
    groups = np.array([0, 0, 1, 1, 2])  # 3 groups: G1 = items 0, 1
    topk = ranked([[0, 2], [2, 1], [1, 0], [4, 2]], width=10)
    targets = np.array([0, 1, 3, 2])  # groups G1, G1, G2, G2
    out = grouped_metrics(topk, targets, groups, ks=(10,))
    assert out["G1"] == {"n": 2, "HR@10": 1.0, "NDCG@10": pytest.approx((1 + 1 / math.log2(3)) / 2)}
    assert out["G2"] == {"n": 2, "HR@10": 0.5, "NDCG@10": pytest.approx(1 / math.log2(3) / 2)}
    assert out["G3"] == {"n": 0, "HR@10": None, "NDCG@10": None}
    json.dumps(out)

    counts = recommendation_counts(topk, groups, k=10)
    assert counts == {"G1": 4, "G2": 3, "G3": 1}  # 8 recommended items, -1 fill skipped
    assert recommendation_counts(topk, groups, k=1) == {"G1": 2, "G2": 1, "G3": 1}
    json.dumps(counts)
