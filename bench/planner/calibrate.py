"""`--calibrate`: measure the per-unit seconds of `bench.planner.prices.Calibration` on this device, with the real
training and ranking code on one real cell of the profile (the first group of the plan).

Top to bottom: build the cell (setup); SFT steps on a seeded subset of its training samples (seconds per step, and
the fixed cost of a training run: its wall time minus its epoch); preference steps with 1 and with K_max rejected
responses (intercept and per-sequence cost) and with the causal regularizer (its extra per step); a reference
forward pass; constrained greedy top-1 decoding; two SASRec epochs; then every ranking key of the plan on the
first evaluation prompts (the user's training items excluded, as in a run), each timed until `rank_seconds` have
passed or `rank_prompts` prompts are ranked. Rankings are timed on the cell's cached SFT model when the cache holds
it (a trained model prunes likelihood ranking as a run's model does), else on the model after the SFT steps.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import methods
from bench.config import RankingConfig
from bench.pipeline import PreparedCell
from bench.planner.prices import FIXED_RANKINGS, Calibration
from bench.results import GIT_COMMIT, device_name
from methods.d3 import D3Config, D3Recommender
from methods.negatives import random_negatives
from methods.preference import preference_pairs
from methods.ranking import ProtocolRecommender
from methods.ranking.protocols import protocol_options, ranking_for_cost_key
from methods.sasrec import SASRecConfig, SASRecRecommender, fit_sasrec
from methods.train import distributed
from methods.train.preference_trainer import ReferenceLogps, reference_logps
from methods.train.sft import cached_entry

STEPS = 24


def calibrate(cfg, ranking_keys: list[str], max_negatives: int, log=print, rank_seconds: float = 20.0,
              rank_prompts: int = 256) -> Calibration:
    start = time.perf_counter()
    cell = PreparedCell(cfg, log)
    setup = time.perf_counter() - start
    rng = np.random.default_rng(cfg.seed)
    with tempfile.TemporaryDirectory(prefix="calibrate-") as out:
        ctx = cell.context(Path(out))
        model, sft = _time_sft(cell, rng, log)
        preference = _time_preference(ctx, model, rng, max_negatives, log)
        ranking_model, ranking_model_name = model, f"the model after {sft['steps']} SFT steps"
        if cached_entry(cell.sft_dir)[0] is not None:
            ranking_model, ranking_model_name = cell.sft_model(), f"the cached SFT model {cell.sft_dir.name}"
        top1_prompts = cell.train_prompts[:64]
        top1_start = time.perf_counter()
        cell.predict_top1(ranking_model, top1_prompts)
        top1 = (time.perf_counter() - top1_start) / len(top1_prompts)
        sasrec = fit_sasrec(ctx, dataclasses.replace(SASRecConfig(), epochs=2))
        log(f"calibrate: top-1 decoding {top1 * 1000:.1f} ms/prompt; SASRec {sasrec.stats['seconds_per_epoch']:.1f} "
            f"s/epoch; rankings timed on {ranking_model_name}")
        rank = _time_rankings(cell, ranking_keys, ranking_model, sasrec, rank_seconds, rank_prompts, log)

    n_train = len(cell.train_prompts)
    titles = [len(cell.completions[int(t)]) for t in cell.train.targets[:1000]]
    return Calibration(
        device=device_name(cell.device), device_type=cell.device.type, threads=torch.get_num_threads(),
        world_size=distributed.world_size(), profile=cfg.profile, backbone=cfg.backbone.name,
        dataset=cfg.data.dataset, train_samples=n_train, train_interactions=len(cell.split["train"]),
        prompt_tokens=float(np.mean([len(p) for p in cell.train_prompts[:1000]])),
        title_tokens=float(np.mean(titles)), catalogue_tokens=int(sum(len(c) for c in cell.catalogue.completions)),
        setup=setup, run_overhead=sft["overhead"], sft_step=sft["step"], top1=top1,
        sasrec_epoch=sasrec.stats["seconds_per_epoch"] / n_train, rank=rank, ranking_model=ranking_model_name,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), git_commit=GIT_COMMIT, **preference)


def _time_sft(cell: PreparedCell, rng, log):
    """STEPS SFT steps from the base model: (the model, {seconds per step, run start-up seconds, steps})."""
    sft = cell.cfg.sft
    per_step = sft.batch_size * sft.grad_accum
    rows = np.sort(rng.permutation(len(cell.train_prompts))[:STEPS * per_step])
    wall = time.perf_counter()
    model, epoch = cell.sft_step(cell.base_model(), [cell.train_prompts[i] for i in rows], cell.train.targets[rows],
                                 1, sft.learning_rate)
    wall = time.perf_counter() - wall
    steps = math.ceil(len(rows) / per_step)
    out = {"step": epoch / steps, "overhead": max(0.0, wall - epoch), "steps": steps}
    log(f"calibrate: SFT {out['step']:.3f} s/step, {out['overhead']:.1f} s to start a training run")
    return model, out


def _time_preference(ctx, model, rng, max_negatives: int, log) -> dict:
    """STEPS preference steps (DPO) with 1 and with max(2, K_max) rejected responses, CausalDPO's with 1, and the
    reference forward pass over the first pair set: the preference fields of `Calibration`."""
    pref = ctx.preference
    per_step = pref.batch_size * pref.grad_accum
    rows = np.sort(rng.permutation(len(ctx.train.prompts))[:STEPS * per_step])
    steps = math.ceil(len(rows) / per_step)
    widths, step_seconds = [], []
    for k in sorted({1, max(2, max_negatives)}):
        negatives = random_negatives(ctx.train.targets[rows], [ctx.train.histories[i] for i in rows], ctx.items, k,
                                     ctx.seed)
        pairs = preference_pairs(ctx, negatives, rows)
        zeros = ReferenceLogps(np.zeros(len(pairs), np.float32), np.zeros((len(pairs), k), np.float32), 0.0)
        _, seconds, _ = methods.resolve("dpo").train_pairs(ctx, copy.deepcopy(model), pairs, zeros)
        widths.append(per_step * (1 + k))
        step_seconds.append(seconds / steps)
        if k == 1:
            _, causal_seconds, _ = methods.resolve("causaldpo").train_pairs(ctx, copy.deepcopy(model), pairs, zeros)
            forward_start = time.perf_counter()
            reference_logps(model, pairs, ctx.tokenizer.pad_token_id, ctx.device)
            forward = (time.perf_counter() - forward_start) / (2 * len(pairs))
    per_sequence = (step_seconds[1] - step_seconds[0]) / (widths[1] - widths[0])
    out = {"preference_intercept": step_seconds[0] - per_sequence * widths[0], "preference_per_sequence": per_sequence,
           "causal_extra": max(0.0, causal_seconds / steps - step_seconds[0]), "forward": forward}
    log(f"calibrate: preference step {out['preference_intercept']:.3f} s + {per_sequence * 1000:.2f} ms per sequence "
        f"(+{out['causal_extra']:.3f} s with the causal regularizer); reference forward {forward * 1000:.2f} "
        f"ms/sequence")
    return out


def _time_rankings(cell: PreparedCell, keys: list[str], model, sasrec, budget: float, most: int, log) -> dict[str, float]:
    """Seconds per prompt of each ranking key on the first evaluation prompts, each until `budget` seconds have
    passed or `most` prompts are ranked (at least one batch), after one untimed batch (the grid builds an
    embedder's title embeddings once per group, outside the records' ranking time); keys marked `@base` on the
    untrained backbone."""
    part = next(iter(cell.eval_parts))
    samples, prompts = cell.eval_parts[part], cell.eval_prompts[part]
    exclude = cell.consumed(samples)
    rank, batch = {}, cell.cfg.ranking.batch_size
    base = None
    for key in sorted(set(keys) - set(FIXED_RANKINGS)):
        if key.endswith("@base") and base is None:
            base = cell.base_model()
        recommender = _recommender(key.removesuffix("@base"), cell, base if key.endswith("@base") else model, sasrec)
        recommender.rank(prompts[:batch], samples.histories[:batch], cell.cfg.ranking.k,  # warm-up, untimed: what a
                         None if exclude is None else exclude[:batch])  # group builds once (title embeddings, ...)
        done, spent = 0, 0.0
        while done < min(most, len(prompts)) and (spent < budget or done == 0):
            rows = slice(done, done + batch)
            t = time.perf_counter()
            recommender.rank(prompts[rows], samples.histories[rows], cell.cfg.ranking.k,
                             None if exclude is None else exclude[rows])
            spent += time.perf_counter() - t
            done += len(prompts[rows])
        rank[key] = spent / done
        log(f"calibrate: ranking {key}: {rank[key] * 1000:.1f} ms/prompt ({done} prompts)")
    return rank


def _recommender(key: str, cell: PreparedCell, model, sasrec):
    """The recommender a ranking key stands for (`methods.declared_work.run_ranking_key`, `Method.ranking_key`)."""
    if key == "sasrec":
        return SASRecRecommender(sasrec)
    if key.startswith("d3"):
        run_key = key.partition("/")[2]
        if not run_key:
            return D3Recommender(model, cell.catalogue, sasrec, D3Config(), "beam")
        ranking = ranking_for_cost_key(run_key, cell.cfg.ranking)
        options = protocol_options(ranking, cell.tokenizer, cell.base_model, cell.device)
        return D3Recommender(model, cell.catalogue, sasrec, D3Config(), ranking.protocol, options)
    ranking = ranking_for_cost_key(key, cell.cfg.ranking)
    options = protocol_options(ranking, cell.tokenizer, cell.base_model, cell.device)
    return ProtocolRecommender(model, cell.catalogue, ranking.protocol, ranking.batch_size, **options)


