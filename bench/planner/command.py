"""`python -m bench plan`: what a grid costs before it runs, per table and per stage.

    python -m bench plan --profile tiny [--tables all] [--seeds 0,1,2] [--set KEY=VALUE]
                         [--calibrate | --calibration FILE | --tflops T [--mfu U]] [--results DIR]

Counts come from the grid's cells and the data (`bench.planner.grid_work`: a fit counted once per fit identity; an
unprepared paper dataset from a stand-in, said so in the header); seconds from a calibration measured here
with `--calibrate` (saved under the cache folder, reused by later plans on the same device), a calibration file, the
profile's committed one (`leaderboards/<profile>/calibration.json`, for its device), or FLOPs at `--mfu` x the
peak `--tflops` (`bench.planner.prices.FlopsPrices`). The header states the total in GPU-hours (GPU calibration or
FLOPs) or runner-hours (CPU calibration).
With `--results`, the compute measured in the records of that folder is printed beside the prediction: the SFT
models (their training time), the methods' fits and the rankings, per table and for the whole grid.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from leaderboards import committed_calibration

STAGES = ("setup", "sft model", "sft steps", "reference", "preference", "generation", "sasrec", "ranking")
FIT_ENTRY = "fit"  # a record made with the pipeline's fit cache has this entry (`bench.fits`: key, reused, ...);
                  # records without it were made when every cell trained its own fit
BUCKETS = {"sft model": "sft", "sft steps": "fit", "reference": "fit", "preference": "fit", "generation": "fit",
           "sasrec": "fit", "ranking": "ranking"}


def add_parser(sub) -> None:
    from bench.leaderboard.command import _common

    p = sub.add_parser("plan", help="predict a grid's compute per table and stage (samples, tokens, hours)")
    _common(p)
    p.add_argument("--cache", help="cache folder (tokenizers, calibrations; default: the profile's cache_dir)")
    p.add_argument("--calibrate", action="store_true",
                   help="measure the per-unit costs on this device first (a few minutes on tiny) and save them")
    p.add_argument("--calibration", help="a calibration file to price with (or, with --calibrate, to write)")
    p.add_argument("--tflops", type=float,
                   help="price by FLOPs instead (no calibration): the GPU's peak dense bf16 TFLOP/s (H100/H200 989, "
                        "A100/A800 312), run at --mfu of it")
    p.add_argument("--mfu", type=float,
                   help="with --tflops: the utilisation, sustained / peak (default 0.332: the suite's H200 DPO step, "
                        "see bench.planner.prices.default_utilisation)")
    p.add_argument("--params", type=float, help="with --tflops: the backbone's parameters (default: the published "
                                                "size of the paper's backbones; required for any other)")


def plan_command(args, log) -> int:
    from bench.leaderboard.command import _setup
    from bench.leaderboard.records import cell_config, profile_config
    from bench.planner.grid_work import fits_per_cell, grid_work

    names, seeds = _setup(args)
    cfg = profile_config(args.profile)
    cache = Path(args.cache or cfg.cache_dir)
    groups = grid_work(args.profile, names, seeds, args.set, cache, log)
    prices = _prices(args, cache, groups, cell_config(args.profile, groups[0].group.cells[0], args.set,
                                                      [c.method for c in groups[0].group.cells]), log)
    predicted = predict(groups, prices)
    measured = measure(args.profile, groups, args.results, args.set) if Path(args.results).is_dir() else None
    if measured and not measured["cells"]["found"]:
        measured = None
    compared = None
    if measured and not measured["cells"]["fit_cache"]:   # records made before the fit cache: a fit per cell
        compared = predict(fits_per_cell(groups), prices)
    print(report(args.profile, names, seeds, groups, prices, predicted, measured, compared))
    return 0


def _prices(args, cache: Path, groups, first_cfg, log):
    from bench.planner.prices import (H200_PEAK_TFLOPS, CalibratedPrices, Calibration, CalibrationError,
                                      FlopsPrices)
    from bench.results import device_name

    def flops_prices(peak_tflops: float) -> FlopsPrices:
        prices = FlopsPrices(args.params or _parameters(first_cfg), peak_tflops, first_cfg.backbone.lora,
                             first_cfg.backbone.gradient_checkpointing)
        if args.mfu:
            prices.utilisation = args.mfu
        return prices

    if args.tflops:
        return flops_prices(args.tflops)
    first_cfg.cache_dir = str(cache)
    from bench.pipeline import pick_device
    device = device_name(pick_device(first_cfg.device))
    default = cache / "calibration" / f"{args.profile}-{_slug(device)}.json"
    if args.calibrate:
        from bench.planner.calibrate import calibrate
        keys = sorted({c.ranking for g in groups for c in g.cells})
        widths = [w.width for g in groups for w, _ in g.units() if w.kind == "preference_step"]
        cal = calibrate(first_cfg, keys, max(widths, default=2) - 1, log)
        for path in {default, Path(args.calibration) if args.calibration else default}:
            cal.save(path)
            log(f"calibration saved to {path}")
        return CalibratedPrices(cal)
    committed = committed_calibration(args.profile)   # shipped with the package: found from any folder
    for path in ([Path(args.calibration)] if args.calibration else [default] + ([committed] if committed else [])):
        if path.exists():
            cal = Calibration.load(path)
            if cal.device != device:
                log(f"plan: {path} was calibrated on {cal.device}, not on this {device}: its hours are that device's")
            return CalibratedPrices(cal)
    if first_cfg.backbone.dtype == "bfloat16" and first_cfg.backbone.name in KNOWN_PARAMETERS:
        # a GPU profile planned before any GPU calibration (a fresh clone): FLOPs on the suite's reference GPU
        prices = flops_prices(H200_PEAK_TFLOPS)
        log(f"plan: no calibration for the {args.profile} profile on {device}: priced by FLOPs on one H100/H200 "
            f"({H200_PEAK_TFLOPS:g} TFLOP/s bf16 dense peak at {prices.utilisation:.3f} utilisation; --tflops/--mfu "
            f"for another GPU, --calibrate on the GPU to measure)")
        return prices
    raise CalibrationError(f"no calibration for the {args.profile} profile on {device} (looked for {default}); "
                           f"add --calibrate to measure one here, --calibration FILE, or --tflops T to price by FLOPs")



def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


# published parameter counts of the paper's backbones (their configs are not on a machine without the weights)
KNOWN_PARAMETERS = {"meta-llama/Llama-3.1-8B": 8.03e9, "Qwen/Qwen2.5-7B-Instruct": 7.62e9, "Qwen/Qwen3-8B": 8.19e9}


def _parameters(cfg) -> float:
    from bench.planner.prices import CalibrationError

    if cfg.backbone.name in KNOWN_PARAMETERS:
        return KNOWN_PARAMETERS[cfg.backbone.name]
    raise CalibrationError(f"--tflops: the parameters of {cfg.backbone.name} are not known here; pass --params N")


def family_id(group) -> str:
    """The SFT family of a group as a string (its SFT model's row in a plan)."""
    return "sft:" + "/".join(map(str, group.sft_family))


def predict(groups, prices) -> list[dict]:
    """One row per priced piece: group id, method ("" for the group's own), stage, tables, units, tokens, seconds."""
    rows = []
    for g in groups:
        size = g.size
        all_tables = tuple(sorted({t for c in g.cells for t in c.tables}))
        rows.append(dict(group=g.group.id, method="", stage="setup", tables=all_tables, units=0, tokens=0.0,
                         seconds=prices.setup(size)))
        tables = {c.method: c.fit_tables or c.tables for c in g.cells}   # a fit: every table that needs it
        for work, method in g.units():
            stage = "sft steps" if work.kind == "sft_step" else work.stage
            rows.append(dict(group=g.group.id, method=method, stage=stage, tables=tables[method],
                             units=work.sequences or work.count, tokens=_tokens(work, size),
                             seconds=prices.seconds(work, size)))
        for cell in g.cells:
            rows.append(dict(group=g.group.id, method=cell.method, stage="ranking", tables=cell.tables,
                             units=size.eval_prompts, tokens=size.eval_prompts * size.prompt_tokens,
                             seconds=prices.rank(cell.ranking, size.eval_prompts, size), ranking=cell.ranking))
        if g.sft is not None:
            rows.append(dict(group=family_id(g.group), method="", stage="sft model", tables=g.sft_tables,
                             units=g.sft.sequences, tokens=_tokens(g.sft, size), seconds=prices.seconds(g.sft, size)))
    return rows


def _tokens(work, size) -> float:
    """LLM tokens of a piece of work: its sequences' prompt + title tokens, or its prompts' (decoding); SASRec none."""
    if work.kind == "sasrec_epoch":
        return 0.0
    if work.sequences:
        return work.sequences * (size.prompt_tokens + size.title_tokens)
    return work.count * size.prompt_tokens


def measure(profile: str, groups, results, extra_sets) -> dict:
    """Seconds measured in the records of the grid's cells (`publish.compute_seconds`: SFT models once per tag, fits
    and rankings once per record), per table and for the whole grid, and how many cells have a record."""
    from bench.leaderboard.publish import compute_seconds
    from bench.leaderboard.records import RecordIndex, cell_identity

    index = RecordIndex.load(results)
    found: dict[str, list] = defaultdict(list)
    cells, sft_groups, expected, fit_cache = set(), set(), 0, False
    for g in groups:
        for cell_work, cell in zip(g.cells, g.group.cells):
            expected += 1
            record = index.get(cell_identity(profile, cell, extra_sets))
            if record is None:
                continue
            cells.add((g.group.id, cell.method))
            fit_cache = fit_cache or isinstance(record.get(FIT_ENTRY), dict)
            if record.get("sft_tag"):
                sft_groups.add(family_id(g.group))
            for table in (*cell_work.tables, "grid"):
                found[table].append(record)
    out = {table: compute_seconds(records) for table, records in found.items()}
    out["cells"] = {"found": len(found["grid"]), "expected": expected, "keys": cells, "sft_groups": sft_groups,
                    "fit_cache": fit_cache}
    return out


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:,.1f}" if hours >= 100 else f"{hours:.3f}"


def report(profile, names, seeds, groups, prices, rows, measured, compared=None) -> str:
    """The plan as text; `compared`: the rows to hold against the records (default `rows`)."""
    n_cells = sum(len(g.cells) for g in groups)
    per_thread = ""
    cal = getattr(prices, "cal", None)
    unit = "GPU-hours" if cal is None or cal.device_type == "cuda" else "hours"
    total = sum(r["seconds"] for r in rows)
    cells = [c for g in groups for c in g.cells]
    fits = len({c.fit for c in cells if c.fit}) + sum(not c.fit for c in cells)
    reused = sum(c.reused for c in cells)
    lines = [f"plan {profile}: {', '.join(names)}; seeds {seeds}; {n_cells} cells in {len(groups)} groups, "
             f"{fits} fits ({reused} cells reuse another cell's fit and only rank)",
             f"prices: {prices.source}"]
    if cal is not None and cal.device_type == "cpu":
        per_thread = f" (x {cal.threads} threads = CPU-hours)"
        lines.append(f"total: {_hours(total)} hours of one runner at {cal.threads} threads")
    else:
        lines.append(f"total: {_hours(total)} GPU-hours (one GPU; W GPUs in data parallel: about 1/W of it in wall "
                     f"time)")
    for notice in sorted({g.size.standin for g in groups if g.size.standin}):
        lines.append(notice)
    if any(g.size.estimated_tokens for g in groups):
        lines.append("tokens: estimated as characters / 4 (the backbone's tokenizer is not on this machine)")
    lines += ["", f"{'stage':<12} {'sequences/prompts':>18} {'tokens':>14} {unit:>10}{per_thread}"]
    by_stage = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in rows:
        acc = by_stage[r["stage"]]
        acc[0] += r["units"]
        acc[1] += r["tokens"]
        acc[2] += r["seconds"]
    for stage in STAGES:
        if stage in by_stage:
            u, t, s = by_stage[stage]
            units = f"{len(groups)} groups" if stage == "setup" else f"{u:,.0f}"
            lines.append(f"{stage:<12} {units:>18} {t:>14,.0f} {_hours(s):>10}")
    lines.append(f"{'total':<12} {'':>18} {sum(r['tokens'] for r in rows):>14,.0f} {_hours(total):>10} {unit}")

    by_rank = defaultdict(float)
    for r in rows:
        if r["stage"] == "ranking":
            by_rank[r["ranking"]] += r["seconds"]
    lines += ["", "ranking by protocol: " + ", ".join(f"{k} {_hours(v)} h" for k, v in sorted(by_rank.items()))]

    lines += ["", "per table (each alone: its cells, their groups' SFT models and setup once)",
              f"{'table':<8} {'cells':>6} {unit:>10}"]
    for name in names:
        mine = [r for r in rows if name in r["tables"]]
        if mine:
            cells = len({(r["group"], r["method"]) for r in mine if r["stage"] == "ranking"})
            lines.append(f"{name:<8} {cells:>6} {_hours(sum(r['seconds'] for r in mine)):>10}")
    if measured:
        lines.append("")
        if compared is not None:
            lines.append(f"the records have no '{FIT_ENTRY}' entry (made before the fit cache: every cell trained "
                         f"its own fit); compared with a fit per cell")
        lines += comparison(names, rows if compared is None else compared, measured)
    return "\n".join(lines)


def comparison(names, rows, measured) -> list[str]:
    """Predicted vs measured hours over the cells that have a record (setup is not in the records: left out)."""
    cells = measured["cells"]
    have = [r for r in rows if r["stage"] != "setup" and (
        (r["group"], r["method"]) in cells["keys"] or (r["stage"] == "sft model" and r["group"] in cells["sft_groups"]))]
    lines = [f"measured in the records: {cells['found']} of {cells['expected']} cells; predicted for the same cells "
             f"(without setup, which records do not time)",
             f"{'':<10} {'predicted h':>12} {'measured h':>11} {'ratio':>6}"]

    def line(label, pred, got):
        return f"{label:<10} {_hours(pred):>12} {_hours(got):>11} {pred / got if got else float('nan'):>6.2f}"

    for bucket in ("sft", "fit", "ranking"):
        lines.append(line(bucket, sum(r["seconds"] for r in have if BUCKETS[r["stage"]] == bucket),
                          measured["grid"][bucket]))
    for name in names:
        if name in measured:
            lines.append(line(name, sum(r["seconds"] for r in have if name in r["tables"]), measured[name]["total"]))
    lines.append(line("grid", sum(r["seconds"] for r in have), measured["grid"]["total"]))
    return lines
