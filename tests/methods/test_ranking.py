"""Ranking protocols against brute force on a tiny random Llama: exact likelihoods, top-k order, beam validity."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from methods.ranking import PROTOCOLS, Ranking, rank, score_all, top_k
from methods.ranking.catalogue import excluded
from methods.ranking.lm_head import log_probs as _log_probs
from methods.ranking.trie import Trie
from splits.registry import UnknownNameError
from tests.support import EOS, VOCAB, greedy_constrained, naive_scores, random_catalogue, random_prompts


def test_trie():
    trie = Trie([[5, 6, EOS], [5, 6, 7, EOS], [9, EOS]], eos_id=EOS)
    assert trie.allowed([]) == [5, 9]
    assert trie.allowed([5, 6]) == [EOS, 7]
    assert trie.allowed([5, 6, EOS]) == [] and trie.allowed([4]) == []
    assert trie.item([5, 6, EOS]) == 0 and trie.item([5, 6, 7, EOS]) == 1 and trie.item([9, EOS]) == 2
    assert trie.item([5, 6]) is None and trie.item([5, 6, 7]) is None and trie.item([3, EOS]) is None
    with pytest.raises(ValueError):
        Trie([[5, 6]], eos_id=EOS)  # no EOS
    with pytest.raises(ValueError):
        Trie([[5, EOS], [5, EOS]], eos_id=EOS)  # duplicate


def test_registry():
    assert {"likelihood", "beam", "grounding"} <= set(PROTOCOLS.names())
    with pytest.raises(UnknownNameError):
        rank("likelihod", None, [], random_catalogue(5))


@pytest.mark.parametrize("chunk_len", [4, 128])  # many chunks (prefixes repeated across chunks) and one chunk
def test_score_all_matches_naive(model, chunk_len):
    catalogue = random_catalogue(40)
    prompts = random_prompts([7, 3, 12, 1, 9])  # different lengths batched together, one prompt is just BOS
    expected = naive_scores(model, prompts, catalogue)
    got = score_all(model, prompts, catalogue, batch_size=3, chunk_len=chunk_len, max_tokens=16)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)

    ranking = rank("likelihood", model, prompts, catalogue, k=10, batch_size=2)
    assert isinstance(ranking, Ranking) and ranking.topk.dtype == np.int64
    # the ten best by the naive scores, up to float rounding (a near-tie may swap between two computations)
    np.testing.assert_allclose(np.take_along_axis(expected, ranking.topk, 1), -np.sort(-expected, 1)[:, :10],
                               atol=1e-4, rtol=0)
    assert ranking.valid.all()


@pytest.mark.parametrize("k,chunk_len,first_round,most_computed", [(1, 4, 1, 0.5), (5, 4, 2, 0.99), (10, 16, 8, 1.0),
                                                                   (80, 4, 8, 1.0)])
def test_pruned_top_k_is_the_full_top_k(peaked_model, k, chunk_len, first_round, most_computed):
    """`top=k` skips chunks that cannot reach the k best, and the k best (order and ties included) do not change."""
    catalogue = random_catalogue(60, seed=4)
    prompts = random_prompts([7, 3, 12, 1, 9, 5, 8])
    full = score_all(peaked_model, prompts, catalogue, batch_size=3, chunk_len=chunk_len)
    pruned = score_all(peaked_model, prompts, catalogue, batch_size=3, chunk_len=chunk_len, top=k,
                       first_round=first_round)
    computed = np.isfinite(pruned)
    np.testing.assert_array_equal(top_k(pruned, k), top_k(full, k))
    np.testing.assert_allclose(pruned[computed], full[computed], atol=1e-5, rtol=0)
    assert (pruned[~computed] == -np.inf).all()
    assert computed.mean() <= most_computed  # the bound skips chunks (k = 1: most of them)
    if k >= len(catalogue):
        assert computed.all()  # nothing may be skipped


@pytest.mark.parametrize("k,exclude", [(1, False), (5, False), (10, True), (80, False)])
def test_two_token_bound_keeps_the_exact_top_k_and_prunes_at_least_as_much(peaked_model, k, exclude):
    """`bound_tokens=2` adds each item's second token to its bound (an extra pass over the distinct first tokens):
    the k best, their order and ties are still those of the full scores, with no more items scored than with the
    first-token bound."""
    catalogue = random_catalogue(60, seed=4)
    prompts = random_prompts([7, 3, 12, 1, 9, 5, 8])
    banned = exclusions(len(prompts), len(catalogue)) if exclude else None
    full = score_all(peaked_model, prompts, catalogue, batch_size=3, chunk_len=4)
    one = score_all(peaked_model, prompts, catalogue, batch_size=3, chunk_len=4, top=k, first_round=1,
                    exclude=banned)
    two = score_all(peaked_model, prompts, catalogue, batch_size=3, chunk_len=4, top=k, first_round=1,
                    exclude=banned, bound_tokens=2)
    # the k best by the full scores, up to float rounding (the second token comes from another pass than in `full`)
    reference = excluded(full, banned) if banned is not None else full
    best = min(k, len(catalogue))
    np.testing.assert_allclose(np.take_along_axis(reference, top_k(two, best), 1), -np.sort(-reference, 1)[:, :best],
                               atol=1e-5, rtol=0)
    computed = np.isfinite(two)
    np.testing.assert_allclose(two[computed], full[computed], atol=1e-5, rtol=0)
    assert computed.sum() <= np.isfinite(one).sum() or k >= len(catalogue)
    with pytest.raises(ValueError, match="bound_tokens"):
        score_all(peaked_model, prompts, catalogue, top=k, bound_tokens=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_probs_never_positive(peaked_model, dtype):
    """The pruning bound needs every completion token's log-prob <= 0 exactly, in low precision too."""
    head = torch.nn.Linear(32, VOCAB, bias=False).to(dtype)
    with torch.no_grad():
        head.weight.copy_(peaked_model.lm_head.weight)
    hidden = (30 * torch.randn(300, 32, generator=torch.Generator().manual_seed(0))).to(dtype)
    rows = torch.arange(300).repeat_interleave(VOCAB)
    tokens = torch.arange(VOCAB).repeat(300)
    with torch.inference_mode():
        logp = _log_probs(head, hidden, rows, tokens, block=64).view(300, VOCAB)
    assert (logp <= 0).all() and (logp.amax(-1) == 0).any()  # the peaked head makes some tokens certain
    if dtype == torch.float32:
        expected = (hidden @ head.weight.T).log_softmax(-1)
        assert (logp - expected).abs().max() < 1e-4


def test_top_k_ties_and_fill():
    scores = np.array([[0.0, 1.0, 1.0, -1.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[1, 2, 0]])
    np.testing.assert_array_equal(top_k(scores, 6), [[1, 2, 0, 3, -1, -1]])


def test_beam_top1_is_greedy(model):
    catalogue = random_catalogue(40)
    prompts = random_prompts([7, 3, 12, 9])
    ranking = rank("beam", model, prompts, catalogue, k=1, batch_size=4)
    greedy = [catalogue.trie.item(greedy_constrained(model, p, catalogue.trie)) for p in prompts]
    assert ranking.valid.all()
    assert ranking.topk[:, 0].tolist() == greedy


def test_beam_outputs_are_items(model):
    catalogue = random_catalogue(40)
    prompts = random_prompts([7, 3, 12, 9])
    ranking = rank("beam", model, prompts, catalogue, k=8, batch_size=4)
    assert ranking.topk.shape == (4, 8) and ranking.valid.all()
    for row in ranking.topk:
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept) and (kept < len(catalogue)).all()
        assert (row[len(kept):] == -1).all()


def test_exhaustive_beam_is_likelihood_order(model):
    """With k >= n_items beam search keeps every trie prefix: without length penalty it ranks by likelihood."""
    catalogue = random_catalogue(6, seed=3)
    prompts = random_prompts([5, 2, 8])
    k = 9
    ranking = rank("beam", model, prompts, catalogue, k=k, batch_size=3, length_penalty=0.0)
    scores = score_all(model, prompts, catalogue)
    for row, s in zip(ranking.topk, scores):
        kept = row[row >= 0]
        assert sorted(kept.tolist()) == list(range(len(catalogue)))  # a permutation of all items, no duplicates
        assert (np.diff(s[kept]) <= 1e-4).all()  # in descending likelihood
    default = rank("beam", model, prompts, catalogue, k=k, batch_size=2)  # default length penalty: still items
    for row in default.topk:
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept) <= len(catalogue)


# ---------------------------------------------------------------- excluded items (ranking.exclude_seen)
def exclusions(n_prompts: int, n_items: int, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(n_items, size=int(rng.integers(0, n_items // 2)), replace=False) for _ in range(n_prompts)]


def test_trie_blocks_the_branches_whose_items_are_all_excluded():
    trie = Trie([[5, 6, EOS], [5, 6, 7, EOS], [5, 8, EOS], [9, EOS]], eos_id=EOS)
    blocked = trie.blocked([0, 1])                                   # both items under (5, 6)
    assert trie.allowed([], blocked) == [5, 9] and trie.allowed([5], blocked) == [8]
    assert trie.allowed([5], trie.blocked([0])) == [6, 8]            # (5, 6, 7) still lies under (5, 6)
    assert trie.allowed([5, 6], trie.blocked([0])) == [7]
    assert trie.allowed([], trie.blocked([0, 1, 2])) == [9] and trie.allowed([], trie.blocked(range(4))) == []


def test_top_k_leaves_out_excluded_and_unscored_columns():
    scores = np.array([[0.0, 1.0, 1.0, -1.0], [3.0, -np.inf, 1.0, 2.0]])
    got = top_k(scores, 4, exclude=[np.array([1, 3]), np.array([], dtype=np.int64)])
    np.testing.assert_array_equal(got, [[2, 0, -1, -1], [0, 3, 2, -1]])


@pytest.mark.parametrize("k", [1, 5, 10])
def test_pruned_top_k_under_exclusion_is_the_full_top_k_of_the_other_items(peaked_model, k):
    """Excluded items never bound a chunk nor count towards tau: the k best remaining items, their order and ties
    are those of the full scores with the excluded items removed."""
    catalogue = random_catalogue(60, seed=4)
    prompts = random_prompts([7, 3, 12, 1, 9, 5, 8])
    exclude = exclusions(len(prompts), len(catalogue))
    full = score_all(peaked_model, prompts, catalogue, batch_size=3, chunk_len=4)
    pruned = score_all(peaked_model, prompts, catalogue, batch_size=3, chunk_len=4, top=k, first_round=1,
                       exclude=exclude)
    np.testing.assert_array_equal(top_k(pruned, k), top_k(full, k, exclude))
    for row, banned in zip(rank("likelihood", peaked_model, prompts, catalogue, k=k, exclude=exclude).topk, exclude):
        assert not set(row.tolist()) & set(banned.tolist())


def test_beam_never_emits_an_excluded_item(model):
    catalogue = random_catalogue(40)
    prompts = random_prompts([7, 3, 12, 9])
    plain = rank("beam", model, prompts, catalogue, k=6, batch_size=3)
    exclude = [plain.topk[i, : 3 - i] for i in range(3)] + [np.arange(len(catalogue))[np.arange(40) != 7]]
    ranking = rank("beam", model, prompts, catalogue, k=6, batch_size=3, exclude=exclude)
    for row, banned in zip(ranking.topk, exclude):
        assert not set(row[row >= 0].tolist()) & set(banned.tolist())
    assert ranking.valid[:3].all() and (ranking.topk[:3] >= 0).sum() >= 15
    assert ranking.topk[3, 0] == 7 and (ranking.topk[3, 1:] == -1).all()  # one item left: the only one ranked
    assert ranking.topk[0, 0] != plain.topk[0, 0]                            # the excluded top-1 made way


@pytest.mark.parametrize("settings", [dict(protocol="likelihood"), dict(protocol="likelihood", likelihood_bound_tokens=2),
                                      dict(protocol="beam"),
                                      dict(protocol="grounding", embedder="minilm", grounding_beams=4)])
def test_a_protocols_cost_key_names_the_settings_it_was_made_from(settings):
    from bench.config import RankingConfig
    from methods.ranking.protocols import protocol_cost_key, ranking_for_cost_key
    ranking = RankingConfig(**settings)
    key = protocol_cost_key(ranking)
    assert key.split("/")[0] == settings["protocol"]
    assert ranking_for_cost_key(key, RankingConfig(protocol="beam", k=50)) == dataclasses.replace(ranking, k=50)


def test_a_new_protocol_is_one_registration(monkeypatch):
    """A protocol registered in one call (here a reversed popularity order with an option of its own) ranks through
    `rank` and `ProtocolRecommender`, takes its options from the ranking settings, and has a cost class."""
    from methods.ranking import ProtocolRecommender
    from methods.ranking.protocols import PROTOCOLS, protocol_cost_key, protocol_options, register_protocol

    monkeypatch.setattr(PROTOCOLS, "_items", dict(PROTOCOLS._items))    # registered for this test only

    @register_protocol("catalogue-order", options=lambda r, tok, base, dev: {"reverse": r.k > 10},
                       cost_key=lambda r: f"catalogue-order/k{r.k}")
    def catalogue_order(model, prompts, catalogue, k=20, batch_size=16, exclude=None, reverse=False):
        order = np.arange(len(catalogue.items))[::-1 if reverse else 1][:k]
        return Ranking(topk=np.tile(order, (len(prompts), 1)), valid=np.ones(len(prompts), dtype=bool))

    class Settings:
        protocol, k = "catalogue-order", 20
    options = protocol_options(Settings, None, lambda: None, "cpu")
    catalogue = random_catalogue(5)
    topk, valid = ProtocolRecommender(None, catalogue, "catalogue-order", **options).rank([[1], [2]], None, 3)
    assert options == {"reverse": True} and topk.tolist() == [[4, 3, 2], [4, 3, 2]] and valid.all()
    assert protocol_cost_key(Settings) == "catalogue-order/k20"
