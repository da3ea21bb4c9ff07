"""Write a profile's leaderboard: `leaderboards/<profile>/tableN.{md,tex,csv}`, `tableN_long.csv`, figures as PNG,
and a README.md with the provenance of the records used (commits, package versions, devices, protocols, split
fingerprints, training time) and every table's Markdown in one page.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from bench.leaderboard import datasets_table, figures, render
from bench.leaderboard.grids import TABLES
from bench.leaderboard.records import RecordIndex, profile_config
from bench.leaderboard.tables import Table, build_table


def build_tables(names: list[str], profile: str, index: RecordIndex, seeds: list[int], extra_sets=()) -> list[Table]:
    cfg = profile_config(profile)
    return [build_table(n, profile, index, seeds, cfg.data.dataset, cfg.backbone.name, extra_sets)
            for n in names if TABLES[n].kind != "stats"]


def publish(names: list[str], profile: str, results_dir: str | Path, out_dir: str | Path, seeds: list[int],
            extra_sets=(), log: Callable[[str], None] = print) -> list[Table]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = RecordIndex.load(results_dir)
    tables = build_tables(names, profile, index, seeds, extra_sets)
    pages = []
    if "table2" in names:
        rows = datasets_table.dataset_rows(profile, profile_config(profile).data.dataset)
        _write(out, "table2", datasets_table.markdown(rows), datasets_table.latex(rows), datasets_table.to_csv(rows))
        pages.append(datasets_table.markdown(rows))
    for table in tables:
        name = table.spec.name
        if table.spec.kind == "figure":
            log(figures.figure(table, out))
            (out / f"{name}_long.csv").write_text(render.long_csv(table))
            continue
        _write(out, name, render.markdown(table), render.latex(table), render.wide_csv(table))
        (out / f"{name}_long.csv").write_text(render.long_csv(table))
        pages.append(render.markdown(table))
        log(f"{name}: {table.found} of {len(table.values)} values from records -> {out / name}.{{md,tex,csv}}")
    reading = out / "READING.md"
    (out / "README.md").write_text(readme(profile, results_dir, tables, pages,
                                          reading.read_text() if reading.exists() else None))
    return tables


def _write(out: Path, name: str, md: str, tex: str, csv_text: str) -> None:
    (out / f"{name}.md").write_text(md)
    (out / f"{name}.tex").write_text(tex)
    (out / f"{name}.csv").write_text(csv_text)


def provenance(tables: list[Table]) -> dict:
    records = {r["key"]: r for t in tables for r in t.records}.values()
    env = [r.get("environment", {}) for r in records]
    return {
        "records": len(records),
        "git_commits": sorted({str(e.get("git_commit")) for e in env}),
        "devices": sorted({str(e.get("device")) for e in env}),
        "cpu_models": sorted({str(e.get("cpu_model")) for e in env if e.get("cpu_model")}),
        "torch_threads": sorted({int(e["torch_threads"]) for e in env if e.get("torch_threads")}),
        "python": sorted({str(e.get("python")) for e in env}),
        "package_versions": sorted({json.dumps(e.get("versions", {}), sort_keys=True) for e in env}),
        "protocols": sorted({str(r.get("protocol")) for r in records}),
        "split_fingerprints": sorted({f"{r['dataset']}/{r['shift']} split seed {r.get('split_seed')}: "
                                      f"{str(r.get('split_fingerprint'))[:12]}" for r in records}),
        "fit_seconds_total": round(fit_seconds(records), 1),
        "created": [min((str(r.get("created")) for r in records), default=None),
                    max((str(r.get("created")) for r in records), default=None)],
    }


def fit_seconds(records) -> float:
    """The training seconds of the fits behind `records`, each trained model counted once: records that rank one
    cached fit under several protocols (`record["fit"]["key"]`, see `bench.fits`) carry its training time each."""
    fits = {(r.get("fit") or {}).get("key") or ("record", r["key"]): float(r.get("fit_seconds") or 0)
            for r in records}
    return sum(fits.values())


def compute_seconds(records) -> dict:
    """Single-process compute in a set of records: method fits, rankings, and the SFT models they share (each
    SFT model counted once, by its tag, and each trained model once, by its fit key)."""
    records = list({r["key"]: r for r in records}.values())
    sft = {r["sft_tag"]: float((r.get("sft") or {}).get("train_seconds") or 0) for r in records if r.get("sft_tag")}
    fit = fit_seconds(records)
    ranking = sum(float(part.get("seconds") or 0) for r in records for part in r.get("results", {}).values())
    return {"records": len(records), "sft": round(sum(sft.values())), "fit": round(fit), "ranking": round(ranking),
            "total": round(sum(sft.values()) + fit + ranking)}


def compute_lines(tables: list[Table]) -> list[str]:
    """Compute per table and in all (a record shared by two tables counts in both rows, once in the total)."""
    lines = ["## Compute", "",
             "Seconds of single-process compute in the records each table uses (SFT models counted once per table; "
             "the grid runs `--shard i/n` processes side by side, so wall time is about total / processes):", "",
             "| table | records | SFT s | fit s | ranking s | total s |", "|---|---:|---:|---:|---:|---:|"]
    for t in tables + [None]:
        c = compute_seconds(t.records if t else [r for t in tables for r in t.records])
        lines.append(f"| {t.spec.name if t else '**all (unique)**'} | {c['records']} | {c['sft']} | {c['fit']} | "
                     f"{c['ranking']} | {c['total']} |")
    return lines + [""]


def readme(profile: str, results_dir, tables: list[Table], pages: list[str], reading: str | None = None) -> str:
    """The leaderboard's README: provenance, the hand-written reading (`READING.md` beside it, if any), compute,
    and every table. It depends on the records only (no render time), so a re-render reproduces it."""
    prov = provenance(tables)
    lines = [f"# Leaderboard: profile `{profile}`", "",
             f"Rendered from the run records in `{results_dir}` by `python -m bench leaderboard --profile {profile}`; "
             f"compare with the paper by `python -m bench compare --profile {profile}` (published numbers: "
             f"`leaderboards/paper/`).", ""]
    if reading:
        lines += [reading.strip(), ""]
    lines += ["## Provenance", ""]
    for key, value in prov.items():
        if key == "package_versions":
            value = [json.loads(v) for v in value]
        lines.append(f"- {key}: `{json.dumps(value)}`")
    return "\n".join(lines + [""] + compute_lines(tables) + ["## Tables", ""] + pages)
