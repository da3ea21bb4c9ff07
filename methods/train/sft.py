"""Supervised fine-tuning with TRL's `SFTTrainer`, loss on the completion only, cached per cell.

The dataset is pre-tokenized by the harness (columns `input_ids` and `completion_mask`), so SFT sees the exact
token ids that preference training and ranking use; with `completion_only_loss=True` TRL's dataset
preparation turns the prompt's labels into -100. The loss is the mean negative log-likelihood of the completion
tokens, computed by `CompletionSFTTrainer` with the preference trainer's `completion_logps`: sequences are
left-padded so every completion ends in the last column and the LM head runs on the completion positions only
(`logits_to_keep`). That is the same loss as TRL's, 2.5x faster on the tiny CPU profile (TRL 1.16's chunked
log-prob kernel computes the LM head for every prompt position) and lighter on memory for 128k-token vocabularies.
The SFT model of a (dataset, shift, split seed, training seed, backbone, SFT config, split fingerprint) cell is
trained once, saved atomically under the cache, and every method of the cell starts from a fresh copy of it.
With `sft.group_by_length` the batches hold samples of similar length (`methods.train.batching`: every sample once
per epoch, little padding); off, TRL's seeded shuffle.

Per-sample weights (RW / IFairLRS, `methods.rw`): `run_sft(..., weights=w)` adds a `weights` column that the
collator passes through, and the loss becomes ``(1/B) sum_i w_i * CE_i`` with CE_i the mean NLL over sample i's
completion tokens (`completion_loss`). Without weights the loss is unchanged: the token mean over the batch,
``sum_i NLL_i / sum_i len_i``. The two agree for weights of 1 when the batch's completions have equal lengths.
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path

import datasets
import torch
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from methods.train import distributed
from methods.train.batching import LengthGroupedSampler
from methods.train.cache import save_atomically, weights_problem
from methods.train.checkpoints import (StopAndTime, checkpoint_timing, claim_folder, complete_checkpoints,
                                         copy_weights, resume_point)
from methods.train.loop import EpochTimer, training_arguments
from methods.train.sequences import completion_logps, left_padded

logging.getLogger("trl").setLevel(logging.ERROR)


def sft_dataset(prompts: list[list[int]], completions: list[list[int]],
                weights: list[float] | None = None) -> datasets.Dataset:
    columns = {"input_ids": [p + c for p, c in zip(prompts, completions)],
               "completion_mask": [[0] * len(p) + [1] * len(c) for p, c in zip(prompts, completions)]}
    if weights is not None:
        if len(weights) != len(prompts):
            raise ValueError(f"{len(weights)} weights for {len(prompts)} samples")
        columns["weights"] = [float(w) for w in weights]
    return datasets.Dataset.from_dict(columns)


def completion_loss(logps: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """SFT loss from summed completion log-probs: the token mean, or with `weights` the weighted per-sample mean."""
    if weights is None:
        return -logps.sum() / lengths.sum()
    return (weights.to(logps.dtype) * (-logps / lengths)).mean()


class CompletionCollator:
    """Left-pads TRL-prepared rows (`input_ids`, `labels` with -100 on the prompt) into prompt + completion rows;
    a `weights` column, if present, comes along as a (B,) float tensor."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        prompts, completions = [], []
        for row in features:
            cut = next(i for i, label in enumerate(row["labels"]) if label != -100)
            prompts.append(list(row["input_ids"][:cut]))
            completions.append(list(row["input_ids"][cut:]))
        ids, mask, positions, lengths = left_padded(prompts, completions, self.pad_id, "cpu")
        batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "lengths": lengths}
        if "weights" in features[0]:
            batch["weights"] = torch.tensor([float(row["weights"]) for row in features])
        return batch


class CompletionSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with the completion-only NLL computed on the completion positions only (optionally
    per-sample weighted, see `completion_loss`); with `lengths` (one per sample), batches are length-grouped
    (`methods.train.batching`)."""

    def __init__(self, *args, lengths: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lengths = lengths

    def _get_train_sampler(self, train_dataset=None):
        if self.lengths is None:
            return super()._get_train_sampler(train_dataset)
        return LengthGroupedSampler(self.lengths, self.args.train_batch_size, seed=self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logps, _, _ = completion_logps(model, inputs["input_ids"], inputs["attention_mask"], inputs["position_ids"],
                                       inputs["lengths"])
        loss = completion_loss(logps, inputs["lengths"], inputs.get("weights"))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite SFT loss ({loss.item()}) at step {self.state.global_step + 1}")
        return loss


def sft_trainer(model, tokenizer, prompts: list[list[int]], completions: list[list[int]], output_dir: str,
                epochs: float, learning_rate: float, batch_size: int, seed: int, device, grad_accum: int = 1,
                warmup: float = 0.05, weight_decay: float = 0.0, dtype: str = "float32",
                weights: list[float] | None = None, callbacks: list | None = None,
                group_by_length: bool = False, save_steps: int = 0, keep: int = 0) -> CompletionSFTTrainer:
    """The SFT trainer of `run_sft`, its dataset prepared by TRL (labels -100 on the prompt), not yet trained;
    `save_steps` > 0: a checkpoint in `output_dir` every that many optimizer steps, the newest `keep` kept (0: all)."""
    arguments = training_arguments(output_dir, epochs, batch_size, grad_accum, learning_rate, warmup, seed, device,
                                   dtype=dtype, weight_decay=weight_decay)
    if save_steps:
        arguments.update(save_strategy="steps", save_steps=save_steps, save_total_limit=keep or None)
    args = TRLSFTConfig(**arguments,
                        completion_only_loss=True, max_length=None, dataset_num_proc=None, packing=False)
    return CompletionSFTTrainer(model=model, args=args, train_dataset=sft_dataset(prompts, completions, weights),
                                processing_class=tokenizer, data_collator=CompletionCollator(tokenizer.pad_token_id),
                                callbacks=callbacks, lengths=[len(p) + len(c) for p, c in zip(prompts, completions)]
                                if group_by_length else None)


def run_sft(model, tokenizer, prompts: list[list[int]], completions: list[list[int]], epochs: float,
            learning_rate: float, batch_size: int, seed: int, device, grad_accum: int = 1, warmup: float = 0.05,
            weight_decay: float = 0.0, dtype: str = "float32", weights: list[float] | None = None,
            group_by_length: bool = False):
    """Train `model` in place with TRL's SFTTrainer; returns (model, seconds per epoch). `weights`: one loss weight
    per sample (None: the unweighted token-mean loss); `group_by_length`: length-grouped batches."""
    with tempfile.TemporaryDirectory() as out:
        timer = EpochTimer()
        trainer = sft_trainer(model, tokenizer, prompts, completions, out, epochs, learning_rate, batch_size, seed,
                              device, grad_accum, warmup, weight_decay, dtype, weights, callbacks=[timer],
                              group_by_length=group_by_length)
        trainer.train()
    return trainer.model, timer.seconds_per_epoch(epochs)


def run_resumable_sft(model, tokenizer, prompts, completions, cfg, seed: int, device, dtype: str, folder: Path,
                      stop_step: int | None, log=print, weights: list[float] | None = None):
    """`run_sft` with checkpoints in `folder` (every `cfg.save_steps` optimizer steps, and at `stop_step`, where
    training ends early), continuing from the newest complete one at or before `stop_step`
    (`methods.train.checkpoints`). Returns (model, seconds per epoch, cumulative training seconds)."""
    resume = resume_point(folder, stop_step)
    timer = StopAndTime(stop_step, checkpoint_timing(resume)["train_seconds"])
    trainer = sft_trainer(model, tokenizer, prompts, completions, str(folder), cfg.epochs, cfg.learning_rate,
                          cfg.batch_size, seed, device, cfg.grad_accum, cfg.warmup_ratio, cfg.weight_decay, dtype,
                          weights, callbacks=[timer], group_by_length=cfg.group_by_length,
                          save_steps=cfg.save_steps, keep=getattr(cfg, "keep_checkpoints", 0))
    log(f"sft: checkpoints in {folder}; " + (f"continuing from {resume.name}" if resume else "starting") +
        (f", stopping at step {stop_step}" if stop_step else ""))
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer.model, timer.seconds_per_epoch(trainer.state, trainer.args), timer.total_seconds()


def stop_step_for(cfg, samples: int) -> int | None:
    """The optimizer step after which `cfg.stop_after_samples` samples have been trained on (None: no early stop,
    or not before the run's end)."""
    if getattr(cfg, "stop_after_samples", None) is None:
        return None
    step = math.ceil(int(cfg.stop_after_samples) / (cfg.batch_size * cfg.grad_accum))
    total = math.ceil(math.ceil(math.ceil(samples / cfg.batch_size) / cfg.grad_accum) * cfg.epochs)
    return step if step < total else None


def cached_entry(path: Path) -> tuple[dict | None, str | None]:
    """(stats, None) when `path` holds a complete SFT entry: stats JSON with seconds per epoch, a config and
    weights whose safetensors headers cover their files (a truncated file fails); (None, what is wrong) otherwise.
    A corrupt entry is retrained, never trusted."""
    try:
        stats = json.loads((path / "sft_stats.json").read_text())
        if not isinstance(stats, dict) or "seconds_per_epoch" not in stats:
            return None, "sft_stats.json has no seconds_per_epoch"
        problem = weights_problem(path)
        if problem:
            return None, problem
    except Exception as err:  # noqa: BLE001 - whatever does not read is retrained
        return None, f"{type(err).__name__}: {err}"
    return stats, None


def cached_sft(path: Path, build_model, tokenizer, prompts, completions, cfg, seed: int, device, dtype: str,
               log=print, weights: list[float] | None = None, checkpoints: Path | None = None,
               run_key: str | None = None) -> dict:
    """Train and save the cell's SFT model unless `path` already holds it (a complete entry, see `cached_entry`);
    returns its stats (kept beside it).
    `weights` (per-sample loss weights) must be part of what `path` names. `checkpoints`: the folder of this
    training run's checkpoints (named by everything that shapes the run but `cfg.stop_after_samples` and
    `cfg.save_steps`, `run_key`: checked against the folder's run.json), used when `cfg.save_steps` or
    `cfg.stop_after_samples` is set (`run_resumable_sft`)."""
    if (path / "sft_stats.json").exists():
        stats, problem = cached_entry(path)
        if stats is not None:
            log(f"sft: cached ({path})")
            return stats
        log(f"sft: ignoring the corrupt cache entry {path} ({problem}); training again")
    stop_step = stop_step_for(cfg, len(prompts))
    resumable = checkpoints is not None and (getattr(cfg, "save_steps", 0) or stop_step)
    if resumable:
        claim_folder(checkpoints, run_key)
    checkpoint = complete_checkpoints(checkpoints).get(stop_step) if resumable and stop_step else None
    if checkpoint is not None:
        log(f"sft: taking the model from {checkpoint}")
        stats = {**checkpoint_timing(checkpoint), "samples": len(prompts), "torch_threads": torch.get_num_threads()}
        model = None
    else:
        log(f"sft: training on {len(prompts)} samples for {cfg.epochs} epochs"
            + (f", stopping after {cfg.stop_after_samples}" if stop_step else ""))
        start = time.perf_counter()
        if resumable:
            model, seconds, total = run_resumable_sft(build_model(), tokenizer, prompts, completions, cfg, seed,
                                                      device, dtype, checkpoints, stop_step, log, weights)
        else:
            model, seconds = run_sft(build_model(), tokenizer, prompts, completions, cfg.epochs, cfg.learning_rate,
                                     cfg.batch_size, seed, device, cfg.grad_accum, cfg.warmup_ratio,
                                     cfg.weight_decay, dtype, weights, getattr(cfg, "group_by_length", False))
            total = time.perf_counter() - start
        stats = {"seconds_per_epoch": seconds, "train_seconds": total, "samples": len(prompts),
                 "torch_threads": torch.get_num_threads()}  # CPU float sums, hence the weights, depend on it

    if stop_step:
        stats.update(stop_step=stop_step, samples_seen=stop_step * cfg.batch_size * cfg.grad_accum)

    class _Saver:  # the model and its stats land in one atomic rename
        def save_pretrained(self, target):
            if model is None:
                copy_weights(checkpoint, Path(target))
            else:
                model.save_pretrained(target)
            tokenizer.save_pretrained(target)
            (Path(target) / "sft_stats.json").write_text(json.dumps(stats))

    if distributed.is_main():  # under a launcher every process trained the same model (DDP); one saves it
        save_atomically(_Saver(), path, valid=lambda p: cached_entry(p)[0] is not None)
    distributed.barrier()
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return stats
