"""The one preference trainer: chosen + K rejected responses in one forward pass, a loss from `losses`, optional
regularizers, reference log-probs computed once per (SFT model, pair set) and cached on disk.

Sequences are left-padded ``[pad.. prompt completion]`` with explicit position ids, so every completion ends in
the last column: the LM head runs on the last ``max completion length + 1`` positions only (`logits_to_keep`), and
the last prompt token's hidden state (CausalDPO's h_i) and the completion's EOS hidden state come from the same
forward. A batch of B prompts becomes (1+K)·B rows: all chosen responses first, then rejected response 1 of every
prompt, and so on. Training runs through `transformers.Trainer` (progress bar, gradient accumulation, mixed
precision, `accelerate` data parallelism), with `compute_loss` overridden: the same pattern as the S-DPO and
CausalDPO reference trainers, without their label-masking and broadcasting bugs.

A pair set may carry a per-pair label-smoothing factor (`PreferencePairs.smoothing`, (n, K): RosePO's eps). It
travels through the dataset and the collator to the loss as `LogProbs.smoothing` and is not part of the pair set's
fingerprint: it does not change the reference log-probs, so it does not key their cache.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from methods.losses import LogProbs, mean_reduce
from methods.train import distributed
from methods.train.loop import EpochTimer, training_arguments
from methods.train.sequences import completion_logps, left_padded
from methods.train.whole_step import plan_step, surrogate
from splits.permissions import honour_umask


@dataclass
class PreferencePairs:
    prompts: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[list[int]]]          # K rejected completions per prompt
    smoothing: np.ndarray | None = None      # optional per-pair label smoothing eps (n, K); not in the fingerprint

    def __len__(self) -> int:
        return len(self.prompts)

    def fingerprint(self) -> str:
        """Hash of the token ids only (keys the reference log-prob cache; `smoothing` does not change them)."""
        h = hashlib.sha256()
        for p, c, r in zip(self.prompts, self.chosen, self.rejected):
            h.update(repr((p, c, r)).encode())
        return h.hexdigest()[:20]


def _rows(batch_prompts, chosen, rejected):
    """Flatten a batch into (1+K)·B rows: chosen first, then each rejected slot."""
    k = len(rejected[0])
    prompts = list(batch_prompts) * (1 + k)
    completions = list(chosen) + [r[j] for j in range(k) for r in rejected]
    return prompts, completions, k


class ReferenceLogps(tuple):
    """(chosen (n,), rejected (n, K)) reference log-probs, with `.seconds`: the wall time of the reference forward
    pass over the pair set (measured when computed, stored with the cache entry), i.e. the per-epoch cost a trainer
    that scores the reference on the fly (TRL's default) would pay."""

    def __new__(cls, chosen, rejected, seconds: float = float("nan")):
        obj = super().__new__(cls, (chosen, rejected))
        obj.seconds = float(seconds)
        return obj


@torch.inference_mode()
def reference_logps(model, pairs: PreferencePairs, pad_id: int, device, batch_size: int = 32):
    """log pi_ref of every chosen (n,) and rejected (n, K) completion, with the model in eval mode."""
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        sl = slice(start, start + batch_size)
        prompts, completions, k = _rows(pairs.prompts[sl], pairs.chosen[sl], pairs.rejected[sl])
        logps, _, _ = completion_logps(model, *left_padded(prompts, completions, pad_id, device))
        logps = logps.view(1 + k, -1).T.cpu()
        chosen.append(logps[:, 0])
        rejected.append(logps[:, 1:])
    model.train(was_training)
    return torch.cat(chosen).numpy(), torch.cat(rejected).numpy()


def cached_reference_logps(cache_dir: Path, tag: str, model_loader: Callable, pairs: PreferencePairs, pad_id: int,
                           device, log=print):
    """Reference log-probs keyed by (reference model tag, pair-set fingerprint), stored as .npz (atomic write).
    A cache entry that does not load or does not match the pair set is recomputed, never trusted. Returns a
    `ReferenceLogps` (a (chosen, rejected) tuple carrying the seconds the reference pass took)."""
    path = Path(cache_dir) / "reflogps" / f"{hashlib.sha256(tag.encode()).hexdigest()[:16]}-{pairs.fingerprint()}.npz"
    if path.exists():
        try:
            with np.load(path) as data:
                chosen, rejected = data["chosen"], data["rejected"]
                seconds = float(data["seconds"]) if "seconds" in data.files else None
            if (seconds is not None and chosen.shape == (len(pairs),)
                    and rejected.shape == (len(pairs), len(pairs.rejected[0]))):
                log(f"reference log-probs: cached ({path.name})")
                return ReferenceLogps(chosen, rejected, seconds)
        except Exception as err:  # noqa: BLE001 - any unreadable entry is recomputed
            log(f"reference log-probs: ignoring unreadable cache entry {path} ({err})")
    log(f"reference log-probs: computing for {len(pairs)} prompts x {1 + len(pairs.rejected[0])} responses")
    model = model_loader()
    start = time.perf_counter()
    chosen, rejected = reference_logps(model, pairs, pad_id, device)
    seconds = time.perf_counter() - start
    if distributed.is_main():  # under a launcher every process computes them; one writes
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, chosen=chosen, rejected=rejected, seconds=np.float64(seconds))
        honour_umask(tmp)
        os.replace(tmp, path)
    return ReferenceLogps(chosen, rejected, seconds)


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, pairs: PreferencePairs, ref_chosen: np.ndarray, ref_rejected: np.ndarray):
        self.pairs, self.ref_chosen, self.ref_rejected = pairs, ref_chosen, ref_rejected

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        item = {"index": i, "prompt": self.pairs.prompts[i], "chosen": self.pairs.chosen[i],
                "rejected": self.pairs.rejected[i],
                "ref_chosen": float(self.ref_chosen[i]), "ref_rejected": self.ref_rejected[i].tolist()}
        if self.pairs.smoothing is not None:
            item["smoothing"] = np.asarray(self.pairs.smoothing[i], dtype=np.float32).tolist()
        return item


class PairCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        prompts, completions, k = _rows([f["prompt"] for f in features], [f["chosen"] for f in features],
                                        [f["rejected"] for f in features])
        ids, mask, positions, lengths = left_padded(prompts, completions, self.pad_id, "cpu")
        batch = {"index": torch.tensor([f["index"] for f in features]),
                 "input_ids": ids, "attention_mask": mask, "position_ids": positions, "lengths": lengths,
                 "ref_chosen": torch.tensor([f["ref_chosen"] for f in features]),
                 "ref_rejected": torch.tensor([f["ref_rejected"] for f in features])}
        if "smoothing" in features[0]:
            batch["smoothing"] = torch.tensor([f["smoothing"] for f in features], dtype=torch.float32)
        return batch


class SyncRegularizerGradients(TrainerCallback):
    """Data parallelism: DDP averages the model's gradients; the regularizer's projection lives outside the wrapped
    model, so its gradients are averaged here before each optimizer step."""

    def __init__(self, regularizer):
        self.regularizer = regularizer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        distributed.mean_gradients(self.regularizer.parameters())


class NonFiniteLoss(FloatingPointError):
    pass


def implicit_chosen_reward(policy: LogProbs, reference: LogProbs, beta: float) -> torch.Tensor:
    """beta * (log pi(y_w|x) - log pi_ref(y_w|x)): the regularizer's default MMD target (`mmd_target=reward`)."""
    return beta * (policy.chosen - reference.chosen)


class PreferenceTrainer(Trainer):
    """`transformers.Trainer` whose loss is `loss_fn` over completion log-probs, reduced by `reduce(per_sample,
    weights=None)`, plus an optional regularizer (a module with its own trainable parameters, added to the
    optimizer) that receives the same `reduce` and the chosen reward from `chosen_reward(policy, reference, beta)`."""

    def __init__(self, *args, loss_fn: Callable, reduce: Callable, beta: float, regularizer=None,
                 chosen_reward: Callable = implicit_chosen_reward, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fn, self.reduce, self.beta, self.regularizer = loss_fn, reduce, beta, regularizer
        self.chosen_reward = chosen_reward
        self._sums: dict[str, float] = {}
        self._count = 0
        self.history: dict[str, list[float]] = {}
        self.first_step: dict | None = None   # the regularizer's first step: pair indices, DBSCAN labels, MMD^2

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self.regularizer is not None and not getattr(self, "_regularizer_added", False):
            optimizer.add_param_group({"params": list(self.regularizer.parameters()), "weight_decay": 0.0})
            self._regularizer_added = True
        return optimizer

    def log_probs(self, model, inputs, all_rows: bool = True):
        """(policy, reference) `LogProbs` of a collated batch and the hidden states the regularizer uses (None
        without one). `all_rows=False` scores the prompt + chosen rows only (zero rejected columns)."""
        ref_chosen, ref_rejected = inputs["ref_chosen"], inputs["ref_rejected"]
        b, k = ref_rejected.shape
        k = k if all_rows else 0
        n = (1 + k) * b
        logps, prompt_hidden, end_hidden = completion_logps(
            model, inputs["input_ids"][:n], inputs["attention_mask"][:n], inputs["position_ids"][:n],
            inputs["lengths"][:n], want_hidden=self.regularizer is not None)
        lengths = inputs["lengths"][:n].view(1 + k, b).T
        table = logps.view(1 + k, b).T                                   # (B, 1+K)
        smoothing = inputs.get("smoothing")
        smoothing = None if smoothing is None else smoothing[:, :k].to(table.dtype)
        policy = LogProbs(table[:, 0], table[:, 1:], lengths[:, 0], lengths[:, 1:], smoothing)
        reference = LogProbs(ref_chosen.to(table.dtype), ref_rejected[:, :k].to(table.dtype), lengths[:, 0],
                             lengths[:, 1:], smoothing)
        if prompt_hidden is not None:
            prompt_hidden, end_hidden = prompt_hidden[:b], end_hidden[:b]
        return policy, reference, prompt_hidden, end_hidden

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The Trainer fetches an optimizer step's micro-batches before training on them: when the step spans
        several micro-batches or processes, the causal regularizer is planned over all of them here
        (`methods.train.whole_step`)."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        self._plan, self._micro = None, 0
        if self.regularizer is not None and batches and (len(batches) > 1 or distributed.world_size() > 1):
            self._plan = plan_step([self._prepare_inputs(b) for b in batches], self._step_rows, self.regularizer,
                                   self.reduce, includes_losses=self.reduce is not mean_reduce)
            self._keep_first_step(self._plan.indices, self._plan.labels, self._plan.stats)
        return batches, num_items

    def _step_rows(self, inputs):
        """One micro-batch's (pair index, per-sample loss or None, z, phi), without gradient (model in its training
        mode, as the training forward sees it)."""
        all_rows = self.reduce is not mean_reduce
        with self.accelerator.autocast():
            policy, reference, prompt_hidden, end_hidden = self.log_probs(self.model, inputs, all_rows)
        z = self.regularizer.represent(prompt_hidden)
        phi = self.regularizer.matched(self.chosen_reward(policy, reference, self.beta), end_hidden)
        return inputs["index"], self.loss_fn(policy, reference) if all_rows else None, z, phi

    def _keep_first_step(self, indices, labels, stats):
        if self.first_step is None:
            self.first_step = {"indices": np.asarray(indices).tolist(), "labels": np.asarray(labels).tolist(),
                               "mmd2": stats.get("causal/mmd2", 0.0), "envs": stats["causal/envs"]}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        policy, reference, prompt_hidden, end_hidden = self.log_probs(model, inputs)
        per_sample = self.loss_fn(policy, reference)
        with torch.no_grad():
            margin = (policy.chosen - reference.chosen).unsqueeze(1) - (policy.rejected - reference.rejected)
        stats = {"rewards/margin": float(self.beta * margin.mean())}
        plan = getattr(self, "_plan", None)
        if self.regularizer is None:
            loss = self.reduce(per_sample)
        elif plan is not None:   # the step's regularizer, planned over all its micro-batches and processes
            rows = plan.rows[self._micro]
            self._micro += 1
            z = self.regularizer.represent(prompt_hidden)
            phi = self.regularizer.matched(self.chosen_reward(policy, reference, self.beta), end_hidden)
            term = surrogate(rows, z, phi, per_sample if plan.includes_losses else None, plan.scale)
            base = per_sample.sum() * 0.0 if plan.includes_losses else self.reduce(per_sample)
            loss = base + term + plan.value
            stats.update(plan.stats)
        else:
            chosen_reward = self.chosen_reward(policy, reference, self.beta)
            loss, penalty, reg_stats = self.regularizer(per_sample, prompt_hidden, chosen_reward, end_hidden,
                                                        reduce=self.reduce)
            loss = loss + penalty
            stats.update(reg_stats)
            self._keep_first_step(inputs["index"].cpu().numpy(), self.regularizer.last_labels, reg_stats)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite preference loss ({loss.item()}) at step {self.state.global_step + 1}")
        stats["pref_loss"] = float(loss.detach())
        for key, value in stats.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self.history.setdefault(key, []).append(value)
        self._count += 1
        return loss

    def log(self, logs: dict, *args, **kwargs):
        if self._count:
            logs.update({key: round(value / self._count, 5) for key, value in self._sums.items()})
            self._sums, self._count = {}, 0
        super().log(logs, *args, **kwargs)


def train_preference(model, pairs: PreferencePairs, ref: tuple[np.ndarray, np.ndarray], loss_fn: Callable,
                     reduce: Callable, beta: float, cfg, seed: int, device, pad_id: int, regularizer=None,
                     dtype: str = "float32", chosen_reward: Callable = implicit_chosen_reward):
    """Train `model` in place on `pairs`; returns (model, seconds_per_epoch, logged history).
    `reduce(per_sample, weights=None)` reduces the per-sample losses (`mean_reduce` for most losses).
    seconds_per_epoch counts the policy's training only; see `cached_reference_logps` for the
    reference pass."""
    if regularizer is not None:
        regularizer.to(device)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(**training_arguments(
            out, cfg.epochs, cfg.batch_size, cfg.grad_accum, cfg.learning_rate, cfg.warmup_ratio, seed, device,
            cfg.max_grad_norm, dtype))
        timer = EpochTimer()
        trainer = PreferenceTrainer(model=model, args=args, train_dataset=PairDataset(pairs, *ref),
                                    data_collator=PairCollator(pad_id), loss_fn=loss_fn,
                                    callbacks=[timer] + ([SyncRegularizerGradients(regularizer)]
                                                         if regularizer is not None else []),
                                    reduce=reduce, beta=beta, regularizer=regularizer,
                                    chosen_reward=chosen_reward)
        trainer.train()
    if trainer.first_step is not None:
        trainer.history["causal/first_step"] = [trainer.first_step]
    return trainer.model, timer.seconds_per_epoch(cfg.epochs), trainer.history
