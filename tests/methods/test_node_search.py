"""The node-level branch-and-bound (`methods.ranking.node_search`) against full likelihood scoring on tiny random
Llamas: the same k best (order, ties, exclusions), the same scores to float rounding, and the nodes it feeds."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.config import RankingConfig
from bench.perf.likelihood_bounds import fed_nodes, token_logprobs
from methods.ranking import rank, score_all, top_k
from methods.ranking.catalogue import excluded
from methods.ranking.node_search import top_k_scores
from methods.ranking.protocols import protocol_cost_key, protocol_options, ranking_for_cost_key
from tests.support import PAD, random_catalogue, random_prompts


def assert_k_best(ranked: np.ndarray, reference: np.ndarray, k: int) -> None:
    """`ranked` (top_k positions) holds each row's k best by `reference`, in order, up to float rounding (the two
    computations differ in batch shapes, so a near-tie may swap); -1 only past a row's rankable items."""
    for row, scores in zip(ranked, reference):
        m = min(k, int(np.isfinite(scores).sum()))
        assert (row[:m] >= 0).all() and (row[m:] == -1).all()
        np.testing.assert_allclose(scores[row[:m]], -np.sort(-scores)[:m], atol=1e-5, rtol=0)


def exclusions(n_prompts: int, n_items: int, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(n_items, size=int(rng.integers(0, n_items // 2)), replace=False) for _ in range(n_prompts)]


@pytest.mark.parametrize("k", [1, 5, 10, 80])
@pytest.mark.parametrize("expand", [1, 4, 32])
@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("which", ["model", "peaked_model"])
def test_node_search_finds_the_full_top_k(request, which, k, expand, exclude):
    """The k best by full scoring (the excluded items left out), in their order; every score it computed equals the
    full one to float rounding, the others are -inf."""
    model = request.getfixturevalue(which)
    catalogue = random_catalogue(60, seed=4)
    prompts = random_prompts([7, 3, 12, 1, 9, 5, 8])
    banned = exclusions(len(prompts), len(catalogue)) if exclude else None
    full = score_all(model, prompts, catalogue, batch_size=3, chunk_len=4)
    got = top_k_scores(model, prompts, catalogue, k, batch_size=3, expand=expand, exclude=banned)
    reference = excluded(full, banned) if banned is not None else full
    assert_k_best(top_k(got, k), reference, k)
    computed = np.isfinite(got)
    np.testing.assert_allclose(got[computed], full[computed], atol=1e-5, rtol=0)
    if banned is not None:
        assert all(not computed[row, items].any() for row, items in enumerate(banned))
    if k >= len(catalogue):  # every other item is needed
        assert (computed == np.isfinite(reference)).all()


def test_best_first_feeds_exactly_the_nodes_above_the_kth_best(model):
    """With expand=1 a node is fed iff its prefix log-prob is at least the k-th best score: the count an independent
    per-token computation (`bench.perf.likelihood_bounds`) predicts, and fewer than the trie's nodes."""
    catalogue = random_catalogue(60, seed=4)
    prompts = random_prompts([7, 3, 12, 1, 9])
    completions = [list(c) for c in catalogue.completions]
    expected, every = 0, 0
    for prompt in prompts:
        prefix = np.cumsum(token_logprobs(model, prompt, completions, PAD), axis=1)
        kept, every = fed_nodes(completions, prefix, np.sort(prefix[:, -1])[-5])
        expected += kept
    stats: dict = {}
    top_k_scores(model, prompts, catalogue, 5, batch_size=2, expand=1, stats=stats)
    assert stats["fed"] == expected < every * len(prompts)
    wide: dict = {}
    top_k_scores(model, prompts, catalogue, 5, batch_size=2, expand=32, stats=wide)
    assert wide["rounds"] < stats["rounds"] and wide["fed"] >= stats["fed"]  # fewer, larger calls


def test_the_protocol_runs_the_node_search_when_asked(peaked_model, monkeypatch):
    import methods.ranking.likelihood as likelihood
    calls = []
    monkeypatch.setattr(likelihood, "top_k_scores", lambda *a, **kw: calls.append(kw) or top_k_scores(*a, **kw))
    catalogue = random_catalogue(60, seed=4)
    prompts = random_prompts([7, 3, 12, 1, 9, 5, 8])
    banned = exclusions(len(prompts), len(catalogue))
    ranking = RankingConfig(protocol="likelihood", likelihood_search="nodes", likelihood_expand=4)
    options = protocol_options(ranking, None, lambda: None, "cpu")
    assert options == {"search": "nodes", "expand": 4}
    nodes = rank("likelihood", peaked_model, prompts, catalogue, k=10, batch_size=3, exclude=banned, **options)
    assert_k_best(nodes.topk, excluded(score_all(peaked_model, prompts, catalogue, batch_size=3), banned), 10)
    assert [c["expand"] for c in calls] == [4]
    rank("likelihood", peaked_model, prompts, catalogue, k=10, batch_size=3, exclude=banned)  # the default: chunks
    assert len(calls) == 1
    assert protocol_cost_key(ranking) == "likelihood/nodes"
    assert ranking_for_cost_key("likelihood/nodes", RankingConfig()).likelihood_search == "nodes"
    with pytest.raises(ValueError, match="likelihood_search"):
        protocol_options(dataclasses.replace(ranking, likelihood_search="trie"), None, lambda: None, "cpu")
