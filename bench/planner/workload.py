"""The work of a grid, counted without training anything: for every cell group of the chosen tables, its data sizes
(training samples, evaluation prompts, tokens per prompt and per title, catalogue size) and, for every cell, the
method's declared `Work` (`Method.workload`) and the ranking that scores it (`Method.ranking_key`).

Sizes come from the real split and samples of each (dataset, shift, split seed), built once per planner run; tokens
from the backbone's tokenizer on a seeded sample of 1,000 training prompts and all catalogue titles (an estimate of
4 characters per token, said so in the output, when the tokenizer is not on this machine). The groups of one SFT
family (`Group.sft_family`: they differ only in method-level settings) share one SFT model (the pipeline's cache),
counted once; work a group's methods share (`Work.shared`,
the reference log-probs of one pair set) is counted once per group.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import methods
from bench.backbone import BackboneError, load_tokenizer
from bench.config import BackboneConfig
from bench.leaderboard.grids import expand
from bench.leaderboard.records import cell_config, profile_config
from bench.leaderboard.runner import Group, group_cells
from bench.prompts import encode_completion, encode_prompt, noun_for, render_prompt, uses_chat_template
from methods.workload import CellSize, Work, sft_work
from splits import build_split, load_dataset
from splits.samples import build_samples

TOKEN_SAMPLE = 1000


@dataclass
class GroupSize:
    """What one cell group's work is priced on."""
    size: CellSize
    eval_prompts: int               # prompts ranked per method (all evaluation parts together)
    items: int                      # catalogue size
    prompt_tokens: float            # mean prompt length in tokens
    title_tokens: float             # mean completion length (title + EOS) over the training targets
    catalogue_tokens: int           # completion tokens of the whole catalogue
    estimated_tokens: bool          # tokens estimated from characters (no tokenizer here)
    backbone: str


@dataclass
class CellWork:
    method: str
    work: list[Work]
    ranking: str                    # Method.ranking_key
    tables: tuple[str, ...]


@dataclass
class GroupWork:
    group: Group
    size: GroupSize
    sft: Work | None                # the SFT model of the group's SFT family, charged to its first group that
                                    # uses it (None: another group's, or no method of the group starts from it)
    sft_tables: tuple[str, ...] = ()  # the tables of every group of the family (each needs that SFT model)
    cells: list[CellWork] = field(default_factory=list)

    def units(self) -> list[tuple[Work, str]]:
        """Every Work of the group's methods once, with the method it is charged to (shared work: its first
        method); the family's SFT model is `sft`."""
        out, seen = [], set()
        for cell in self.cells:
            for work in cell.work:
                if work.shared and work.shared in seen:
                    continue
                seen.add(work.shared)
                out.append((work, cell.method))
        return out


def grid_work(profile: str, tables: list[str], seeds: list[int], extra_sets: list[str], cache_dir=None,
              log=print) -> list[GroupWork]:
    """The work of every cell group the tables need (as `bench leaderboard` would run them)."""
    base = profile_config(profile)
    cells = expand(tables, profile, seeds, base.data.dataset, base.backbone.name)
    in_tables = {}
    for name in tables:
        for cell in expand([name], profile, seeds, base.data.dataset, base.backbone.name):
            in_tables.setdefault(cell, []).append(name)
    out, families = [], {}
    for group in group_cells(cells):
        names = [c.method for c in group.cells]
        cfg = cell_config(profile, group.cells[0], extra_sets, names)
        if cache_dir is not None:
            cfg.cache_dir = str(cache_dir)
        size = group_size(cfg, log)
        resolved = [methods.resolve(c.method, cfg.method_overrides.get(c.method)) for c in group.cells]
        work = GroupWork(group, size, None)
        if any(m.uses_sft for m in resolved):
            first = families.setdefault(group.sft_family, work)
            if first is work:
                work.sft = sft_work(size.size.train_samples, cfg.sft.epochs, cfg.sft)
            first.sft_tables = tuple(sorted({*first.sft_tables, *(t for c in group.cells for t in in_tables[c])}))
        for cell, method in zip(group.cells, resolved):
            work.cells.append(CellWork(cell.method, method.workload(size.size), method.ranking_key(cfg.ranking),
                                       tuple(in_tables[cell])))
        out.append(work)
    return out


def group_size(cfg, log=print) -> GroupSize:
    data = cfg.data
    sizes = _data_size(data.dataset, data.raw_path, data.shift, data.split_seed, data.history_len,
                       data.max_train_samples, data.max_eval_samples, tuple(data.eval_parts), log)
    tokens = _token_size(sizes, _frozen(cfg.backbone), cfg.cache_dir, log)
    size = CellSize(sizes.train_samples, sizes.train_interactions, cfg.sft, cfg.preference)
    return GroupSize(size, sizes.eval_prompts, len(sizes.catalogue), *tokens, cfg.backbone.name)


def _frozen(obj):
    return tuple(sorted(dataclasses.asdict(obj).items()))


@dataclass(frozen=True, eq=False)
class DataSize:
    """What the split and samples of one (dataset, shift, split seed, sampling) give, whatever the backbone."""
    dataset: str
    train_samples: int
    train_interactions: int
    eval_prompts: int
    histories: tuple[tuple[str, ...], ...]  # titles of the token sample's histories
    targets: tuple[str, ...]
    catalogue: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def _data_size(dataset, raw_path, shift, split_seed, history_len, max_train, max_eval, eval_parts, log) -> DataSize:
    """Built once per planner run for each split (the groups of one split differ in method or backbone settings)."""
    interactions = load_dataset(dataset, **({"raw_path": raw_path} if raw_path else {}))
    split = build_split(interactions, shift, split_seed)
    train = build_samples(split, "train", history_len, max_train, split_seed)
    eval_prompts = 0
    for part in eval_parts:
        name = "iid_test" if part == "ood_test" and len(split["ood_test"]) == 0 else part
        eval_prompts += len(build_samples(split, name, history_len, max_eval, split_seed))
    titles = interactions.titles
    rows = np.random.default_rng(0).permutation(len(train))[:TOKEN_SAMPLE]
    out = DataSize(dataset, len(train), len(split["train"]), eval_prompts,
                   tuple(tuple(titles[int(i)] for i in train.histories[r]) for r in rows),
                   tuple(titles[int(train.targets[r])] for r in rows),
                   tuple(titles[int(i)] for i in interactions.items))
    log(f"plan: {dataset}/{shift} (split seed {split_seed}): {len(train)} training samples, {eval_prompts} evaluation "
        f"prompts, {len(out.catalogue)} items")
    return out


@functools.lru_cache(maxsize=None)
def _token_size(sizes: DataSize, backbone, cache_dir, log) -> tuple[float, float, int, bool]:
    """Mean prompt tokens, mean completion tokens (title + EOS) of the training targets, the catalogue's completion
    tokens, and whether they are estimated from characters (no tokenizer here)."""
    backbone_cfg = BackboneConfig(**dict(backbone))
    noun = noun_for(sizes.dataset)
    catalogue, targets = list(sizes.catalogue), sizes.targets
    try:
        tok = load_tokenizer(backbone_cfg, catalogue + [render_prompt(["x"], noun)], Path(cache_dir))
        chat = uses_chat_template(tok, backbone_cfg.chat_template)
        prompt = float(np.mean([len(encode_prompt(tok, render_prompt(list(h), noun, tok if chat else None), chat))
                                for h in sizes.histories]))
        title = float(np.mean([len(encode_completion(tok, t, chat)) for t in targets]))
        cat = sum(len(encode_completion(tok, t, chat)) for t in catalogue)
        estimated = False
    except (BackboneError, OSError, ValueError) as err:
        log(f"plan: no tokenizer for {backbone_cfg.name} here ({str(err).splitlines()[0]}); tokens estimated as "
            f"characters / 4")
        prompt = float(np.mean([len(render_prompt(list(h), noun)) for h in sizes.histories])) / 4
        title = float(np.mean([len(t) + 1 for t in targets])) / 4 + 1
        cat = int(sum(len(t) + 1 for t in catalogue) / 4) + len(catalogue)
        estimated = True
    log(f"plan: {sizes.dataset} with {backbone_cfg.name}: {prompt:.0f} tokens per prompt, {title:.1f} per title")
    return prompt, title, cat, estimated
