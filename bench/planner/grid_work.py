"""The work of a grid, counted without training anything: for every cell group of the chosen tables, its data sizes
(training samples, evaluation prompts, tokens per prompt and per title, catalogue size) and, for every cell, the
method's declared `Work` (`Method.workload`) and the ranking that scores it (`Method.ranking_key`).

Sizes come from the real split and samples of each (dataset, shift, split seed), built once per planner run; tokens
from the backbone's tokenizer on a seeded sample of 1,000 training prompts and all catalogue titles (an estimate of
4 characters per token, said so in the output, when the tokenizer is not on this machine). The groups of one SFT
family (`Group.sft_family`: they differ only in method-level settings) share one SFT model (the pipeline's cache),
counted once; work a group's methods share (`Work.shared`,
the reference log-probs of one pair set) is counted once per group.

A fit is counted once per *fit identity* (`fit_identity`: the cell's config without its ranking settings and the
test samples' settings, and the method's settings, as `bench.pipeline.fit_identity`), as the pipeline's fit cache
(`bench.fits`) trains it once: a cell that differs from an earlier one only in `ranking.*` (Tables 1g and 5g,
Figure 3's default cell) only ranks (`CellWork.reused`). Fits the cache does not keep (`Method.fit_cacheable`
False: their own recommenders, or models the cache already holds) are counted per cell. `reuse_fits=False` counts
every cell's fit (how records made before the fit cache were run).

A paper dataset that is not prepared (`splits.prepared.NotPreparedError`) is priced from a small stand-in built on
the fly in a temporary folder (`bench.perf.paper_standins`, the release's items and popularity law, 1/N of its
users and ratings, about `STANDIN_RATINGS` ratings) and extrapolated to the release's totals: training samples,
training interactions and evaluation prompts x N (then the profile's caps), tokens per prompt and per title as
measured on the stand-in, the catalogue as the stand-in's kept items x the ratio of the distinct items expected
from N x its ratings to those expected from its ratings under the same popularity law
(`paper_standins.distinct_items`), its tokens at the stand-in's mean per title. Nothing is written to the data
folder; the plan says so in one line per dataset (`DataSize.standin`).
"""
from __future__ import annotations

import dataclasses
import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import methods
from bench.backbone import BackboneError, load_tokenizer
from bench.config import BackboneConfig
from bench.leaderboard.grids import expand
from bench.leaderboard.records import cell_config, identity, profile_config
from bench.leaderboard.runner import Group, group_cells
from bench.prompts import encode_completion, encode_prompt, noun_for, render_prompt, uses_chat_template
from bench.perf import paper_standins
from bench.pipeline import fit_settings
from methods.declared_work import CellSize, Work, sft_work
from splits import build_split, load_dataset
from splits.prepared import NotPreparedError
from splits.samples import build_samples

TOKEN_SAMPLE = 1000
STANDIN_RATINGS = 250_000   # ratings of the small stand-in an unprepared paper dataset is priced on (seconds)


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
    history_len: int = 10           # history items per sample (SASRec's sequence length)
    standin: str = ""               # how the sizes were extrapolated from a stand-in ("": the prepared data's)


@dataclass
class CellWork:
    method: str
    work: list[Work]
    ranking: str                    # Method.ranking_key
    tables: tuple[str, ...]
    fit: str = ""                   # fit_identity of a fit the cache keeps ("": trained per cell)
    reused: bool = False            # an earlier cell of the plan has the same fit: this one only ranks
    fit_tables: tuple[str, ...] = ()  # the tables of every cell with this fit (each needs it)


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
        method; a reused fit's work: none); the family's SFT model is `sft`."""
        out, seen = [], set()
        for cell in self.cells:
            for work in ([] if cell.reused else cell.work):
                if work.shared and work.shared in seen:
                    continue
                seen.add(work.shared)
                out.append((work, cell.method))
        return out


def grid_work(profile: str, tables: list[str], seeds: list[int], extra_sets: list[str], cache_dir=None,
              log=print, reuse_fits: bool = True) -> list[GroupWork]:
    """The work of every cell group the tables need (as `bench leaderboard` would run them); with `reuse_fits`, a
    fit identity's work is charged to its first cell only."""
    base = profile_config(profile)
    cells = expand(tables, profile, seeds, base.data.dataset, base.backbone.name)
    in_tables = {}
    for name in tables:
        for cell in expand([name], profile, seeds, base.data.dataset, base.backbone.name):
            in_tables.setdefault(cell, []).append(name)
    out, families, fits = [], {}, set()
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
            fit = fit_identity(cell.method, method, cell_config(profile, cell, extra_sets, names))
            cached = reuse_fits and method.fit_cacheable
            work.cells.append(CellWork(cell.method, method.workload(size.size), method.ranking_key(cfg.ranking),
                                       tuple(in_tables[cell]), fit if cached else "", cached and fit in fits))
            if cached:
                fits.add(fit)
        out.append(work)
    fit_tables: dict[str, set] = {}
    for c in (c for g in out for c in g.cells if c.fit):
        fit_tables.setdefault(c.fit, set()).update(c.tables)
    for g in out:
        for c in g.cells:   # a kept fit: every table that ranks it needs it; a fit per cell: the cell's tables
            c.fit_tables = tuple(sorted(fit_tables[c.fit])) if c.fit else c.tables
    return out


def fits_per_cell(groups: list[GroupWork]) -> list[GroupWork]:
    """The same plan with every cell training its own fit (the counting of records made before the fit cache)."""
    return [dataclasses.replace(g, cells=[dataclasses.replace(c, reused=False, fit_tables=c.tables)
                                          for c in g.cells]) for g in groups]


def fit_identity(name: str, method, cfg) -> str:
    """What shaped a cell's fitted model: its run config without the ranking settings and the test samples'
    settings (`bench.pipeline.fit_settings`), i.e. split, SFT model, pairs, seed, ..., and the method's
    settings, hashed as a record's identity is (`bench.leaderboard.records.identity`)."""
    return identity(name, dataclasses.asdict(method.config), fit_settings(cfg.to_dict()))


def group_size(cfg, log=print) -> GroupSize:
    data = cfg.data
    sizes = _data_size(data.dataset, data.raw_path, data.shift, data.split_seed, data.history_len,
                       data.max_train_samples, data.max_eval_samples, tuple(data.eval_parts), log)
    tokens = _token_size(sizes, _frozen(cfg.backbone), cfg.cache_dir, log)
    size = CellSize(sizes.train_samples, sizes.train_interactions, cfg.sft, cfg.preference)
    return GroupSize(size, sizes.eval_prompts, sizes.items, *tokens, cfg.backbone.name, data.history_len,
                     sizes.standin)


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
    catalogue: tuple[str, ...]              # titles of the catalogue (a stand-in's: a sample of it)
    items: int                              # catalogue size (a stand-in's: extrapolated)
    standin: str = ""                       # the one-line notice of a stand-in's extrapolation


@dataclass(frozen=True, eq=False)
class Standin:
    """A small stand-in of an unprepared paper dataset: the filtered dataset and its users' fraction 1/scale."""
    dataset: object                         # splits.Dataset
    scale: int                              # N: 1/N of the release's users and ratings
    notice: str


@functools.lru_cache(maxsize=None)
def standin(name: str, log=print) -> Standin:
    """The stand-in of `name` at 1/N of its release's users and ratings (N = its ratings / `STANDIN_RATINGS`, at
    least 1) and all its items, written to a temporary folder, read by the real loader, and deleted."""
    shape = paper_standins.SHAPES[name]
    scale = max(1, round(shape.ratings / STANDIN_RATINGS))
    with tempfile.TemporaryDirectory(prefix="plan-standin-") as tmp:
        folder = paper_standins.write_standins(Path(tmp), 1 / scale, names=(name,), full_catalogue=True)[name]
        dataset = load_dataset(name, raw_path=str(folder))
    notice = (f"{name}: not prepared; priced from stand-ins at 1/{scale} scale, extrapolated to the release's "
              f"totals ({shape.users:,} users, {shape.items:,} items, {shape.ratings:,} ratings)")
    log(f"plan: {notice}")
    return Standin(dataset, scale, notice)


def _capped(count: int, cap: int | None) -> int:
    return count if cap is None else min(count, cap)


@functools.lru_cache(maxsize=None)
def _data_size(dataset, raw_path, shift, split_seed, history_len, max_train, max_eval, eval_parts, log) -> DataSize:
    """Built once per planner run for each split (the groups of one split differ in method or backbone settings);
    an unprepared paper dataset from its stand-in, counts extrapolated (see the module's docstring)."""
    try:
        interactions, small = load_dataset(dataset, **({"raw_path": raw_path} if raw_path else {})), None
    except NotPreparedError:
        if raw_path or dataset not in paper_standins.SHAPES:
            raise
        small = standin(dataset, log)
        interactions = small.dataset
    n = small.scale if small else 1
    split = build_split(interactions, shift, split_seed)
    train = build_samples(split, "train", history_len, None if small else max_train, split_seed)
    eval_prompts = 0
    for part in eval_parts:
        name = "iid_test" if part == "ood_test" and len(split["ood_test"]) == 0 else part
        eval_prompts += _capped(len(build_samples(split, name, history_len, None if small else max_eval,
                                                  split_seed)) * n, max_eval)
    titles = interactions.titles
    items = len(interactions.items)
    if small:
        rows = len(interactions.interactions)
        items = round(items * paper_standins.distinct_items(dataset, rows * n)
                      / paper_standins.distinct_items(dataset, rows))
    rows = np.random.default_rng(0).permutation(len(train))[:TOKEN_SAMPLE]
    out = DataSize(dataset, _capped(len(train) * n, max_train), len(split["train"]) * n, eval_prompts,
                   tuple(tuple(titles[int(i)] for i in train.histories[r]) for r in rows),
                   tuple(titles[int(train.targets[r])] for r in rows),
                   tuple(titles[int(i)] for i in interactions.items), items, small.notice if small else "")
    log(f"plan: {dataset}/{shift} (split seed {split_seed}): {out.train_samples} training samples, {eval_prompts} "
        f"evaluation prompts, {items} items{' (extrapolated from the stand-in)' if small else ''}")
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
        cat = sum(len(encode_completion(tok, t, chat)) for t in catalogue) * sizes.items / len(catalogue)
        estimated = False
    except (BackboneError, OSError, ValueError) as err:
        log(f"plan: no tokenizer for {backbone_cfg.name} here ({str(err).splitlines()[0]}); tokens estimated as "
            f"characters / 4")
        prompt = float(np.mean([len(render_prompt(list(h), noun)) for h in sizes.histories])) / 4
        title = float(np.mean([len(t) + 1 for t in targets])) / 4 + 1
        cat = (sum(len(t) + 1 for t in catalogue) / 4 + len(catalogue)) * sizes.items / len(catalogue)
        estimated = True
    log(f"plan: {sizes.dataset} with {backbone_cfg.name}: {prompt:.0f} tokens per prompt, {title:.1f} per title")
    return prompt, title, round(cat), estimated
