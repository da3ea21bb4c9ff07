"""The cost planner: methods' declared work, its arithmetic on a known grid, calibration files, measured compute
from records, and a real (smoke-sized) calibration through the CLI; fits counted once, FLOPs at a utilisation,
SASRec's FLOPs, the Table 6 arithmetic, and unprepared paper datasets priced from stand-ins."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

import methods
from bench.cli import main
from bench.leaderboard.records import cell_config, cell_identity
from bench.planner.command import family_id, measure, predict, report
from bench.planner.prices import (NODE_SEARCH_SHARE, CalibratedPrices, Calibration, CalibrationError, FlopsPrices,
                                  default_utilisation, sasrec_flops)
from bench.planner.table6 import epoch_seconds, table6_rows
from bench.planner.grid_work import grid_work
from methods.train.config import PreferenceConfig, SFTConfig
from methods.declared_work import CellSize, Work

SIZE = CellSize(train_samples=10_000, train_interactions=12_000, sft=SFTConfig(epochs=3, batch_size=32),
                preference=PreferenceConfig(batch_size=16, max_pairs=4096, negatives=1))


def by_kind(work: list[Work], kind: str) -> list[Work]:
    return [w for w in work if w.kind == kind]


def test_preference_methods_declare_pairs_steps_and_their_reference():
    dpo = methods.resolve("dpo").workload(SIZE)
    (ref,), (train,) = by_kind(dpo, "forward"), by_kind(dpo, "preference_step")
    assert (ref.sequences, train.count, train.sequences, train.width) == (4096 * 2, 4096 / 16, 4096 * 2, 2)
    sdpo = methods.resolve("sdpo").workload(SIZE)   # S-DPO's own K = 3
    assert by_kind(sdpo, "preference_step")[0].width == 4 and by_kind(sdpo, "forward")[0].sequences == 4096 * 4
    assert not by_kind(methods.resolve("simpo").workload(SIZE), "forward")   # reference-free
    small = dataclasses.replace(SIZE, train_samples=1000)                  # fewer samples than the budget
    assert by_kind(methods.resolve("dpo").workload(small), "preference_step")[0].count == math.ceil(1000 / 16)


def test_methods_drawing_the_same_pairs_share_one_reference_pass_and_rosepo_does_not():
    keys = {name: by_kind(methods.resolve(name).workload(SIZE), "forward")[0].shared
            for name in ("dpo", "causaldpo", "drdpo+causal", "rosepo", "causaldpo-nosft")}
    assert keys["dpo"] == keys["causaldpo"] == keys["drdpo+causal"]
    assert keys["rosepo"] != keys["dpo"] and keys["causaldpo-nosft"] != keys["dpo"]
    causal = methods.resolve("causaldpo").workload(SIZE)
    assert by_kind(causal, "preference_step")[0].causal and by_kind(causal, "forward")[1].sequences == 512


def test_self_play_rounds_share_the_preference_budget():
    plain = by_kind(methods.resolve("dpo").workload(SIZE), "preference_step")[0]
    for name, overrides in (("sprec", {"iterations": 4}), ("causaldpo-selfplay", {"iterations": 4})):
        work = methods.resolve(name, overrides).workload(SIZE)
        steps = by_kind(work, "preference_step")
        assert len(steps) == 4 and sum(w.sequences for w in steps) == plain.sequences
        assert sum(w.count for w in steps) == plain.count
        assert len(by_kind(work, "top1")) == (4 if name == "sprec" else 3)   # causaldpo's round 1 has no self-play
        assert all(w.sequences == 1024 for w in by_kind(work, "sft_step"))


def test_other_methods_declare_their_own_training_and_ranking():
    assert by_kind(methods.resolve("rw").workload(SIZE), "sft_step")[0].sequences == 3 * 10_000
    assert by_kind(methods.resolve("sasrec").workload(SIZE), "sasrec_epoch")[0].count == 30
    assert methods.resolve("sft").workload(SIZE) == [] and methods.resolve("mostpop").ranking_key(None) == "fixed"
    from bench.config import RankingConfig
    assert methods.resolve("base").ranking_key(RankingConfig()) == "likelihood@base"
    assert methods.resolve("causaldpo-nosft").ranking_key(RankingConfig()) == "likelihood@base"
    ranking = RankingConfig(protocol="grounding", embedder="minilm")
    assert methods.resolve("dpo").ranking_key(ranking) == "grounding/minilm/beams1"
    assert methods.resolve("bigrec").ranking_key(ranking) == "grounding/backbone/beams4"
    assert methods.resolve("d3").ranking_key(ranking) == "d3"
    assert methods.resolve("d3", {"protocol": "run"}).ranking_key(ranking) == "d3/grounding/minilm/beams1"


@pytest.fixture(scope="module")
def table6(tmp_path_factory):
    """Table 6 on the smoke profile: one group (exposure), dpo, cpo, simpo and causaldpo."""
    return grid_work("smoke", ["table6"], [0], [], tmp_path_factory.mktemp("cache"), log=lambda m: None)


def round_calibration(size, **changes) -> Calibration:
    values = dict(device="cpu (1 threads, test)", device_type="cpu", threads=1, world_size=1, profile="smoke",
                  backbone="tiny-llama", dataset="ml-100k", train_samples=size.size.train_samples,
                  train_interactions=size.size.train_interactions, prompt_tokens=size.prompt_tokens,
                  title_tokens=size.title_tokens, catalogue_tokens=size.catalogue_tokens, setup=10.0,
                  run_overhead=5.0, sft_step=1.0, preference_intercept=0.5, preference_per_sequence=0.01,
                  causal_extra=0.25, forward=0.001, top1=0.0, sasrec_epoch=0.0, rank={"likelihood": 0.1})
    values.update(changes)
    return Calibration(**values)


def test_the_plan_of_a_known_grid_adds_up(table6):
    (group,) = table6
    size = group.size
    assert sorted(c.method for c in group.cells) == ["causaldpo", "cpo", "dpo", "simpo"]
    assert (size.size.train_samples, size.eval_prompts) == (256, 64)     # smoke: capped samples, exposure OOD only
    rows = predict(table6, CalibratedPrices(round_calibration(size)))
    stage = {s: sum(r["seconds"] for r in rows if r["stage"] == s) for s in {r["stage"] for r in rows}}
    pairs, steps = 64, 8                          # smoke: max_pairs 64, batch 8
    assert stage["setup"] == pytest.approx(10.0)
    assert stage["sft model"] == pytest.approx(math.ceil(256 / 32) * 1.0 + 5.0)
    assert stage["reference"] == pytest.approx(pairs * 2 * 0.001)                   # dpo and causaldpo share it
    step = 0.5 + 0.01 * 8 * 2
    assert stage["preference"] == pytest.approx(3 * (steps * step + 5) + steps * (step + 0.25) + 5 + pairs * 0.001)
    assert stage["ranking"] == pytest.approx(4 * 64 * 0.1)
    longer = CalibratedPrices(round_calibration(size, prompt_tokens=size.prompt_tokens / 2,
                                                title_tokens=size.title_tokens / 2, catalogue_tokens=size.catalogue_tokens // 2))
    doubled = {s: sum(r["seconds"] for r in predict(table6, longer) if r["stage"] == s) for s in ("sft model", "ranking")}
    assert doubled["sft model"] == pytest.approx(8 * 2.0 + 5.0)                  # twice the tokens per sequence
    assert doubled["ranking"] == pytest.approx(stage["ranking"] * size.catalogue_tokens / (size.catalogue_tokens // 2))


def test_groups_of_one_sft_family_share_one_sft_model(tmp_path):
    """Figure 3's groups differ only in method settings (iterations, negatives, beta): one SFT model between them."""
    groups = grid_work("smoke", ["fig3"], [0], [], tmp_path, log=lambda m: None)
    assert len(groups) > 1 and len({g.group.sft_family for g in groups}) == 1
    (owner,) = [g for g in groups if g.sft is not None]
    assert owner.sft_tables == ("fig3",)
    rows = predict(groups, CalibratedPrices(round_calibration(owner.size, rank={"likelihood": 0.0})))
    assert sum(r["stage"] == "sft model" for r in rows) == 1


def test_an_uncalibrated_ranking_is_an_error_that_says_how_to_calibrate(table6):
    with pytest.raises(CalibrationError, match="--calibrate"):
        predict(table6, CalibratedPrices(round_calibration(table6[0].size, rank={"beam": 0.1})))


def test_flops_prices_follow_6n_per_trained_token_and_2n_forward(table6):
    size = table6[0].size
    prices = FlopsPrices(params=1e9, tflops=100.0, lora=False, utilisation=1.0)
    seq = size.prompt_tokens + size.title_tokens
    train = Work("preference", "preference_step", 8, sequences=128, width=2)
    assert prices.seconds(train, size) == pytest.approx(128 * seq * 6e9 / 1e14)
    lora = FlopsPrices(1e9, 100.0, lora=True, utilisation=1.0)
    assert lora.seconds(train, size) == pytest.approx(128 * seq * 4e9 / 1e14)
    checkpointed = FlopsPrices(1e9, 100.0, lora=True, checkpointing=True, utilisation=1.0)
    assert checkpointed.seconds(train, size) == pytest.approx(128 * seq * 6e9 / 1e14)
    assert prices.seconds(Work("reference", "forward", 128, sequences=128), size) == pytest.approx(128 * seq * 2e9 / 1e14)
    assert prices.rank("likelihood", 10, size) == pytest.approx(10 * (size.prompt_tokens + size.catalogue_tokens) * 2e9 / 1e14)
    nodes = 10 * (size.prompt_tokens + NODE_SEARCH_SHARE * size.catalogue_tokens) * 2e9 / 1e14  # the fed share only
    assert prices.rank("likelihood/nodes", 10, size) == pytest.approx(nodes)
    assert nodes < prices.rank("likelihood", 10, size)
    grounding = 10 * (size.prompt_tokens + 4 * size.title_tokens) * 2e9 / 1e14
    assert prices.rank("grounding/backbone/beams4", 10, size) == pytest.approx(grounding)
    assert prices.rank("grounding/backbone/beams4@base", 10, size) == pytest.approx(grounding)   # untrained: same FLOPs


def test_calibration_files_round_trip_and_a_bad_one_is_named(tmp_path, table6):
    cal = round_calibration(table6[0].size)
    cal.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == cal
    (tmp_path / "bad.json").write_text("{\"device\": 1}")
    with pytest.raises(CalibrationError, match="bad.json"):
        Calibration.load(tmp_path / "bad.json")


def test_measured_compute_counts_each_sft_model_once(tmp_path, table6):
    (group,) = table6
    for cell in group.group.cells:
        cfg = cell_config("smoke", cell, [])
        method = methods.resolve(cell.method, cfg.method_overrides.get(cell.method))
        record = {"key": cell.method, "method": cell.method, "hyperparameters": dataclasses.asdict(method.config), "config": cfg.to_dict(),
                  "fit_seconds": 3.0, "results": {"ood_test": {"seconds": 2.0}}, "sft_tag": "one",
                  "sft": {"train_seconds": 7.0}, "created": "2026"}
        assert cell_identity("smoke", cell, []) is not None
        (tmp_path / f"{cell.method}.json").write_text(json.dumps(record))
    got = measure("smoke", table6, tmp_path, [])
    assert (got["cells"]["found"], got["cells"]["expected"], got["cells"]["sft_groups"]) == (4, 4, {family_id(group.group)})
    assert got["grid"] == {"records": 4, "fit": 12, "ranking": 8, "sft": 7, "total": 27}
    assert got["table6"] == got["grid"]
    prices = CalibratedPrices(round_calibration(group.size))
    rows = predict(table6, prices)
    text = report("smoke", ["table6"], [0], table6, prices, rows, got)
    predicted = sum(r["seconds"] for r in rows if r["stage"] != "setup")
    assert "measured in the records: 4 of 4 cells" in text
    (tmp_path / "dpo.json").unlink()                      # a partial grid: compared over the cells it has
    partial = measure("smoke", table6, tmp_path, [])
    lines = report("smoke", ["table6"], [0], table6, prices, rows, partial).splitlines()
    dpo = sum(r["seconds"] for r in rows if r["method"] == "dpo" and r["stage"] != "reference")
    assert lines[-1].split()[1] == f"{(predicted - dpo) / 3600:.3f}" and "3 of 4 cells" in "\n".join(lines)
    assert text.splitlines()[-1].split() == ["grid", f"{predicted / 3600:.3f}", f"{27 / 3600:.3f}", f"{predicted / 27:.2f}"]


def test_plan_command_calibrates_saves_and_reuses_the_calibration(tmp_path, capsys):
    cache = tmp_path / "cache"
    args = ["plan", "--profile", "smoke", "--tables", "6", "--cache", str(cache), "--results", str(tmp_path / "none")]
    assert main(args + ["--calibration", str(tmp_path / "mine.json")]) == 2          # none yet: a clear error
    assert "--calibrate" in capsys.readouterr().err
    assert main(args + ["--calibrate"]) == 0
    out = capsys.readouterr().out
    saved = list((cache / "calibration").glob("smoke-*.json"))
    assert len(saved) == 1 and "likelihood" in Calibration.load(saved[0]).rank
    assert "table6" in out and "preference" in out and "prices: calibrated on cpu" in out
    assert main(args) == 0                                                             # reused, not measured again
    again = capsys.readouterr()
    assert "calibrate:" not in again.err + again.out and again.out.splitlines()[-1] == out.splitlines()[-1]


def test_declared_work_is_what_fit_does(tmp_path):
    """The pairs and optimizer steps a method declares are those its record reports after a real smoke run."""
    from bench.config import apply_overrides, load_profile
    from bench.pipeline import run

    names = ["dpo", "sdpo", "sprec"]
    cfg = apply_overrides(load_profile("smoke"), [f"results_dir={tmp_path / 'r'}", f"cache_dir={tmp_path / 'c'}",
                                                  "sprec.iterations=2", "data.shift=exposure"], names)
    size = grid_work("smoke", ["table6"], [0], [], tmp_path / "c", log=lambda m: None)[0].size.size  # exposure
    records = {r["method"]: r for r in run(cfg, names, log=lambda m: None)}
    for name in names:
        work = methods.resolve(name, cfg.method_overrides.get(name)).workload(size)
        steps = by_kind(work, "preference_step")
        stats = records[name]["method_stats"]
        assert stats["optimizer_steps"] <= sum(w.count for w in steps)
        if name != "sprec":   # self-play keeps only wrong predictions: at most the declared pairs
            assert stats["pairs"] * (1 + stats["negatives"]) == sum(w.sequences for w in steps)
            assert stats["optimizer_steps"] == sum(w.count for w in steps)
        else:
            assert len(steps) == 2 and stats["pairs"] <= sum(w.sequences for w in steps) / 2


def test_a_fit_is_counted_once_and_a_cell_that_differs_only_in_ranking_only_ranks(tmp_path):
    """Figure 3's `negatives=1` cell is the default causaldpo cell: one fit, two rankings; without reuse, two fits."""
    once = grid_work("smoke", ["fig3"], [0], [], tmp_path, log=lambda m: None)
    each = grid_work("smoke", ["fig3"], [0], [], tmp_path, log=lambda m: None, reuse_fits=False)
    reused = [(g, c) for g in once for c in g.cells if c.reused]
    assert [c.method for _, c in reused] == ["causaldpo"] and not any(c.reused for g in each for c in g.cells)
    (group, cell), = reused
    assert cell.work and all(method != cell.method for _, method in group.units())    # declared, not charged
    prices = CalibratedPrices(round_calibration(once[0].size))
    rows_once, rows_each = predict(once, prices), predict(each, prices)

    def seconds(rows, stage):
        return sum(r["seconds"] for r in rows if r["stage"] == stage)
    assert seconds(rows_once, "ranking") == seconds(rows_each, "ranking")             # ranking still per cell
    assert seconds(rows_once, "preference") < seconds(rows_each, "preference")
    twin = next(c for g in once for c in g.cells if c.fit == cell.fit and not c.reused)
    assert twin.fit_tables == ("fig3",)


def test_fits_the_cache_does_not_keep_are_counted_per_cell(tmp_path):
    """Table 1g ranks Table 1's models with grounding: DPO's fit is reused, RW's (its own re-ranker) is not."""
    groups = grid_work("smoke", ["table1", "table1g"], [0], ["data.shift=temporal"], tmp_path, log=lambda m: None)
    cells = [(c.method, c.tables, c.reused) for g in groups for c in g.cells]
    assert ("dpo", ("table1g",), True) in cells and ("dpo", ("table1",), False) in cells
    assert ("rw", ("table1g",), False) in cells
    assert all(c.fit_tables == c.tables for g in groups for c in g.cells if c.method == "rw")   # each table its own


def test_utilisation_scales_flops_hours_as_one_over_u(table6):
    size = table6[0].size
    train = Work("preference", "preference_step", 8, sequences=128, width=2)
    full = FlopsPrices(1e9, 100.0, lora=True, utilisation=1.0).seconds(train, size)
    assert FlopsPrices(1e9, 100.0, lora=True, utilisation=0.25).seconds(train, size) == pytest.approx(4 * full)
    # the default: the H200 check's step (32 x 213 tokens at 6 x 8.03e9 FLOPs) / 0.999 s / 989 TFLOP/s
    assert default_utilisation() == pytest.approx(32 * 213 * 6 * 8.03e9 / 0.999 / 989e12)
    assert 0.33 < default_utilisation() < 0.34
    assert "0.332 utilisation of a 989 TFLOP/s peak" in FlopsPrices(1e9, 989.0, lora=True).source


def test_sasrec_has_a_flops_price(table6):
    size = table6[0].size
    prices = FlopsPrices(1e9, 100.0, lora=True, utilisation=1.0)
    epochs = Work("sasrec", "sasrec_epoch", 30, sequences=30 * 1000)
    seconds = prices.seconds(epochs, size)
    assert seconds > 0 and seconds == pytest.approx(30 * 1000 * sasrec_flops(size.history_len, size.items) / 1e14)
    assert sasrec_flops(10, 2000) > sasrec_flops(10, 1000) > 0          # the catalogue's logits
    assert prices.rank("sasrec", 10, size) > 0


def test_table6_arithmetic():
    """1,000 pairs of 2 sequences of 100 tokens at 6N (LoRA 4N + checkpointing 2N), N = 1e9: 1.2e15 FLOPs; on 8 GPUs
    of 300 TFLOP/s at 0.5 utilisation: 1.2e15 / 1.2e15 = 1 s; full fine-tuning (8N) with the reference on the fly
    (+2N): 10N, 2 s."""
    assert epoch_seconds(1000, 1, 100.0, 1e9, True, True, 8, 300.0, 0.5) == pytest.approx(1.0)
    assert epoch_seconds(1000, 1, 100.0, 1e9, False, True, 8, 300.0, 0.5, reference_on_the_fly=True) == \
        pytest.approx(10 / 6)
    rows = dict(table6_rows(1000, 1, 100.0, 1e9, 0.5))
    assert rows["LoRA, reference cached (the suite's recipe)"] == pytest.approx(1.2e15 / (8 * 312e12 * 0.5))


def test_an_unprepared_paper_dataset_is_priced_from_a_stand_in_with_a_notice(tmp_path, monkeypatch, capsys):
    """Book-Crossing not prepared: a 1/20 stand-in in a temp folder, its counts x 20, nothing in the data folder."""
    import bench.planner.grid_work as workload

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("BENCH_DATA_DIR", str(data))
    monkeypatch.setattr(workload, "STANDIN_RATINGS", 1_149_780 // 20)
    sets = ["data.dataset=book-crossing", "data.max_train_samples=null", "data.max_eval_samples=null"]
    (group,) = grid_work("smoke", ["table6"], [0], sets, tmp_path / "cache", log=lambda m: None)
    small = workload.standin("book-crossing", log=lambda m: None)
    assert small.scale == 20 and list(data.iterdir()) == []
    size = group.size
    assert size.standin.startswith("book-crossing: not prepared; priced from stand-ins at 1/20 scale, extrapolated "
                                   "to the release's totals")
    assert size.size.train_samples % 20 == 0 and size.eval_prompts % 20 == 0
    assert len(small.dataset.items) < size.items < 271_379     # more kept items at full size, never the release's all
    assert main(["plan", "--profile", "smoke", "--tables", "6", "--tflops", "989", "--params", "1e9", "--cache",
                 str(tmp_path / "cache"),
                 "--results", str(tmp_path / "none"), *(a for s in sets for a in ("--set", s))]) == 0
    out = capsys.readouterr().out
    header = out.split("\n\n")[0].splitlines()
    assert sum("not prepared; priced from stand-ins at 1/20 scale" in line for line in out.splitlines()) == 1
    assert any(line.startswith("total: ") and "GPU-hours" in line for line in header)
    assert "0.332 utilisation" in out and list(data.iterdir()) == []


def test_the_paper_profile_is_planned_on_a_fresh_machine_without_options(tmp_path, monkeypatch, capsys):
    """No data prepared, no calibration, no --tflops: `bench plan --profile paper` prices its GPU grid by FLOPs on the
    suite's reference GPU, says so, and states GPU-hours (here Table 6 alone, Book-Crossing from a stand-in)."""
    import bench.planner.grid_work as workload
    from bench.planner.prices import H200_PEAK_TFLOPS

    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("BENCH_DATA_DIR", str(data))
    monkeypatch.setattr(workload, "STANDIN_RATINGS", 1_149_780 // 20)
    assert main(["plan", "--profile", "paper", "--tables", "6", "--cache", str(tmp_path / "cache"),
                 "--results", str(tmp_path / "none")]) == 0
    out = capsys.readouterr()
    assert f"priced by FLOPs on one H100/H200 ({H200_PEAK_TFLOPS:g} TFLOP/s" in out.err + out.out
    total = next(line for line in out.out.splitlines() if line.startswith("total:"))
    assert "GPU-hours" in total and float(total.split()[1]) > 0
