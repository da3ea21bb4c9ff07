"""The causal regularizer over the whole optimizer step (methods/train/whole_step.py), in one process: a step of
A accumulation micro-batches clusters the same rows, finds the same environments and MMD, and accumulates the same
gradient as one micro-batch holding the whole step, for the mean reduction (DPO) and for Dr.DPO's DRO reduction
(whose adjusted loss needs every row's loss). The multi-process version runs in tests/e2e/test_whole_step_ddp.py."""
import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import dpo_loss, dro_reduce, mean_reduce
from methods.train import preference_trainer as trainer_module
from methods.train.config import PreferenceConfig
from methods.train.preference_trainer import reference_logps
from tests.support import pairs, tiny_model

PAD = 0
STEP = 16          # pairs per optimizer step


class FirstStepGradients(TrainerCallback):
    """The accumulated gradients of the model and of g just before the first optimizer step."""

    def __init__(self, model, regularizer):
        self.model, self.regularizer, self.grads = model, regularizer, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.grads is None:
            named = list(self.model.named_parameters()) + [(f"g.{n}", p) for n, p in self.regularizer.named_parameters()]
            self.grads = {n: p.grad.detach().clone() for n, p in named if p.grad is not None}


def first_step(batch: int, accum: int, reduce, monkeypatch, min_samples: int = 2):
    """One optimizer step of `STEP` pairs as `accum` micro-batches of `batch`: (first_step record, gradients)."""
    model, data = tiny_model(), pairs(n=STEP, k=1, seed=3)
    ref = reference_logps(model, data, PAD, "cpu")
    torch.manual_seed(0)
    # the matched representation is the chosen EOS hidden state: at the first step the policy is its reference, so
    # every chosen reward is 0 and a reward MMD would be 0 whatever the environments
    regularizer = CausalRegularizer(16, CausalConfig(projection_dim=4, min_samples=min_samples, eps_quantile=0.5,
                                                     mmd_target="hidden"))
    capture = FirstStepGradients(model, regularizer)
    original = trainer_module.PreferenceTrainer.__init__

    def with_capture(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=(callbacks or []) + [capture], **kwargs)

    cfg = PreferenceConfig(epochs=1, learning_rate=1e-3, batch_size=batch, grad_accum=accum, warmup_ratio=0.0,
                           max_grad_norm=1e9)
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module.PreferenceTrainer, "__init__", with_capture)
        _, _, history = trainer_module.train_preference(model, data, ref, lambda p, r: dpo_loss(p, r, 0.5), reduce,
                                                        0.5, cfg, 0, "cpu", PAD, regularizer)
    return history["causal/first_step"][0], capture.grads, history


def drdpo_reduce(per_sample, weights=None):
    return dro_reduce(per_sample, weights, beta_prime=1.0)


@pytest.mark.parametrize("reduce", [mean_reduce, drdpo_reduce], ids=["mean", "dro"])
def test_accumulated_micro_batches_cluster_and_train_like_the_whole_step(reduce, monkeypatch):
    whole, whole_grads, whole_history = first_step(STEP, 1, reduce, monkeypatch)
    split, split_grads, split_history = first_step(STEP // 4, 4, reduce, monkeypatch)
    assert whole["envs"] >= 2                                      # the check bites: an MMD term exists
    assert split["indices"] == whole["indices"] and sorted(whole["indices"]) == list(range(STEP))
    assert split["labels"] == whole["labels"]
    assert split["mmd2"] == pytest.approx(whole["mmd2"], rel=1e-4) and whole["mmd2"] > 0
    assert set(split_grads) == set(whole_grads) and any(n.startswith("g.") for n in whole_grads)
    for name, grad in whole_grads.items():
        torch.testing.assert_close(split_grads[name], grad, rtol=2e-4, atol=1e-6, msg=name)
    assert split_history["causal/clustered"] == [float(STEP)] * 4   # every micro-batch reports the step's figures
    assert whole_history["causal/clustered"] == [float(STEP)]
    # the logged loss of the step is the whole step's: micro-batch values average to it
    assert np.mean(split_history["pref_loss"]) == pytest.approx(whole_history["pref_loss"][0], rel=1e-4)


def test_per_micro_batch_clustering_is_what_the_whole_step_replaces(monkeypatch):
    """The defect this module fixes, shown on the same data: 4 rows per DBSCAN call with min_samples 3 find at most
    one environment, so a per-micro-batch regularizer would have no MMD term at all."""
    from methods.causal import dbscan_labels
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = dbscan_labels(rng.normal(size=(4, 4)), min_samples=3, eps_quantile=0.5)
        assert len(set(labels.tolist()) - {-1}) <= 1
    whole, _, _ = first_step(STEP // 4, 4, mean_reduce, monkeypatch, min_samples=3)
    assert len(whole["labels"]) == STEP
