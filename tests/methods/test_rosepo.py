"""RosePO (methods/rosepo.py): the smoothed loss against its formula, the oracle's eps mapping, the rejected
samplers, the per-pair eps reaching the trainer, and one short training run (fit() on a stub context)."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import methods
from methods.base import MethodContext, TrainingSamples
from methods.losses import LOSSES, LogProbs, dpo_loss, rosepo_loss
from methods.rosepo import (MFOracle, fit_mf_oracle, oracle_margins, popularity_negatives, self_hard_negatives,
                            smoothing_from_margins, strategy_slots, weighted_negatives)
from methods.train.config import PreferenceConfig as PrefCfg
from methods.train.preference_trainer import PairCollator, PairDataset, PreferencePairs, reference_logps, train_preference
from tests.support import PAD, catalogue_for, pairs, tiny_model


def sig(x):
    return 1 / (1 + math.exp(-x))


def random_logps(b=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    policy = LogProbs(-torch.rand(b, generator=g) * 10, -torch.rand(b, k, generator=g) * 10)
    reference = LogProbs(-torch.rand(b, generator=g) * 10, -torch.rand(b, k, generator=g) * 10)
    return policy, reference


# --- the loss ------------------------------------------------------------------------------------------------------

def test_rosepo_loss_matches_formula_by_hand_with_a_per_pair_eps():
    eps = torch.tensor([[0.1, 0.4]])
    policy = LogProbs(torch.tensor([-1.0]), torch.tensor([[-3.0, -2.0]]), smoothing=eps)
    reference = LogProbs(torch.tensor([-2.0]), torch.tensor([[-2.5, -1.0]]))
    beta = 0.5
    h = [(-1.0 + 2.0) - (-3.0 + 2.5), (-1.0 + 2.0) - (-2.0 + 1.0)]
    each = [-((1 - e) * math.log(sig(beta * x)) + e * math.log(sig(-beta * x))) for e, x in zip([0.1, 0.4], h)]
    assert rosepo_loss(policy, reference, beta).item() == pytest.approx(sum(each) / 2, rel=1e-6)
    assert LOSSES.get("rosepo") is rosepo_loss


def test_constant_eps_is_conservative_dpo_and_eps_zero_is_dpo():
    policy, reference = random_logps()
    beta, eps = 0.3, 0.2
    config = SimpleNamespace(beta=beta, epsilon=eps)                 # no per-pair array: the constant epsilon
    margin = beta * ((policy.chosen - reference.chosen).unsqueeze(1) - (policy.rejected - reference.rejected))
    cdpo = -((1 - eps) * torch.nn.functional.logsigmoid(margin)
             + eps * torch.nn.functional.logsigmoid(-margin)).mean(1)
    assert torch.allclose(rosepo_loss(policy, reference, config), cdpo, atol=1e-6)
    smoothed = LogProbs(policy.chosen, policy.rejected, smoothing=torch.full((5, 3), eps))
    assert torch.allclose(rosepo_loss(smoothed, reference, beta), cdpo, atol=1e-6)
    assert torch.allclose(rosepo_loss(policy, reference, SimpleNamespace(beta=beta, epsilon=0.0)),
                          dpo_loss(policy, reference, beta), atol=1e-6)
    assert torch.allclose(rosepo_loss(policy, reference, beta), dpo_loss(policy, reference, beta), atol=1e-6)
    zero = LogProbs(policy.chosen, policy.rejected, smoothing=torch.zeros(5, 3))
    assert torch.allclose(rosepo_loss(zero, reference, beta), dpo_loss(policy, reference, beta), atol=1e-6)


# --- the oracle and the eps mapping --------------------------------------------------------------------------------

def test_eps_mapping_is_monotone_bounded_and_follows_the_oracle():
    margins = np.linspace(-50, 50, 201)[:, None]
    eps, temperature = smoothing_from_margins(margins, eps_max=0.5)
    assert temperature == pytest.approx(np.std(margins))
    assert np.all(np.diff(eps[:, 0]) > 0) and eps.min() >= 0 and eps.max() < 0.5
    assert eps[100, 0] == pytest.approx(0.25)                          # an indifferent oracle: eps_max / 2
    fixed, t = smoothing_from_margins(np.array([[0.0, 2.0]]), eps_max=0.3, temperature=2.0)
    assert t == 2.0 and fixed[0] == pytest.approx([0.15, 0.3 * sig(1.0)])
    assert smoothing_from_margins(np.zeros((3, 1)))[1] == 1.0         # std 0: T = 1
    # a hand-made oracle: one latent dimension, item 1 aligned with the history, item 3 opposed to it
    oracle = MFOracle(items=np.array([1, 2, 3, 4]), mean=0.0, item_bias=np.zeros(4),
                      item_factors=np.array([[1.0], [0.5], [-1.0], [1.0]]), reg=0.1)
    history = np.array([4])                                             # folds in to p > 0
    assert oracle.user_vector(history)[0] > 0
    d = oracle_margins(oracle, np.array([1, 3]), [history, history], np.array([[3, 2], [1, 2]]))
    assert d[0, 0] < d[0, 1] < 0 < d[1, 1] < d[1, 0]                  # target 1 preferred; target 3 dispreferred
    eps, _ = smoothing_from_margins(d, eps_max=0.5)
    assert eps[0, 0] < eps[0, 1] < 0.25 < eps[1, 1] < eps[1, 0] < 0.5
    # the item bias enters the score unless oracle_item_bias is off
    biased = MFOracle(oracle.items, 0.0, np.array([0.0, 0.0, 5.0, 0.0]), oracle.item_factors, 0.1)
    assert oracle_margins(biased, np.array([1]), [history], np.array([[3]]))[0, 0] > 0
    biased.use_item_bias = False
    assert oracle_margins(biased, np.array([1]), [history], np.array([[3]]))[0, 0] < 0


def test_mf_oracle_fitted_on_interactions_prefers_the_users_taste():
    # two groups of users with disjoint tastes; the oracle folds in a history from group A
    rng = np.random.default_rng(0)
    rows = [(u, i) for u in range(40) for i in (range(0, 10) if u < 20 else range(10, 20)) if rng.random() < 0.7]
    train = pd.DataFrame(rows, columns=["user", "item"]).assign(rating=5.0)
    items = np.arange(0, 25)
    oracle = fit_mf_oracle(train, items, np.random.default_rng(1), rank=4, epochs=15, negatives=2)
    again = fit_mf_oracle(train, items, np.random.default_rng(1), rank=4, epochs=15, negatives=2)
    assert np.array_equal(oracle.item_factors, again.item_factors)      # deterministic given the seed
    d = oracle_margins(oracle, np.array([5]), [np.array([1, 2, 3])], np.array([[15, 22]]))
    assert (d < 0).all()                                                # the in-taste target beats both


# --- rejected sampling ---------------------------------------------------------------------------------------------

def test_popularity_sampler_excludes_target_and_history_and_follows_popularity():
    items = np.arange(100, 110)
    counts = np.array([50, 1, 0, 10, 20, 5, 5, 100, 3, 30])
    n = 20000
    targets = np.full(n, 107)                                           # the most popular item is the target
    histories = [np.array([109, 100])] * n
    neg = popularity_negatives(targets, histories, items, counts, 1, np.random.default_rng(0))
    assert not np.isin(neg, [107, 109, 100, 102]).any()                # never target/history/unseen (count 0)
    allowed = ~np.isin(items, [107, 109, 100])
    expected = counts * allowed / (counts * allowed).sum()
    freq = np.array([(neg == i).mean() for i in items])
    assert np.abs(freq - expected).max() < 0.015
    again = popularity_negatives(targets, histories, items, counts, 1, np.random.default_rng(0))
    assert np.array_equal(neg, again)
    multi = popularity_negatives(targets[:500], histories[:500], items, counts, 3, np.random.default_rng(1))
    assert all(len(set(r)) == 3 for r in multi.tolist()) and not np.isin(multi, [107, 109, 100]).any()


def test_weighted_sampler_fills_from_uniform_when_popular_items_run_out_and_respects_taken():
    items = np.arange(6)
    weights = np.array([0, 0, 0, 0, 1.0, 0])
    taken = np.array([[3, -1, -1]])
    out = weighted_negatives(np.array([0]), [np.array([1])], items, weights, np.array([2]),
                             np.random.default_rng(0), taken=taken)
    assert out[0, 0] == 4 and out[0, 1] in (2, 5)                      # then uniform, never 0, 1 or taken 3


def test_self_hard_fallback_reasons():
    items = np.arange(10, 20)
    predicted = np.array([12, 11, 13, -1, 99])
    targets = np.array([10, 11, 10, 10, 10])
    histories = [np.array([15])] * 4 + [np.array([12])]
    histories[2] = np.array([13])
    picked, reasons = self_hard_negatives(predicted, targets, histories, items)
    assert picked.tolist() == [12, -1, -1, -1, -1]
    assert reasons["correct"].tolist() == [False, True, False, False, False]
    assert reasons["in_history"].tolist() == [False, False, True, False, False]
    assert reasons["invalid"].tolist() == [False, False, False, True, True]


def test_strategy_slots_rule():
    rng = np.random.default_rng(0)
    mixed1 = strategy_slots("mixed", 10, 1, 0.3, rng)
    assert (mixed1 == "self_hard").sum() == 3 and (mixed1 == "popularity").sum() == 7
    mixed3 = strategy_slots("mixed", 4, 3, 0.5, rng)
    assert (mixed3[:, 0] == "self_hard").all() and (mixed3[:, 1:] == "popularity").all()
    hard = strategy_slots("self_hard", 4, 2, 0.5, rng)
    assert (hard[:, 0] == "self_hard").all() and (hard[:, 1] == "random").all()
    with pytest.raises(ValueError, match="did you|choose"):
        strategy_slots("hard", 1, 1, 0.5, rng)


# --- the trainer path and a short run ------------------------------------------------------------------------------

def test_smoothing_travels_through_dataset_and_collator_and_not_into_the_fingerprint():
    data = pairs(n=4, k=2)
    smoothed = PreferencePairs(data.prompts, data.chosen, data.rejected, smoothing=np.full((4, 2), 0.3))
    assert smoothed.fingerprint() == data.fingerprint()                 # eps does not key the reference cache
    ref = (np.zeros(4, dtype=np.float32), np.zeros((4, 2), dtype=np.float32))
    batch = PairCollator(PAD)([PairDataset(smoothed, *ref)[i] for i in range(4)])
    assert batch["smoothing"].shape == (4, 2) and torch.allclose(batch["smoothing"], torch.full((4, 2), 0.3))
    assert "smoothing" not in PairCollator(PAD)([PairDataset(data, *ref)[i] for i in range(4)])


def train(data, k, method, epochs=1, lr=5e-3):
    model = tiny_model()
    ref = reference_logps(model, data, PAD, "cpu")
    before = [p.detach().clone() for p in model.parameters()]
    pref = PrefCfg(epochs=epochs, learning_rate=lr, batch_size=8, grad_accum=1, warmup_ratio=0.0, max_grad_norm=1.0)
    model, _, history = train_preference(model, data, ref, method.loss_fn(), method.reduce, method.config.beta,
                                         pref, 0, "cpu", PAD)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return changed, history


def test_rosepo_trains_and_the_per_pair_eps_reaches_the_loss():
    method = methods.resolve("rosepo", {"beta": 0.5})
    data = pairs(n=16, k=2)
    losses = {}
    for eps in (0.0, 0.3, 0.5):
        smoothed = PreferencePairs(data.prompts, data.chosen, data.rejected, smoothing=np.full((16, 2), eps))
        changed, history = train(smoothed, 2, method)
        assert len(history["pref_loss"]) == 2 and all(np.isfinite(history["pref_loss"]))
        # eps = 0.5 makes a pair uninformative: at policy == reference its gradient is 0 and nothing moves
        assert changed == (eps < 0.5)
        losses[eps] = history["pref_loss"]
    assert losses[0.0][0] == pytest.approx(math.log(2), rel=1e-5)      # policy == reference at step 1: log 2
    assert losses[0.0][1] != pytest.approx(losses[0.3][1], rel=1e-4)   # eps changes the training
    # no per-pair array: the constant `epsilon` of the config (default 0.1) is used; eps 0 matches dpo exactly
    _, dpo_history = train(data, 2, methods.resolve("dpo", {"beta": 0.5}))
    _, zero_history = train(data, 2, methods.resolve("rosepo", {"beta": 0.5, "epsilon": 0.0}))
    assert np.allclose(zero_history["pref_loss"], dpo_history["pref_loss"], atol=1e-6)


class Tok:
    pad_token_id = PAD


def stub_context(predict_top1, n=24, seed=0):
    items = np.arange(10, 30)
    completions = {int(i): [int(i), 2] for i in items}
    rng = np.random.default_rng(seed)
    targets = rng.choice(items, n)
    histories = [np.array([t for t in rng.choice(items, 3, replace=False) if t != tgt][:2]) for tgt in targets]
    prompts = [[1] + [int(h) for h in hist] + [3] for hist in histories]
    users = [u for u, (h, t) in enumerate(zip(histories, targets)) for _ in range(len(h) + 1)]
    interactions = pd.DataFrame({"user": users, "item": np.concatenate([np.append(h, t) for h, t in
                                                                         zip(histories, targets)]), "rating": 5.0})
    counts = interactions["item"].value_counts()
    train_counts = np.array([counts.get(i, 0) for i in items], dtype=np.int64)
    return MethodContext(
        split={"train": interactions}, items=items, catalogue=catalogue_for(items, completions), sft_config=None,
        train=TrainingSamples(prompts, targets, histories, np.arange(n), np.arange(n)),
        completions=completions, train_counts=train_counts, seed=seed, device="cpu", tokenizer=Tok(),
        preference=PrefCfg(epochs=1, learning_rate=5e-3, batch_size=8, warmup_ratio=0.0, negatives=1),
        load_sft_model=tiny_model, load_base_model=tiny_model, sft_tag="sft", sft_step=None,
        reference_logps=lambda loader, tag, pairs: reference_logps(loader(), pairs, PAD, "cpu"),
        recommender=lambda model: model, predict_top1=predict_top1, output_dir=None, log=lambda m: None)


def test_fit_samples_mixed_negatives_smooths_with_the_oracle_and_trains():
    calls = []

    def predict_top1(model, prompts):
        calls.append(len(prompts))
        out = np.full(len(prompts), 11)                               # item 11, except an invalid prediction
        out[0] = -1
        return out

    ctx = stub_context(predict_top1)
    before = tiny_model().model.embed_tokens.weight.detach().clone()
    method = methods.resolve("rosepo")
    model = method.fit(ctx)
    stats = ctx.stats
    assert calls == [12]                                                # half of the 24 rows are self-hard
    assert stats["rosepo_negatives_self_hard"] + stats["rosepo_negatives_self_hard_fallback"] == 12
    assert stats["rosepo_negatives_popularity"] == 12 and stats["rosepo_negatives_random"] == 0
    assert stats["rosepo_self_hard_fallbacks"] >= 1 and stats["rosepo_self_hard_fallback_invalid"] == 1
    assert 0 < stats["rosepo_eps_min"] <= stats["rosepo_eps_mean"] <= stats["rosepo_eps_max"] < 0.5
    assert stats["rosepo_oracle"] == "mf" and stats["rosepo_temperature"] > 0
    assert np.isfinite(stats["final_loss"])
    assert not torch.equal(model.model.embed_tokens.weight, before)
    # the same seed gives the same negatives and eps (the stats are a fingerprint of both)
    ctx2 = stub_context(predict_top1)
    methods.resolve("rosepo").fit(ctx2)
    assert {k: v for k, v in ctx2.stats.items() if "seconds" not in k and k != "final_loss"} == \
        {k: v for k, v in stats.items() if "seconds" not in k and k != "final_loss"}


def test_fit_with_constant_oracle_and_random_negatives_needs_no_predictions():
    def predict_top1(model, prompts):
        raise AssertionError("random negatives need no predictions")

    ctx = stub_context(predict_top1)
    methods.resolve("rosepo", {"oracle": "constant", "epsilon": 0.2, "negative_strategy": "random"}).fit(ctx)
    assert ctx.stats["rosepo_eps_mean"] == pytest.approx(0.2) and ctx.stats["rosepo_negatives_random"] == 24
    with pytest.raises(ValueError, match="eps_max"):
        methods.resolve("rosepo", {"eps_max": 1.5})
    with pytest.raises(ValueError, match="oracle"):
        methods.resolve("rosepo", {"oracle": "sasrec"})
