"""Leaderboards: paper CSVs, grid expansion, sharding, resume, locks, rendering with marks, compare; fast tests use
fake records in the real schema (written by bench.results.write_record); one end-to-end run on the smoke profile.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.leaderboard import grids, render
from bench.leaderboard.compare import compare_table
from bench.leaderboard.grids import TABLES, GridCell, expand, table_names
from bench.leaderboard.locks import GroupLock
from bench.leaderboard.paper import load_paper, load_table2
from bench.leaderboard.records import RecordIndex, cell_config, cell_identity, pipeline_key, record_identity
from bench.leaderboard.runner import GridRunner, group_cells, parse_shard, shard
from bench.leaderboard.significance import per_sample
from bench.leaderboard.tables import build_table
from bench.results import record_path, write_record
from tests.support import FakeRun, fake_record

PAPER_SHAPES = {  # file: (lines = datasets x metrics, row labels)
    "table1.csv": (12, 9), "table3.csv": (8, 9), "table4.csv": (4, 9), "table5.csv": (8, 8),
    "table6.csv": (2, 4), "table7.csv": (1, 4), "table8.csv": (6, 4), "table9.csv": (8, 7),
}


def write_fake(results_dir, profile: str, cell: GridCell, hr10: float, **kw) -> dict:
    cfg = cell_config(profile, cell)
    cfg.results_dir = str(results_dir)
    rec = fake_record(cfg, cell.method, hr10, **kw)
    write_record(record_path(results_dir, cell.dataset, cell.shift, cell.method, rec["key"]), rec)
    return rec


# --- published numbers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("file_name", sorted(PAPER_SHAPES))
def test_paper_csv_shape_and_labels_match_the_grid(file_name):
    paper = load_paper(file_name)
    lines, labels = PAPER_SHAPES[file_name]
    assert len(paper.labels) == labels
    assert len({k[:3] for k in paper.cells}) == lines
    spec = next(t for t in TABLES.values() if t.paper_csv == file_name)
    for row in (r for r in spec.rows if not r.extra):
        assert row.label in paper.labels, row.label
        for col in spec.columns:
            for metric in spec.metrics:
                assert paper.get(col.paper_dataset, col.shift, metric, row.label) is not None


def test_paper_values_spot_checks():
    assert load_paper("table1.csv").get("ML-10M", "temporal", "HR@10", "Ours") == 0.61
    assert load_paper("table4.csv").get("Yelp2018", "mixed", "HR@20", "Ours") == 1.51
    assert load_paper("table6.csv").get("Book-Crossing", "exposure", "seconds/epoch", "CausalDPO") == 2971
    assert load_table2()["#Interactions"]["Movielens-10M"] == 10000054


# --- grids ------------------------------------------------------------------------------------------------------

def test_table_names():
    assert table_names("1,3,fig2") == ["table1", "table3", "fig2"]
    assert "fig3" not in table_names(None)
    assert table_names("all") == list(TABLES) and "fig3" in table_names("all")
    with pytest.raises(ValueError):
        table_names("10")


def test_grid_tiny_uses_ml100k_for_every_shift():
    cells = expand(["table1"], "tiny", [0, 1], "ml-100k", "tiny-llama")
    assert {c.dataset for c in cells} == {"ml-100k"}
    assert {c.shift for c in cells} == {"popularity", "temporal", "exposure"}
    assert {c.method for c in cells} == {"sasrec", "bigrec", "rw", "d3", "dmpo", "sdpo", "rosepo", "sprec",
                                         "causaldpo", "dpo", "sft", "oracle-mf"}
    assert len(cells) == 11 * 3 * 2 + 2                      # the MF oracle: the exposure column only
    assert {c.shift for c in cells if c.method == "oracle-mf"} == {"exposure"}
    assert {c.shift for c in expand(["table3"], "tiny", [0], "ml-100k", "tiny-llama")} == {"iid"}
    assert {c.shift for c in expand(["table4"], "tiny", [0], "ml-100k", "tiny-llama")} == {"mixed"}
    table5 = {c.method for c in expand(["table5"], "tiny", [0], "ml-100k", "tiny-llama")}
    assert {"simpo+causal", "cpo+causal", "drdpo+causal", "dpo", "causaldpo"} <= table5
    assert {c.method for c in expand(["table8"], "tiny", [0], "ml-100k", "tiny-llama")} >= {
        "causaldpo-nosft", "sft", "base", "causaldpo"}


def test_grid_backbones_table9():
    tiny = expand(["table9"], "tiny", [0], "ml-100k", "tiny-llama")
    assert {c.overrides for c in tiny if c.method == "causaldpo"} == {
        (), ("backbone.name=tiny-qwen2",), ("backbone.name=tiny-qwen3",)}
    paper = expand(["table9"], "paper", [0], "ml-10m", "meta-llama/Llama-3.1-8B")
    assert {c.overrides for c in paper if c.method == "causaldpo"} == {
        (), ("backbone.name=Qwen/Qwen2.5-7B-Instruct",), ("backbone.name=Qwen/Qwen3-8B",)}


def test_grid_paper_pairing():
    pairs = {(c.dataset, c.shift) for c in expand(["table1", "table3", "table4"], "paper", [0], "ml-10m", "x")}
    assert pairs == {("yelp2018", "popularity"), ("ml-10m", "temporal"), ("book-crossing", "exposure"),
                     ("ml-10m", "iid"), ("book-crossing", "iid"), ("yelp2018", "mixed")}
    assert {(c.dataset, c.shift) for c in expand(["table6"], "paper", [0], "ml-10m", "x")} == {
        ("book-crossing", "exposure")}


def test_groups_share_everything_but_the_method():
    groups = group_cells(expand(list(grids.DEFAULT_TABLES), "tiny", [0], "ml-100k", "tiny-llama"))
    for g in groups:
        assert len({c.group for c in g.cells}) == 1
        assert len({c.method for c in g.cells}) == len(g.cells)
    assert len({g.id for g in groups}) == len(groups)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_shards_are_disjoint_and_complete(n):
    groups = group_cells(expand(list(TABLES), "tiny", [0, 1, 2], "ml-100k", "tiny-llama"))
    parts = [[g.id for g in shard(groups, i, n)] for i in range(n)]
    flat = [x for p in parts for x in p]
    assert sorted(flat) == sorted(g.id for g in groups) and len(flat) == len(set(flat))
    assert parts == [[g.id for g in shard(list(reversed(groups)), i, n)] for i in range(n)]  # deterministic


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)


# --- records, resume, locks -------------------------------------------------------------------------------------

def test_identity_of_a_record_equals_the_cells():
    cell = GridCell("ml-100k", "temporal", "dpo", 0)
    rec = fake_record(cell_config("tiny", cell), "dpo", 0.01)
    assert record_identity(rec) == cell_identity("tiny", cell) and pipeline_key(rec) == rec["key"]
    assert cell_identity("tiny", GridCell("ml-100k", "temporal", "dpo", 1)) != cell_identity("tiny", cell)
    assert cell_identity("tiny", GridCell("ml-100k", "temporal", "dpo", 0, ("dpo.beta=0.5",))) != cell_identity(
        "tiny", cell)


def test_a_record_made_before_a_field_existed_keeps_its_identity():
    """Records written before a config field or hyperparameter was added (with a default that keeps the old
    behaviour) are still found: settings at their defaults do not enter the identity, set ones do."""
    cell = GridCell("ml-100k", "temporal", "dpo", 0)
    rec = fake_record(cell_config("tiny", cell), "dpo", 0.01)
    older = copy.deepcopy(rec)
    del older["config"]["backbone"]["chat_template"], older["hyperparameters"]["beta"]   # dpo's beta at its default
    assert record_identity(older) == record_identity(rec) == cell_identity("tiny", cell)
    changed = copy.deepcopy(rec)
    changed["config"]["backbone"]["chat_template"] = False
    assert record_identity(changed) != record_identity(rec)
    assert cell_identity("tiny", cell, ["backbone.chat_template=false"]) == record_identity(changed)
    assert cell_identity("tiny", GridCell("ml-100k", "temporal", "not-a-method", 0)) is None


def test_resume_skips_finished_cells(tmp_path):
    cells = [GridCell("ml-100k", "temporal", m, 0) for m in ("dpo", "sft", "causaldpo")]
    write_fake(tmp_path, "tiny", cells[0], 0.02)
    fake = FakeRun()
    runner = GridRunner("tiny", tmp_path, run_fn=fake, log=lambda m: None)
    summary = runner.run(group_cells(cells))
    assert fake.calls == [("ml-100k", "temporal", 0, ["causaldpo", "sft"])]
    assert summary.done == 1 and len(summary.ran) == 2
    summary = runner.run(group_cells(cells))  # everything finished: nothing runs
    assert len(fake.calls) == 1 and summary.done == 3


def test_unregistered_methods_are_reported_not_run(tmp_path):
    fake = FakeRun()
    cells = [GridCell("ml-100k", "temporal", "not-a-method", 0)]
    summary = GridRunner("tiny", tmp_path, run_fn=fake, log=lambda m: None).run(group_cells(cells))
    assert fake.calls == [] and "not-a-method" in summary.unavailable


def test_lock_prevents_a_second_runner(tmp_path):
    cells = [GridCell("ml-100k", "temporal", "dpo", 0)]
    fake = FakeRun()
    runner = GridRunner("tiny", tmp_path, run_fn=fake, log=lambda m: None)
    group = group_cells(cells)[0]
    held = runner.lock(group)
    assert held.acquire()
    assert not runner.lock(group).acquire()
    summary = runner.run([group])
    assert fake.calls == [] and summary.locked == [group.id]
    held.release()
    runner.run([group])
    assert len(fake.calls) == 1


def test_a_group_whose_sft_family_is_busy_is_put_off(tmp_path):
    """Groups differing only in method overrides share an SFT model: while another runner holds one of them, the
    runner does other groups first, then the put-off one (even if the family is still busy: it is put off once)."""
    sweep = GridCell("ml-100k", "temporal", "causaldpo", 0, ("causaldpo.beta=2",))
    other_backbone = GridCell("ml-100k", "temporal", "causaldpo", 0, ("backbone.name=tiny-qwen2",))
    groups = group_cells([GridCell("ml-100k", "temporal", "dpo", 0), sweep, other_backbone,
                          GridCell("ml-100k", "popularity", "dpo", 0)])
    main = next(g for g in groups if not g.overrides and g.shift == "temporal")
    assert {g.sft_family for g in groups if g.shift == "temporal"} == {main.sft_family,
                                                                        ("ml-100k", "temporal", 0,
                                                                         ("backbone.name=tiny-qwen2",))}
    fake, log = FakeRun(), []
    runner = GridRunner("tiny", tmp_path, run_fn=fake, log=log.append)
    held = runner.lock(main)
    assert held.acquire()  # another runner is training the temporal SFT model
    order = [g for g in groups if g is not main]
    order.sort(key=lambda g: g.overrides != ("causaldpo.beta=2",))  # the sweep group comes first
    summary = runner.run([main] + order)
    running = [line for line in log if "running" in line]
    assert len(fake.calls) == 3 and len(running) == 3
    assert "beta=2" in running[-1] and "beta=2" not in "".join(running[:-1])  # first in the list, run last
    assert any("put off" in line and "beta=2" in line for line in log)
    assert summary.locked == [main.id]
    held.release()


def test_stale_locks_are_broken(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "g.lock"
    import socket
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "time": 1e18}))
    assert GroupLock(path).acquire()  # owner process is gone
    path.write_text(json.dumps({"host": "elsewhere", "pid": os.getpid(), "time": 0}))
    assert GroupLock(path, stale_after=3600).acquire()  # too old
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": 1e18}))
    assert not GroupLock(path).acquire()  # another host, fresh: respected


# --- tables -----------------------------------------------------------------------------------------------------

TABLE5_HR10 = {"drdpo": 0.010, "cpo": 0.020, "simpo": 0.015, "dpo": 0.012, "simpo+causal": 0.030,
               "cpo+causal": 0.040, "drdpo+causal": 0.035, "causaldpo": 0.050}


def _table5_records(tmp_path, seeds=(0,)):
    rng = np.random.default_rng(0)
    for seed in seeds:
        for method, hr in TABLE5_HR10.items():
            ranks = np.where(rng.random(64) < hr * 10, 0, 20).tolist()
            write_fake(tmp_path, "tiny", GridCell("ml-100k", "temporal", method, seed), hr + seed * 1e-3, ranks=ranks,
                       seconds=10.0 + len(method))


def test_render_marks_best_and_second(tmp_path):
    _table5_records(tmp_path)
    table = build_table("table5", "tiny", RecordIndex.load(tmp_path), [0], "ml-100k", "tiny-llama")
    assert table.value("CausalDPO", 0, "HR@10").mean == pytest.approx(5.0)
    assert table.value("CausalDPO", 0, "HR@10").mark == "best"
    assert table.value("CPO w/ Causal Reg.", 0, "HR@10").mark == "second"
    assert table.value("DPO", 1, "HR@10").mean is None  # exposure column has no records
    md = render.markdown(table)
    assert "**5.00" in md and "<u>4.00" in md and "–" in md
    tex = render.latex(table)
    assert "\\textbf{5.00" in tex and "\\underline{4.00" in tex
    wide = render.wide_csv(table).splitlines()
    assert wide[0].startswith("dataset,shift,metric,Dr.DPO") and wide[1].startswith("ml-100k,temporal,HR@10,1,2,")


def test_several_seeds_give_mean_std_and_a_paired_test(tmp_path):
    _table5_records(tmp_path, seeds=(0, 1, 2))
    table = build_table("table5", "tiny", RecordIndex.load(tmp_path), [0, 1, 2], "ml-100k", "tiny-llama")
    value = table.value("CausalDPO", 0, "HR@10")
    assert value.seeds == [0, 1, 2] and value.mean == pytest.approx(5.1) and value.std == pytest.approx(0.1)
    assert value.p_vs_dpo is not None and value.p_vs_dpo < 0.05  # per-sample ranks: ~0.5 vs ~0.12 hit rate
    assert table.value("DPO", 0, "HR@10").p_vs_dpo is None
    assert "5.10 ± 0.10 †" in render.markdown(table)


def test_a_grounding_table_tests_every_row_against_its_own_dpo_row(tmp_path):
    """Table 5g's rows (DPO included) all carry the grounding overrides; the paired test and the MDE are computed
    against that DPO row, as the caption says."""
    rng = np.random.default_rng(0)
    for cell in expand(["table5g"], "tiny", [0, 1, 2], "ml-100k", "tiny-llama"):
        assert "ranking.protocol=grounding" in cell.overrides
        ranks = np.where(rng.random(64) < TABLE5_HR10[cell.method] * 10, 0, 20).tolist()
        write_fake(tmp_path, "tiny", cell, TABLE5_HR10[cell.method], ranks=ranks)
    table = build_table("table5g", "tiny", RecordIndex.load(tmp_path), [0, 1, 2], "ml-100k", "tiny-llama")
    value = table.value("CausalDPO", 0, "HR@10")
    assert value.p_vs_dpo is not None and value.p_vs_dpo < 0.05 and value.mde_vs_dpo > 0
    assert table.value("DPO", 0, "HR@10").p_vs_dpo is None
    assert "†" in render.markdown(table)


def test_seconds_table_names_the_device(tmp_path):
    for method in ("dpo", "cpo", "simpo", "causaldpo"):
        write_fake(tmp_path, "tiny", GridCell("ml-100k", "exposure", method, 0), 0.01, seconds=12.0)
    table = build_table("table6", "tiny", RecordIndex.load(tmp_path), [0], "ml-100k", "tiny-llama")
    assert table.value("CausalDPO", 0, "seconds/epoch").mean == 12.0
    assert "cpu (test)" in render.markdown(table)


def test_compare_prints_paper_and_ours(tmp_path):
    _table5_records(tmp_path)
    table = build_table("table5", "tiny", RecordIndex.load(tmp_path), [0], "ml-100k", "tiny-llama")
    out = compare_table(table)
    assert "ML-10M" in out and "0.61" in out and "5.00" in out and "+4.39" in out and "Kendall" in out


def test_publish_writes_every_format(tmp_path):
    from bench.leaderboard.publish import publish
    _table5_records(tmp_path / "results")
    out = tmp_path / "board"
    publish(["table5", "fig1"], "tiny", tmp_path / "results", out, [0], log=lambda m: None)
    for suffix in ("md", "tex", "csv"):
        assert (out / f"table5.{suffix}").exists()
    assert "Provenance" in (out / "README.md").read_text()


def test_render_only_from_compressed_records_reproduces_every_text_file(tmp_path):
    """Committed records are gzipped; rendering them again gives byte-identical tables and README (no render
    time in them), and the hand-written READING.md lands in the README."""
    from bench.leaderboard.publish import publish
    _table5_records(tmp_path / "results")
    subprocess.run(["gzip", "-n", *map(str, (tmp_path / "results").rglob("*.json"))], check=True)
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        out.mkdir()
        (out / "READING.md").write_text("## Reading\n\nCausalDPO does not beat DPO here.\n")
        publish(["table5"], "tiny", tmp_path / "results", out, [0], log=lambda m: None)
    texts = sorted(p.name for p in first.iterdir())
    assert "table5_long.csv" in texts and "README.md" in texts
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in texts)
    readme = (first / "README.md").read_text()
    assert readme.index("CausalDPO does not beat DPO") < readme.index("## Provenance")
    assert "table5" in readme and "5.00" in (first / "table5.md").read_text()


def test_compute_seconds_counts_each_record_and_each_sft_model_once():
    from bench.leaderboard.publish import compute_seconds
    a = {"key": "a", "sft_tag": "s1", "sft": {"train_seconds": 100.0}, "fit_seconds": 10.0,
         "results": {"ood_test": {"seconds": 5.0}, "iid_test": {"seconds": 1.0}}}
    b = {"key": "b", "sft_tag": "s1", "sft": {"train_seconds": 100.0}, "fit_seconds": 20.0,
         "results": {"ood_test": {"seconds": 7.0}}}
    c = {"key": "c", "sft_tag": None, "sft": None, "fit_seconds": 3.0, "results": {"ood_test": {"seconds": 2.0}}}
    got = compute_seconds([a, b, c, a])
    assert got == {"records": 3, "sft": 100, "fit": 33, "ranking": 15, "total": 148}


def test_without_seeds_a_profile_uses_its_committed_leaderboards_seeds():
    import argparse

    from bench.leaderboard.command import _setup
    for profile, given, want in (("tiny", None, [0, 1, 2]), ("smoke", None, [0]), ("tiny", "1", [1])):
        args = argparse.Namespace(tables="5", seeds=given, profile=profile, set=[])
        assert _setup(args) == (["table5"], want)


@pytest.mark.slow
def test_the_committed_tiny_leaderboard_re_renders_byte_for_byte_from_its_records(tmp_path):
    """The plain render-only command (no --seeds: tiny's 0, 1, 2) rebuilds every committed table, CSV and the
    README from the committed records; the figures' PNG bytes are left out (matplotlib's rasteriser), their data
    is in the figures' long CSVs."""
    import shutil
    from pathlib import Path

    board = Path(__file__).resolve().parents[2] / "leaderboards" / "tiny"
    out = tmp_path / "tiny"
    out.mkdir()
    shutil.copy(board / "READING.md", out / "READING.md")
    subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--profile", "tiny", "--tables", "all",
                    "--render-only", "--results", "leaderboards/tiny/records", "--out", str(out)],
                   check=True, capture_output=True, cwd=board.parents[1])  # the README names --results as given
    rendered = sorted(p.name for p in out.iterdir() if p.suffix != ".png")
    committed = sorted(p.name for p in board.iterdir()
                       if p.is_file() and p.suffix != ".png"
                       and p.name not in ("compare.txt", "calibration.json"))  # written by compare and plan
    assert rendered == committed
    differ = [n for n in rendered if (out / n).read_bytes() != (board / n).read_bytes()]
    assert not differ, f"re-rendered files differ from the committed ones: {differ}"


# --- end to end -------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_end_to_end_smoke_runs_then_skips(tmp_path, monkeypatch):
    spec = grids.TableSpec("table_e2e", "e2e", (grids.Column("ML-10M", "temporal"),),
                           (grids.Row("MostPop", "mostpop"), grids.Row("Random", "random")))
    monkeypatch.setitem(TABLES, "table_e2e", spec)
    cells = expand(["table_e2e"], "smoke", [0], "ml-100k", "tiny-llama")
    runner = GridRunner("smoke", tmp_path / "results", tmp_path / "cache", log=lambda m: None)
    summary = runner.run(group_cells(cells))
    assert len(summary.ran) == 2 and not summary.failed
    records = list(RecordIndex.load(tmp_path / "results").by_identity.values())
    assert all(pipeline_key(r) == r["key"] for r in records)  # our key computation matches the pipeline's
    assert runner.run(group_cells(cells)).done == 2
    table = build_table("table_e2e", "smoke", RecordIndex.load(tmp_path / "results"), [0], "ml-100k", "tiny-llama")
    assert table.value("MostPop", 0, "HR@10").mean is not None


def test_figures_skip_gracefully(tmp_path, monkeypatch):
    from bench.leaderboard import figures
    table = build_table("fig1", "tiny", RecordIndex([]), [0], "ml-100k", "tiny-llama")
    monkeypatch.setattr(figures, "_pyplot", lambda: None)
    assert "matplotlib is not installed" in figures.figure(table, tmp_path)
    monkeypatch.setattr(figures, "_pyplot", lambda: object())
    assert "no records" in figures.figure(table, tmp_path)


def test_figures_render_group_time_projection_and_sweep_panels(tmp_path):
    pytest.importorskip("matplotlib")
    from bench.leaderboard import figures
    rng = np.random.default_rng(0)
    for name in ("fig2", "fig3"):
        for cell in expand([name], "tiny", [0], "ml-100k", "tiny-llama"):
            cfg = cell_config("tiny", cell)
            rec = fake_record(cfg, cell.method, float(rng.uniform(0.01, 0.05)))
            part = rec["results"]["ood_test"]
            part["time_groups"] = {f"T{t}": {"n": 10, "NDCG@10": 0.01 * t} for t in range(1, 6)}
            if cell.method == "causaldpo":
                rec["method_stats"]["projection"] = {
                    "xy": rng.normal(size=(30, 2)).tolist(), "environment": (np.arange(30) % 3 - 1).tolist(),
                    "ami_popularity": 0.1, "ami_time": 0.2}
            write_record(record_path(tmp_path / "r", cell.dataset, cell.shift, cell.method, rec["key"]), rec)
        table = build_table(name, "tiny", RecordIndex.load(tmp_path / "r"), [0], "ml-100k", "tiny-llama")
        message = figures.figure(table, tmp_path)
        assert message == f"{name}: wrote {tmp_path / (name + '.png')}"
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_compared_cell_has_a_minimal_detectable_difference(tmp_path):
    _table5_records(tmp_path, seeds=(0, 1))
    table = build_table("table5", "tiny", RecordIndex.load(tmp_path), [0, 1], "ml-100k", "tiny-llama")
    value = table.value("CausalDPO", 0, "HR@10")
    d = np.mean([per_sample(table.by_cell[("CausalDPO", 0)][s], "ood_test", "HR@10")
                 - per_sample(table.by_cell[("DPO", 0)][s], "ood_test", "HR@10") for s in (0, 1)], axis=0)
    assert value.mde_vs_dpo == pytest.approx(100 * 2.8016 * d.std(ddof=1) / np.sqrt(len(d)), rel=1e-3)  # in points
    assert table.value("DPO", 0, "HR@10").mde_vs_dpo is None            # DPO is the reference
    rows = list(csv.DictReader(io.StringIO(render.long_csv(table))))
    compared = [r for r in rows if r["mean"] and r["method"] != "dpo"]
    assert compared and all(float(r["mde_vs_dpo"]) > 0 for r in compared)
    assert "minimal detectable difference against DPO" in render.caption(table)


def test_rows_name_their_protocol_and_copies_are_marked(tmp_path):
    ranks = np.where(np.random.default_rng(1).random(64) < 0.2, 3, 20).tolist()
    for method, hr in (("dpo", 0.012), ("simpo", 0.012), ("causaldpo", 0.05), ("cpo", 0.02)):
        own = ranks if method in ("dpo", "simpo") else np.where(np.random.default_rng(len(method)).random(64) < hr * 10,
                                                               0, 20).tolist()
        write_fake(tmp_path, "tiny", GridCell("ml-100k", "temporal", method, 0), hr, ranks=own)
    table = build_table("table5", "tiny", RecordIndex.load(tmp_path), [0], "ml-100k", "tiny-llama")
    assert table.identical_rows() == [("DPO", "SimPO", 0)]                 # DPO comes after SimPO in Table 5
    assert table.protocol("CausalDPO") == "likelihood" and table.protocol("Dr.DPO") == ""
    md = render.markdown(table)
    assert "| Method | Protocol |" in md and "| CausalDPO | likelihood |" in md
    assert "identical target ranks (copies): DPO = SimPO (column 1)" in md
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(render.long_csv(table))) if r["metric"] == "HR@10"
            and r["shift"] == "temporal"}
    assert rows["DPO"]["same_ranks_as"] == "SimPO" and rows["CPO"]["same_ranks_as"] == ""
    assert rows["CPO"]["protocol"] == "likelihood"


@pytest.fixture
def tables_restored():
    """`restrict` and `add_method_rows` change TABLES in place (a job process applies them once); undo that."""
    saved = dict(TABLES)
    yield
    TABLES.clear()
    TABLES.update(saved)


def test_restrict_keeps_the_named_shifts_and_methods_and_adds_the_missing_ones(tables_restored):
    kept = grids.restrict(["table1", "table6", "fig2"], ["temporal", "popularity"], ["sft", "causaldpo", "mostpop"])
    assert kept == ["table1", "fig2"]                  # table6 has only the exposure column
    assert [c.shift for c in TABLES["table1"].columns] == ["popularity", "temporal"]
    assert [(r.method, r.extra) for r in TABLES["table1"].rows] == [("causaldpo", False), ("sft", True),
                                                                    ("mostpop", True)]
    assert [r.method for r in TABLES["fig2"].rows] == ["sft", "causaldpo"]   # figures get no added rows
    cells = expand(kept, "tiny", [0], "ml-100k", "tiny-llama")
    assert {(c.shift, c.method) for c in cells} == {(s, m) for s in ("popularity", "temporal")
                                                    for m in ("sft", "causaldpo", "mostpop")}
    with pytest.raises(ValueError, match="unknown shift.*temporl"):
        grids.restrict(["table1"], ["temporl"], None)


def test_the_small_profile_runs_its_committed_scope_by_default(tmp_path, tables_restored):
    out = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--profile", "small", "--dry-run",
                          "--results", str(tmp_path)], capture_output=True, text=True, check=True).stderr
    assert "table1, fig2; seeds [0]; 18 cells in 2 groups" in out
    assert "ml-100k/temporal seed 0: would run causaldpo, dpo, mostpop, random, sasrec, sdpo, sft, simpo, sprec" in out
