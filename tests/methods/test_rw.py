"""RW (methods/rw.py, IFairLRS): group weights by the formula, the per-sample weighted SFT loss, the greedy
re-ranking rule, and a smoke fit."""
from __future__ import annotations

import types

import numpy as np
import torch

import methods
from methods.ranking import Catalogue, rank
from methods.rw import group_weights, rerank, weights_line  # importing methods.rw also registers `rw`
from methods.train.config import SFTConfig
from methods.train.sequences import completion_logps
from methods.train.sft import CompletionCollator, completion_loss, run_sft
from splits.groups import popularity_groups
from tests.support import word_model_setup


def test_group_weights_match_the_formula():
    # histories: 6 items in G1, 3 in G2, 1 in G3, none in G4; targets: 2 in G1, 1 in G2, 1 in G3, 0 in G4
    history = np.array([0] * 6 + [1] * 3 + [2])
    target = np.array([0, 0, 1, 2])
    weights, hist_share, tgt_share = group_weights(history, target, 4)
    np.testing.assert_allclose(hist_share, [0.6, 0.3, 0.1, 0.0])
    np.testing.assert_allclose(tgt_share, [0.5, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(weights[:3], [0.6 / 0.5, 0.3 / 0.25, 0.1 / 0.25])
    assert np.isnan(weights[3])                                   # no target in G4: no weight
    line = weights_line(weights)                                  # and the log says so rather than printing nan
    assert "nan" not in line and "G4 none (no training target)" in line and line.startswith("G1 ")
    assert np.isclose(weights[target].mean(), 1.0)                # the mean sample weight is 1


def batch_logps(model, tok, prompts, completions, weights=None):
    rows = [{"input_ids": p + c, "labels": [-100] * len(p) + c} for p, c in zip(prompts, completions)]
    if weights is not None:
        for row, w in zip(rows, weights):
            row["weights"] = w
    batch = CompletionCollator(tok.pad_token_id)(rows)
    logps, _, _ = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                   batch["lengths"])
    return logps, batch


def test_weights_of_one_give_the_unweighted_loss():
    tok, model, prompts, completions = word_model_setup(n=6)
    completions = [c[:1] + [tok.eos_token_id] for c in completions]            # equal completion lengths (2)
    with torch.no_grad():
        logps, batch = batch_logps(model, tok, prompts, completions, weights=[1.0] * 6)
        assert torch.equal(batch["weights"], torch.ones(6))
        weighted = completion_loss(logps, batch["lengths"], batch["weights"])
        unweighted = completion_loss(logps, batch["lengths"])
    torch.testing.assert_close(weighted, unweighted, atol=1e-6, rtol=1e-6)
    _, plain = batch_logps(model, tok, prompts, completions)
    assert "weights" not in plain                                                # the unweighted path is untouched


def test_weighted_loss_is_the_per_sample_weighted_mean():
    tok, model, prompts, completions = word_model_setup(n=5, seed=3)
    assert len({len(c) for c in completions}) > 1                                # lengths differ
    weights = [0.5, 2.0, 1.0, 0.0, 1.5]
    with torch.no_grad():
        logps, batch = batch_logps(model, tok, prompts, completions, weights)
        got = completion_loss(logps, batch["lengths"], batch["weights"])
        per_sample = []                                                          # HF's mean token CE, row by row
        for p, c in zip(prompts, completions):
            out = model(input_ids=torch.tensor([p + c]), labels=torch.tensor([[-100] * len(p) + c]))
            per_sample.append(out.loss.item())
    expected = sum(w * ce for w, ce in zip(weights, per_sample)) / len(weights)
    assert np.isclose(got.item(), expected, atol=1e-5)


def test_rerank_rule_on_a_hand_made_example():
    groups = np.array([0, 0, 0, 1, 2])                 # items 0-2 popular (G1), 3 in G2, 4 in G3
    history_share = np.array([0.5, 0.3, 0.2])
    candidates = np.array([[0, 1, 2, 3, 4], [4, -1, -1, -1, -1]])
    # lambda 0: the protocol's order
    np.testing.assert_array_equal(rerank(candidates, groups, history_share, 0.0, 3), [[0, 1, 2], [4, -1, -1]])
    # lambda 4, row 0: slot 0 keeps item 0. Slot 1: G1 share 1 -> item 1 scores -1 - 4 * (1 - 0.5) = -3,
    # item 3 (G2, share 0) scores -3 - 4 * (0 - 0.3) = -1.8 and wins. Slot 2: shares G1 .5, G2 .5:
    # item 1: -1 - 4 * 0 = -1; item 4: -4 - 4 * (0 - 0.2) = -3.2 -> item 1.
    np.testing.assert_array_equal(rerank(candidates, groups, history_share, 4.0, 3), [[0, 3, 1], [4, -1, -1]])
    # a huge lambda calibrates: after item 0, the groups below their history share come first
    np.testing.assert_array_equal(rerank(candidates, groups, history_share, 1e6, 3)[0], [0, 3, 4])


def test_rw_fit_smoke():
    tok, model, prompts, _ = word_model_setup(n=20, seed=1)
    n_items = 10
    rng = np.random.default_rng(0)
    items = np.arange(500, 500 + n_items)
    completions = {int(i): [4 + j, 5 + j, tok.eos_token_id] for j, i in enumerate(items)}
    catalogue = Catalogue(items=items.tolist(), completions=[completions[int(i)] for i in items],
                          eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    targets = rng.choice(items, 20)
    histories = [rng.choice(items, 3) for _ in range(20)]
    counts = np.bincount(np.searchsorted(items, np.concatenate([targets] + histories)), minlength=n_items)

    class Ranker:
        def __init__(self, m):
            self.model = m

        def rank(self, p, h, k, exclude=None):
            result = rank("likelihood", self.model, p, catalogue, k=k, exclude=exclude)
            return result.topk, result.valid

    built, sft_calls = [], []

    def sft_step(model, prompts, targets, epochs, learning_rate, weights=None):
        sft_calls.append((epochs, learning_rate, weights))
        return run_sft(model, tok, prompts, [completions[int(t)] for t in targets], epochs, learning_rate, 8, 0, "cpu",
                       weights=weights)

    ctx = types.SimpleNamespace(
        sft_step=sft_step, train=types.SimpleNamespace(prompts=prompts, targets=targets, histories=histories), items=items,
        completions=completions, train_counts=counts, tokenizer=tok, seed=0, device="cpu", stats={},
        log=lambda m: None, load_base_model=lambda: built.append(1) or word_model_setup()[1], recommender=Ranker,
        sft_config=SFTConfig(epochs=1, learning_rate=1e-3, batch_size=8))
    method = methods.resolve("rw", {"rerank_lambda": 5.0, "rerank_pool": 8})
    before = [p.detach().clone() for p in word_model_setup()[1].parameters()]
    recommender = method.fit(ctx)
    assert built == [1]
    (epochs, lr, weights), = sft_calls                                           # one weighted SFT run, through the context
    assert (epochs, lr) == (1, 1e-3) and len(weights) == 20
    position = {int(i): j for j, i in enumerate(items)}
    groups = popularity_groups(counts)
    expected, _, _ = group_weights(np.array([groups[position[int(i)]] for h in histories for i in h]),
                                   groups[[position[int(t)] for t in targets]], 5)
    np.testing.assert_allclose(weights, expected[groups[[position[int(t)] for t in targets]]])
    assert any(not torch.equal(a, b) for a, b in zip(before, recommender.inner.model.parameters()))
    topk, valid = recommender.rank(prompts[:4], histories[:4], 5)
    assert topk.shape == (4, 5) and valid.all()
    assert all(len(set(row.tolist())) == 5 for row in topk)
    plain, _ = recommender.inner.rank(prompts[:4], histories[:4], 8)
    np.testing.assert_array_equal(topk[:, 0], plain[:, 0])                       # slot 0 is the protocol's top-1
    stats = ctx.stats
    assert len(stats["group_weights"]) == 5 and stats["sft_epochs"] == 1 and stats["rerank_lambda"] == 5.0
    assert np.isclose(sum(stats["history_share"]), 1.0)
