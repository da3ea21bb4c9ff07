"""D3 decoding: p_TF on a hand-made trie, g = 1 is plain constrained beam search without length penalty, and on an
exhaustive beam the mixed sequence score is g * log P_LLM(item) + (1 - g) * log P_S(item); a smoke fit."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import methods
from methods.base import TrainingSamples
from methods.d3 import D3Recommender
from methods.ranking import Catalogue, rank, score_all
from methods.ranking.d3_decoding import TextFreeAssistant, TrieMass, assistant_distribution, d3_rank
from splits import build_split, load_dataset
from splits.samples import build_samples
from tests.support import BOS, EOS, PAD, VOCAB, catalogue_for, random_catalogue, random_prompts


def test_p_tf_on_a_hand_made_trie():
    catalogue = Catalogue(items=[10, 11, 12, 13], completions=[[5, 6, EOS], [5, 6, 7, EOS], [5, 8, EOS], [9, EOS]],
                          eos_id=EOS, pad_id=PAD)
    p = np.array([[0.1, 0.2, 0.3, 0.4]])
    mass = TrieMass(catalogue)
    cumulative = mass.cumulative(assistant_distribution(np.log(p), floor=0.0))[0]

    def p_tf(prefix):
        tokens, logp = mass.log_p_tf(cumulative, prefix)
        return dict(zip(tokens.tolist(), np.exp(logp)))

    expected = {(): {5: 0.6, 9: 0.4}, (5,): {6: 0.5, 8: 0.5}, (5, 6): {EOS: 1 / 3, 7: 2 / 3},
                (5, 6, 7): {EOS: 1.0}, (9,): {EOS: 1.0}}
    for prefix, want in expected.items():
        got = p_tf(prefix)
        assert got.keys() == want.keys() and np.allclose(list(got.values()), list(want.values())), prefix
    assert mass.log_p_tf(cumulative, (5, 6, EOS)) is None and mass.log_p_tf(cumulative, (4,)) is None


def test_assistant_distribution_softmax_floor_and_unscored_items():
    logits = np.array([[0.0, np.log(3.0), -np.inf], [-np.inf, -np.inf, -np.inf]])
    np.testing.assert_allclose(assistant_distribution(logits, floor=0.0), [[0.25, 0.75, 0.0], [1 / 3] * 3])
    floored = assistant_distribution(logits, floor=0.03)
    np.testing.assert_allclose(floored[0], [0.97 * 0.25 + 0.01, 0.97 * 0.75 + 0.01, 0.01])
    assert np.allclose(floored.sum(1), 1.0)


def test_guidance_one_is_plain_beam_without_length_penalty(model):
    catalogue = random_catalogue(40)
    prompts = random_prompts([7, 3, 12, 9, 5])
    logits = np.random.default_rng(0).normal(size=(len(prompts), len(catalogue)))
    plain = rank("beam", model, prompts, catalogue, k=6, batch_size=2, length_penalty=0.0)
    d3 = d3_rank(model, prompts, logits, catalogue, k=6, batch_size=2, guidance_scale=1.0)
    np.testing.assert_array_equal(d3.topk, plain.topk)
    np.testing.assert_array_equal(d3.valid, plain.valid)
    mixed = d3_rank(model, prompts, logits * 5, catalogue, k=6, batch_size=2, guidance_scale=0.5)
    assert not np.array_equal(mixed.topk, plain.topk)  # the assistant does act


@pytest.mark.parametrize("g", [0.0, 0.5, 0.8])
def test_exhaustive_d3_ranks_by_the_mixed_sequence_score(model, g):
    """With beams >= items every prefix survives; sum_t log p_TF telescopes to log P_S(item), so the ranking is by
    g * log P_LLM(item | prompt) + (1 - g) * log P_S(item)."""
    catalogue = random_catalogue(6, seed=3)
    prompts = random_prompts([5, 2, 8])
    logits = np.random.default_rng(1).normal(scale=3.0, size=(len(prompts), len(catalogue)))
    ranking = d3_rank(model, prompts, logits, catalogue, k=9, batch_size=2, guidance_scale=g, floor=0.0)
    expected = g * score_all(model, prompts, catalogue) + (1 - g) * np.log(assistant_distribution(logits, 0.0))
    for row, s in zip(ranking.topk, expected):
        kept = row[row >= 0]
        assert sorted(kept.tolist()) == list(range(len(catalogue)))
        assert (np.diff(s[kept]) <= 1e-4).all(), (g, s[kept])


def test_processor_refuses_misaligned_rows():
    catalogue = random_catalogue(5)
    mass = TrieMass(catalogue)
    cumulative = mass.cumulative(assistant_distribution(np.zeros((2, 5))))
    assistant = TextFreeAssistant(mass, cumulative, [[BOS, 3], [BOS, 4]], num_beams=2, guidance_scale=0.5)
    rows = torch.tensor([[BOS, 4], [BOS, 4], [BOS, 3], [BOS, 3]])  # prompts swapped
    with pytest.raises(RuntimeError):
        assistant(rows, torch.zeros(4, VOCAB))


def test_d3_fit_smoke(model, tmp_path):
    dataset = load_dataset("ml-100k")
    split = build_split(dataset, "temporal", 0)
    items = np.asarray(dataset.items, np.int64)
    rng = np.random.default_rng(0)
    titles: set[tuple] = set()
    while len(titles) < len(items):
        titles.add(tuple(int(t) for t in rng.integers(3, VOCAB, size=int(rng.integers(1, 4)))))
    completions = {int(i): list(t) + [EOS] for i, t in zip(items, sorted(titles))}
    samples = build_samples(split, "train", 5, 150, split.seed)
    prompts = random_prompts([6] * len(samples))
    ctx = types.SimpleNamespace(
        split=split, items=items, completions=completions, seed=0, device=torch.device("cpu"), output_dir=tmp_path,
        tokenizer=types.SimpleNamespace(eos_token_id=EOS, pad_token_id=PAD), log=lambda _: None, stats={},
        load_sft_model=lambda: model, catalogue=catalogue_for(items, completions),
        train=TrainingSamples(prompts, samples.targets, samples.histories, samples.users, samples.timestamps))
    method = methods.resolve("d3", {"epochs": 1, "max_valid_samples": 20, "beam_batch_size": 3})
    assert method.config.guidance_scale == 0.8 and method.config.length_penalty == 0.0
    recommender = method.fit(ctx)
    test = build_samples(split, "ood_test", 5, 4, split.seed)
    prompts = random_prompts([4, 7, 5, 6])
    topk, valid = recommender.rank(prompts, test.histories, 5)
    # chunking the prompts changes nothing: with one prompt per beam search and SASRec scored row by row, both
    # chunkings repeat the same computations, so the lists are identical
    row_by_row = recommender.sasrec.scores
    recommender.sasrec.scores = lambda histories: np.concatenate([row_by_row([h]) for h in histories])
    recommender.cfg.beam_batch_size = 1
    whole = recommender.rank(prompts, test.histories, 5)[0]
    np.testing.assert_array_equal(recommender.rank(prompts, test.histories, 5, chunk=3)[0], whole)
    assert topk.shape == (4, 5) and valid.all()
    assert ((topk >= 0) & (topk < len(items))).all()
    assert ctx.stats["guidance_scale"] == 0.8 and ctx.stats["sasrec_loss_type"] == "CE"
    assert ctx.stats["protocol"] == "beam" and ctx.stats["length_penalty"] == 0.0


class _Scored:
    """A stand-in for the trained SASRec: fixed logits per history length."""

    def __init__(self, logits):
        self.logits = logits

    def scores(self, histories):
        return self.logits[: len(histories)]


@pytest.mark.parametrize("g", [0.5, 0.8])
def test_d3_under_the_likelihood_protocol_is_the_exhaustive_mixed_score(model, g):
    """protocol=run with the likelihood protocol ranks every item by D3's own sequence score,
    g * log P_LLM(item) + (1 - g) * log P_S(item): what D3's decoding ranks by when no beam is pruned."""
    catalogue = random_catalogue(30, seed=5)
    prompts = random_prompts([5, 2, 8, 6])
    logits = np.random.default_rng(2).normal(scale=3.0, size=(len(prompts), len(catalogue)))
    cfg = methods.method_class("d3").Config(guidance_scale=g, assistant_floor=0.0)
    recommender = D3Recommender(model, catalogue, _Scored(logits), cfg, protocol="likelihood")
    exclude = [np.array([0, 1]), np.array([], dtype=np.int64), np.array([5]), np.arange(25)]
    topk, valid = recommender.rank(prompts, [np.array([1])] * 4, 8, exclude)
    expected = g * score_all(model, prompts, catalogue) + (1 - g) * np.log(assistant_distribution(logits, 0.0))
    for row, banned, s in zip(topk, exclude, expected):
        allowed = np.setdiff1d(np.arange(30), banned)
        best = allowed[np.argsort(-s[allowed], kind="stable")][:8]
        np.testing.assert_allclose(s[row[row >= 0]], s[best[: (row >= 0).sum()]], atol=1e-4)
    assert valid.all() and (topk[3, 5:] == -1).all()                   # five items left for the last prompt
