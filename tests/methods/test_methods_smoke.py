"""One short training run per preference method through the shared trainer (not the CLI), on a tiny random Llama:
parameters change and the loss stays finite; K = 3 negatives for the multi-negative losses; the +causal variants."""
import types

import numpy as np
import pytest
import torch

import methods
from methods.causal import CausalConfig, CausalRegularizer
from methods.train.config import PreferenceConfig as PrefCfg
from methods.train.preference_trainer import reference_logps, train_preference
from tests.support import PAD, pairs, tiny_model


def fit(name, k, **overrides):
    method = methods.resolve(name, overrides)
    model, data = tiny_model(), pairs(n=16, k=k)
    if method.needs_reference:
        ref = reference_logps(model, data, PAD, "cpu")
    else:
        ref = (np.zeros(len(data), dtype=np.float32), np.zeros((len(data), k), dtype=np.float32))
    before = [p.detach().clone() for p in model.parameters()]
    reg = None
    if method.causal:
        fields = {f for f in CausalConfig.__dataclass_fields__}
        cfg = CausalConfig(**{f: getattr(method.config, f) for f in fields})
        reg = CausalRegularizer(16, cfg)
    pref = PrefCfg(epochs=1, learning_rate=5e-3, batch_size=8, grad_accum=1, warmup_ratio=0.0, max_grad_norm=1.0)
    model, seconds, history = train_preference(model, data, ref, method.loss_fn(), method.reduce, method.config.beta,
                                               pref, 0, "cpu", PAD, reg, chosen_reward=method.chosen_reward)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), name
    assert len(history["pref_loss"]) == 2 and all(np.isfinite(history["pref_loss"])), name
    if method.causal:
        assert max(history["causal/envs"]) >= 2              # at least one step with two environments (MMD)
    return method, history


@pytest.mark.parametrize("name, k", [("simpo", 1), ("cpo", 2), ("drdpo", 1), ("sdpo", 3), ("dmpo", 3),
                                     ("simpo+causal", 2), ("cpo+causal", 1), ("drdpo+causal", 2)])
def test_method_trains(name, k):
    fit(name, k, **({"min_samples": 2} if name.endswith("+causal") else {}))


def test_reference_free_methods_skip_the_reference_and_drdpo_records_its_micro_batch():
    assert not methods.resolve("simpo").needs_reference and not methods.resolve("cpo").needs_reference
    assert methods.resolve("sdpo").needs_reference and methods.resolve("simpo+causal").needs_reference is False
    ctx = types.SimpleNamespace(preference=PrefCfg(batch_size=8, grad_accum=2))
    assert methods.resolve("drdpo").method_stats(ctx) == {"drdpo_micro_batch": 8, "drdpo_grad_accum": 2}
    drdpo = methods.resolve("drdpo+causal", {"beta_prime": 0.5})
    losses = torch.tensor([0.1, 2.0, 0.5])
    assert drdpo.reduce(losses).item() < losses.mean().item()          # DRO leans to the confident pairs


def test_the_no_sft_ablation_starts_from_and_refers_to_the_base_backbone():
    ctx = types.SimpleNamespace(load_sft_model=lambda: "sft", load_base_model=lambda: "base", sft_tag="t")
    loader, tag = methods.resolve("causaldpo-nosft").starting_point(ctx)
    assert loader() == "base" and tag == "base/t" and not methods.resolve("causaldpo-nosft").uses_sft
    loader, tag = methods.resolve("causaldpo").starting_point(ctx)
    assert loader() == "sft" and tag == "t"
    assert methods.resolve("causaldpo-nosft").causal        # the same regularizer as causaldpo


def test_sdpo_and_dmpo_take_their_papers_negatives_unless_told_otherwise():
    ctx = types.SimpleNamespace(preference=PrefCfg(negatives=1))
    assert methods.resolve("sdpo").n_negatives(ctx) == 3 and methods.resolve("dmpo").n_negatives(ctx) == 5
    assert methods.resolve("sdpo", {"negatives": None}).n_negatives(ctx) == 1      # the paper profile's setting
    assert methods.resolve("dpo").n_negatives(types.SimpleNamespace(preference=PrefCfg(negatives=2))) == 2
    assert methods.resolve("sdpo+causal").n_negatives(ctx) == 3
