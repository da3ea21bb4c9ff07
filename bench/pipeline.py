"""One run, top to bottom: data -> split -> samples -> tokenizer -> SFT (cached) -> each method's fit -> ranking
-> metrics -> one record per method. Every stage logs one line.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

import methods
from bench.backbone import build_model, load_tokenizer, load_trained
from bench.config import SECTIONS, RunConfig
from bench.fits import fit_with_cache
from bench.metrics import grouped_metrics, metrics_by_group, ranking_metrics, recommendation_counts, target_ranks
from bench.prompts import (check_joint_tokenization, display_titles, encode_completion, encode_prompt, noun_for,
                           render_prompt, uses_chat_template)
from bench.results import environment, peak_memory_mb, record_key, record_path, write_record
from bench.sft_models import find_prebuilt, prebuilt_folder, write_identity
from methods.base import MethodContext, TrainingSamples
from methods.ranking import Catalogue, ProtocolRecommender, rank
from methods.ranking.protocols import protocol_options
from methods.train import distributed
from methods.train.precision import autocast_name, resolve_autocast
from methods.train.preference_trainer import cached_reference_logps
from methods.train.sft import cached_entry, cached_sft, run_sft
from splits import build_split, load_dataset
from splits.groups import popularity_groups, time_periods
from splits.samples import Samples, build_samples


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class PreparedCell:
    """Everything shared by the methods of one (dataset, shift, split seed, training seed, backbone) cell."""

    def __init__(self, cfg: RunConfig, log: Callable[[str], None]):
        self.cfg, self.log = cfg, log
        self.device = distributed.local_device(pick_device(cfg.device))
        distributed.ensure_process_group(self.device)
        self.cache_dir = Path(cfg.cache_dir)
        data = cfg.data
        start = time.perf_counter()
        options = {"raw_path": data.raw_path} if data.raw_path else {}
        self.dataset = load_dataset(data.dataset, **options)
        self.split = build_split(self.dataset, data.shift, data.split_seed)
        sizes = ", ".join(f"{p} {len(self.split[p])}" for p in self.split.parts)
        log(f"data: {data.dataset} / {data.shift} (split seed {data.split_seed}): {len(self.dataset.titles)} items; "
            f"{sizes}; fingerprint {self.split.fingerprint[:12]} ({time.perf_counter() - start:.1f}s)")

        self.items = np.asarray(self.dataset.items, dtype=np.int64)
        self.position = {int(item): i for i, item in enumerate(self.items)}
        counts = self.split["train"]["item"].value_counts()
        self.train_counts = np.array([counts.get(i, 0) for i in self.items], dtype=np.int64)
        self.groups = popularity_groups(self.train_counts)
        self.noun = noun_for(data.dataset)

        self.train = build_samples(self.split, "train", data.history_len, data.max_train_samples, data.split_seed)
        self.eval_parts = {}
        for part in data.eval_parts:
            name = "iid_test" if part == "ood_test" and len(self.split["ood_test"]) == 0 else part
            self.eval_parts[name] = build_samples(self.split, name, data.history_len, data.max_eval_samples,
                                                  data.split_seed)
        log("samples: train {} (dropped {} with no history); {}".format(
            len(self.train), self.train.dropped,
            "; ".join(f"{p} {len(s)} of {len(self.split[p])}" for p, s in self.eval_parts.items())))

        self.titles = display_titles(self.dataset.titles, data.titles)  # as prompts and answers write them
        titles = [self.titles[int(i)] for i in self.items]
        self.tokenizer = load_tokenizer(cfg.backbone, titles + [render_prompt(["x"], self.noun)], self.cache_dir)
        self.chat = uses_chat_template(self.tokenizer, cfg.backbone.chat_template)
        self.completions = {int(i): encode_completion(self.tokenizer, t, self.chat) for i, t in zip(self.items, titles)}
        self.catalogue = Catalogue(items=self.items.tolist(), completions=[self.completions[int(i)] for i in self.items],
                                   eos_id=self.tokenizer.eos_token_id, pad_id=self.tokenizer.pad_token_id)
        self.ranking_options = protocol_options(cfg.ranking, self.tokenizer, self.base_model, self.device)
        self.train_prompts = self.encode(self.train)
        self.eval_prompts = {p: self.encode(s) for p, s in self.eval_parts.items()}
        check_joint_tokenization(self.tokenizer, [self.prompt_text(h) for h in self.train.histories[:64]],
                                 [self.titles[int(t)] for t in self.train.targets[:64]], self.chat)
        log(f"tokenizer: {cfg.backbone.name}, vocabulary {len(self.tokenizer)}, "
            f"{'chat template' if self.chat else 'plain template'}, "
            f"mean prompt {np.mean([len(p) for p in self.train_prompts]):.0f} tokens")

        # the backbone and SFT settings that differ from their defaults (as records are keyed, `stable_config`): a
        # field added later with a behaviour-keeping default leaves every cached SFT model (and fit) found
        backbone = {k: v for k, v in non_default(cfg.backbone).items() if k != "allow_download"}
        sft_identity = {"split": self.split.fingerprint, "backbone": backbone, "sft": non_default(cfg.sft),
                        "seed": cfg.seed, "history_len": data.history_len,
                        "max_train_samples": data.max_train_samples, "tokenizer": len(self.tokenizer)}
        if data.titles != "catalogue":  # absent at the default, so models cached before the option stay found
            sft_identity["titles"] = data.titles
        self.autocast = autocast_name(resolve_autocast(cfg.backbone.autocast, self.device))  # "bf16" or "fp32"
        if cfg.backbone.autocast == "auto":  # what `auto` resolved to on this machine trains the model
            sft_identity["autocast"] = self.autocast
        if self.device.type == "cpu":  # the thread count changes CPU float sums, hence the trained weights' last bits:
            sft_identity["cpu_threads"] = torch.get_num_threads()  # a cached model is reused only at the same count
        for key in VOLATILE_SETTINGS["sft"]:  # checkpoints do not change the model
            sft_identity["sft"].pop(key, None)
        stop = sft_identity["sft"].pop("stop_after_samples", None)
        # the training run (its checkpoints, shared by the points of a learning curve) and the model taken from it
        self.sft_run = record_key(sft_identity)
        self.sft_checkpoints = (Path(cfg.sft.checkpoint_dir) if cfg.sft.checkpoint_dir
                                else self.cache_dir / "sft-checkpoints" / self.sft_run)
        self.sft_identity = sft_identity if stop is None else {**sft_identity, "stop_after_samples": stop}
        self.sft_tag = record_key(self.sft_identity)
        self.sft_dir = self.cache_dir / "sft" / self.sft_tag
        if cfg.sft.prebuilt_dir:  # a committed model: used, never written
            found, why = find_prebuilt(prebuilt_folder(cfg.sft.prebuilt_dir), self.sft_tag, self.sft_identity,
                                       lambda entry: cached_entry(entry)[0] is not None)
            log(f"sft: committed model {found} ({why})" if found else
                f"sft: no committed model in {cfg.sft.prebuilt_dir} ({why}); this cell's own is {self.sft_tag}")
            if found is not None:
                self.sft_dir, self.sft_tag = found, found.name
        self.sft_stats: dict | None = None
        self.seen_by_user: dict[int, np.ndarray] | None = None

    def prompt_text(self, history) -> str:
        return render_prompt([self.titles[int(i)] for i in history], self.noun,
                             self.tokenizer if self.chat else None)

    def encode(self, samples: Samples) -> list[list[int]]:
        return [encode_prompt(self.tokenizer, self.prompt_text(h), self.chat) for h in samples.histories]

    def base_model(self):
        return build_model(self.cfg.backbone, self.tokenizer, self.cfg.seed, self.device, self.cache_dir)

    def ensure_sft(self) -> dict:
        if self.sft_stats is None:
            self.sft_stats = cached_sft(self.sft_dir, self.base_model, self.tokenizer, self.train_prompts,
                                        [self.completions[int(t)] for t in self.train.targets], self.cfg.sft,
                                        self.cfg.seed, self.device, self.cfg.backbone.dtype, self.log,
                                        checkpoints=self.sft_checkpoints, run_key=self.sft_run)
            if self.sft_dir.parent == self.cache_dir / "sft":  # this machine's own entry: what trained it
                write_identity(self.sft_dir, self.sft_identity)
        return self.sft_stats

    def sft_model(self):
        return load_trained(self.sft_dir, self.cfg.backbone, self.device)

    def sft_step(self, model, prompts, targets, epochs, learning_rate, weights=None):
        """SFT of `model` on (prompt, target) samples with the run's SFT settings; returns (model, seconds/epoch)."""
        sft = self.cfg.sft
        return run_sft(model, self.tokenizer, prompts, [self.completions[int(t)] for t in targets], epochs,
                       learning_rate, sft.batch_size, self.cfg.seed, self.device, sft.grad_accum, sft.warmup_ratio,
                       sft.weight_decay, self.cfg.backbone.dtype, weights=weights, group_by_length=sft.group_by_length)

    def predict_top1(self, model, prompts) -> np.ndarray:
        top = rank("beam", model, prompts, self.catalogue, k=1, batch_size=self.cfg.ranking.batch_size).topk[:, 0]
        return np.where(top >= 0, self.items[np.maximum(top, 0)], -1)

    def context(self, method_output: Path) -> MethodContext:
        return MethodContext(
            split=self.split,
            train=TrainingSamples(self.train_prompts, self.train.targets, self.train.histories, self.train.users,
                                  self.train.timestamps),
            items=self.items, completions=self.completions, train_counts=self.train_counts,
            preference=self.cfg.preference, seed=self.cfg.seed, device=self.device, tokenizer=self.tokenizer,
            load_sft_model=self.sft_model, load_base_model=self.base_model, sft_tag=self.sft_tag,
            sft_step=self.sft_step, sft_config=self.cfg.sft, catalogue=self.catalogue,
            reference_logps=lambda loader, tag, pairs: cached_reference_logps(
                self.cache_dir, tag, loader, pairs, self.tokenizer.pad_token_id, self.device, self.log),
            recommender=lambda model: ProtocolRecommender(model, self.catalogue, self.cfg.ranking.protocol,
                                                          self.cfg.ranking.batch_size, **self.ranking_options),
            predict_top1=self.predict_top1, output_dir=method_output, log=self.log)

    def consumed(self, samples: Samples) -> list[np.ndarray] | None:
        """Per sample, the catalogue positions of its user's training-part items, which `ranking.exclude_seen`
        leaves out of every ranked list (never valid or test items); None when the setting is off."""
        if not self.cfg.ranking.exclude_seen:
            return None
        if self.seen_by_user is None:
            train = self.split["train"]
            positions = np.array([self.position[int(i)] for i in train["item"]], dtype=np.int64)
            self.seen_by_user = {int(u): np.unique(positions[rows])
                                 for u, rows in pd.Series(np.arange(len(train))).groupby(train["user"].to_numpy())}
        empty = np.empty(0, dtype=np.int64)
        return [self.seen_by_user.get(int(u), empty) for u in samples.users]

    def rank_sharded(self, recommender, prompts, histories, exclude=None, users=None):
        """Each process ranks rows rank::world of the test samples; the rows are gathered on every process."""
        w, r = distributed.world_size(), distributed.rank()
        by_user = {"users": users[r::w]} if getattr(recommender, "needs_users", False) else {}
        topk, valid = recommender.rank(prompts[r::w], histories[r::w], self.cfg.ranking.k,
                                       None if exclude is None else exclude[r::w], **by_user)
        if w == 1:
            return topk, valid
        rows = distributed.gather_rows(list(zip(topk.tolist(), valid.tolist())), len(prompts))
        return (np.array([t for t, _ in rows], dtype=np.int64).reshape(len(prompts), -1),
                np.array([v for _, v in rows], dtype=bool))

    def evaluate(self, recommender) -> dict:
        out = {}
        for part, samples in self.eval_parts.items():
            start = time.perf_counter()
            exclude = self.consumed(samples)
            topk, valid = self.rank_sharded(recommender, self.eval_prompts[part], samples.histories, exclude,
                                            samples.users)
            targets = np.array([self.position[int(t)] for t in samples.targets])
            metrics = ranking_metrics(topk, targets, valid=valid)
            ranks = target_ranks(topk, targets)
            out[part] = {"metrics": metrics, "groups": grouped_metrics(topk, targets, self.groups),
                         "time_groups": metrics_by_group(ranks, time_periods(samples.timestamps), 5, "T"),
                         "target_ranks": ranks.tolist(),   # per sample, K = not in the list (paired tests)
                         "recommendation_counts": recommendation_counts(topk, self.groups, k=10),
                         "samples": len(samples), "seconds": time.perf_counter() - start,
                         "excluded_per_sample": None if exclude is None else float(np.mean([len(e) for e in exclude])),
                         "targets_excluded": None if exclude is None else   # 0: a target is never a training item
                         int(sum(t in e for t, e in zip(targets, exclude)))}
        return out


def non_default(settings) -> dict:
    """A config dataclass's fields whose values differ from the class's defaults, as plain JSON values."""
    defaults = _plain(dataclasses.asdict(type(settings)()))
    return {k: v for k, v in _plain(dataclasses.asdict(settings)).items() if defaults.get(k, _MISSING) != v}


VOLATILE = ("results_dir", "cache_dir", "method_overrides", "device")  # do not change a result
VOLATILE_SETTINGS = {"sft": ("save_steps", "checkpoint_dir", "keep_checkpoints", "prebuilt_dir")}  # nor these


def record_key_for(method: str, hyperparameters: dict, config: dict, split_fingerprint: str) -> str:
    """A record's key: everything that changes its result (method, its hyperparameters, the run config minus
    the volatile fields, the split files' fingerprint). The grid runner computes it the same way."""
    return record_key({"method": method, "hyperparameters": stable_hyperparameters(method, hyperparameters),
                       "config": stable_config(config), "split": split_fingerprint})


def stable_config(config: dict) -> dict:
    """The run config as far as it identifies a result: without the volatile fields and without the settings left
    at their defaults. A field added later with a default that keeps the old behaviour therefore leaves every
    record made before it identified as before (so committed records stay found); a field must not be added with
    a default that changes results."""
    defaults, out = _plain(RunConfig().to_dict()), {}
    for key, value in _plain(config).items():
        if key in VOLATILE:
            continue
        default = defaults.get(key, _MISSING)
        if isinstance(value, dict) and isinstance(default, dict) and key in SECTIONS:
            out[key] = {k: v for k, v in value.items()
                        if default.get(k, _MISSING) != v and k not in VOLATILE_SETTINGS.get(key, ())}
        elif default != value:
            out[key] = value
    return out


def stable_hyperparameters(method: str, hyperparameters: dict) -> dict:
    """A method's hyperparameters without those at the default of its config class (see `stable_config`)."""
    try:
        defaults = _plain(dataclasses.asdict(methods.method_class(method).Config()))
    except (KeyError, LookupError, TypeError):  # not registered (any more): keep everything
        return _plain(hyperparameters)
    return {k: v for k, v in _plain(hyperparameters).items() if defaults.get(k, _MISSING) != v}


_MISSING = object()


def _plain(value):
    """`value` as it reads back from a JSON record (tuples become lists, odd types strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


NOT_FIT_SETTINGS = {"data": ("max_eval_samples", "eval_parts")}  # the test samples: a fit never sees them


def fit_settings(config: dict) -> dict:
    """A run config (`RunConfig.to_dict()`) as far as it shapes a fit: without the ranking section, the profile's
    name (its values are in the sections) and the test samples' settings. The pipeline's fit cache and the
    planner's fit count use it alike."""
    out = {k: v for k, v in config.items() if k not in ("ranking", "profile")}
    for section, keys in NOT_FIT_SETTINGS.items():
        out[section] = {k: v for k, v in out.get(section, {}).items() if k not in keys}
    return out


def fit_identity(cell: PreparedCell, name: str, hyperparameters: dict) -> dict:
    """Everything that shapes a method's trained model (the fit cache's key, `bench.fits`): the SFT model's tag
    (split fingerprint, backbone, SFT config, seed, CPU thread count), the method and its hyperparameters, the
    run config without the ranking section, the test samples' settings and the volatile fields, and the device
    type. The ranking settings a fit reads through the context are added by `bench.fits`."""
    config = stable_config(fit_settings(cell.cfg.to_dict()))
    identity = {"sft_tag": cell.sft_tag, "split": cell.split.fingerprint, "method": name,
                "hyperparameters": stable_hyperparameters(name, hyperparameters), "config": config,
                "device": cell.device.type}
    if cell.device.type == "cpu":
        identity["cpu_threads"] = torch.get_num_threads()
    return identity


def run(cfg: RunConfig, method_names: list[str], log: Callable[[str], None] = print,
        reuse_fits: bool = True) -> list[dict]:
    """Train and score each named method on one cell; returns (and writes) one record per method. A method's
    trained model is kept in the fit cache and ranked again without training by a later run of the same fit,
    whatever its ranking settings (`bench.fits`); `reuse_fits=False` trains again."""
    chosen = [(name, methods.resolve(name, cfg.method_overrides.get(name))) for name in method_names]
    if cfg.ranking.k < 20:  # checked before any training: the records report HR/NDCG at 10 and 20
        raise ValueError(f"ranking.k={cfg.ranking.k}: the metrics go to K=20, so at least 20 items must be ranked")
    torch.manual_seed(cfg.seed)
    cell = PreparedCell(cfg, log)
    env = environment(cell.device, autocast=cell.autocast)
    if any(m.uses_sft for _, m in chosen):
        stats = cell.ensure_sft()
        log(f"sft: {stats['seconds_per_epoch']:.1f} s/epoch")
    records = []
    for name, method in chosen:
        config_dict = dataclasses.asdict(method.config)
        key = record_key_for(name, config_dict, cfg.to_dict(), cell.split.fingerprint)
        log(f"{name}: fitting ({method.paper.title}{', arXiv ' + method.paper.arxiv if method.paper.arxiv else ''})")
        ctx = cell.context(Path(cfg.cache_dir) / "methods" / key)
        torch.manual_seed(cfg.seed)
        fit = fit_with_cache(method, ctx, fit_identity(cell, name, config_dict),
                             {"ranking.batch_size": cfg.ranking.batch_size}, Path(cfg.cache_dir) / "fits",
                             lambda path: load_trained(path, cfg.backbone, cell.device), reuse_fits, log)
        recommender, fit_seconds = fit.recommender, fit.trained_seconds
        log(f"{name}: {'reused the fit trained' if fit.info['reused'] else 'fitted'} in {fit_seconds:.1f}s; "
            f"ranking {', '.join(cell.eval_parts)} with the {ctx.stats.get('protocol', cfg.ranking.protocol)} protocol")
        results = cell.evaluate(recommender)
        record = {
            "key": key, "method": name, "paper": dataclasses.asdict(method.paper), "hyperparameters": config_dict,
            "config": cfg.to_dict(), "dataset": cfg.data.dataset, "shift": cfg.data.shift,
            "seed": cfg.seed, "split_seed": cfg.data.split_seed, "split_fingerprint": cell.split.fingerprint,
            "split_info": json.loads(json.dumps(cell.split.info, default=str)),
            "protocol": ctx.stats.get("protocol", cfg.ranking.protocol), "exclude_seen": cfg.ranking.exclude_seen,
            "sft_tag": cell.sft_tag if method.uses_sft else None,
            "sft": cell.sft_stats if method.uses_sft else None, "fit_seconds": fit_seconds, "fit": fit.info,
            "seconds_per_epoch": ctx.stats.get("seconds_per_epoch"), "method_stats": ctx.stats,
            "results": results, "environment": env, "memory": peak_memory_mb(cell.device),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = record_path(cfg.results_dir, cfg.data.dataset, cfg.data.shift, name, key)
        if distributed.is_main():
            write_record(path, record)
        distributed.barrier()
        headline = results[next(iter(results))]["metrics"]
        log(f"{name}: HR@10 {headline['HR@10']:.4f} NDCG@10 {headline['NDCG@10']:.4f} -> {path}")
        records.append(record)
        del recommender
    return records


