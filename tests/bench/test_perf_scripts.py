"""`bench.perf.cost_growth --quick` and a capped `bench.perf.profile_run`, end to end in-process: their tables are
printed and every measured number is positive and finite (behaviour only; no timing assertions)."""
import math
import re

from bench.perf import cost_growth, profile_run


def table_rows(text: str) -> list[list[str]]:
    """Cells of every markdown table body row (header and separator rows left out)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    body = [line for i, line in enumerate(lines) if not line.startswith("|---")
            and not (i + 1 < len(lines) and lines[i + 1].startswith("|---"))]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in body]


def positive(cell: str) -> float:
    value = float(cell.rstrip("x%").strip("`"))
    assert math.isfinite(value) and value > 0, cell
    return value


def test_cost_growth_quick(capsys):
    cost_growth.main(["--quick"])
    out = capsys.readouterr().out
    assert out.count("## ") == 4, out
    exponents = re.findall(r"fitted exponent: \S+ ~ \S+\^(-?[\d.]+)", out)
    assert len(exponents) == 4 and all(math.isfinite(float(e)) for e in exponents), out
    rows = table_rows(out)
    assert len(rows) == 8, out       # two settings per axis, four axes
    for row in rows:
        growth = next(i for i, cell in enumerate(row) if cell.endswith("x"))
        positive(row[growth - 1])                             # s / prompt or ms / step
        positive(row[growth])
    assert all(positive(row[4]) for row in rows[-2:])          # causaldpo ms / step
    assert "Extrapolating to the paper profile" in out


def test_profile_run_capped(capsys):
    code = profile_run.main(["--profile", "smoke", "--limit-train", "32", "--limit-test", "8", "--top", "1",
                             "--functions", "5", "--ops", "5"])
    out = capsys.readouterr().out
    assert code == 0
    stages = {row[0]: row for row in table_rows(out[out.index("## Where the time goes"):].split("###")[0])}
    for stage in ("data + split", "SFT", "reference pass", "preference training", "ranking + metrics"):
        assert positive(stages[stage][2]) and positive(stages[stage][3]), stages[stage]
    assert "top 5 functions by cumulative time" in out and "top 5 torch ops by self CPU time" in out
    sections = out.split("### ")[1:]
    assert len(sections) == 2 and all(len(table_rows(s)) == 5 for s in sections), out
    for row in table_rows(sections[0]):
        positive(row[0])                                         # cumulative seconds


def test_ranking_pruning_on_a_trained_model(capsys, tmp_path):
    from bench.perf import ranking_pruning

    ranking_pruning.main(["--profile", "smoke", "--prompts", "24", "--k", "5", "--expand", "4", "32",
                          "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    rows = re.findall(r"(chunks, bound on \d token\(s\)|nodes, expand \d+) +[\d.]+ ms/prompt +([\d.]+)% of item "
                      r"scores computed, +([\d.]+)x faster; top-5 lists identical in ([\d.]+)% of prompts", out)
    assert [r[0] for r in rows] == ["chunks, bound on 1 token(s)", "chunks, bound on 2 token(s)", "nodes, expand 4",
                                    "nodes, expand 32"], out
    for name, share, ratio, identical in rows:
        assert 0 < float(share) <= 100 and positive(ratio), out
        # the chunk searches add the same terms as full scoring; the node search computes them in other batch
        # shapes, so a near-tie may swap (float rounding)
        assert float(identical) == 100 if name.startswith("chunks") else float(identical) >= 90, out


def test_exposure_scale_small(capsys):
    from bench.perf import exposure_scale

    assert exposure_scale.main(["--users", "300", "--items", "400", "--ratings", "30000", "--block-users", "64",
                                "--min-user-positives", "5"]) == 0
    out = capsys.readouterr().out
    dataset, split = out.strip().splitlines()
    assert re.search(r"dataset: [\d,]+ interactions, [\d,]+ users", dataset)
    assert re.search(r"exposure split: [\d,]+ OOD targets, blocks of 64 users", split) and "peak RSS" in split


def test_paper_standins_are_read_by_the_real_loaders_and_planned(tmp_path, monkeypatch, capsys):
    """The stand-ins come out in the published formats at the requested totals, and the paper grid is planned on
    them end to end (every table's groups counted from their splits; FLOPs prices, tokens estimated)."""
    from bench.cli import main
    from bench.perf import paper_standins
    from splits.prepared import load_raw, prepare

    scale = 0.01
    folders = paper_standins.write_standins(tmp_path / "raw", scale)
    for name, shape in (("ml-10m", paper_standins.ML10M), ("yelp2018", paper_standins.YELP),
                        ("book-crossing", paper_standins.BX)):
        prepare(name, folders[name], tmp_path / "data")
        raw = load_raw(name, data_dir_=tmp_path / "data")
        assert len(raw.interactions) == round(shape.ratings * scale), name
        assert raw.interactions["user"].nunique() == round(shape.users * scale), name     # every user rates >= 1
        items = round(shape.items * scale)
        assert raw.interactions["item"].max() <= items and len(raw.titles) == items, name
        assert set(raw.interactions["rating"].unique()) <= set(shape.levels), name
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    assert main(["plan", "--profile", "paper", "--tables", "1,3,4,5", "--tflops", "400", "--cache",
                 str(tmp_path / "cache"), "--results", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "tokens: estimated as characters / 4" in out and "prices: FLOPs" in out
    for table in ("table1", "table3", "table4", "table5"):
        assert re.search(rf"^{table}\s+\d+\s+\d", out, re.M), out


def test_llm_speed_at_tiny_size(capsys, tmp_path):
    """Every stage's rows (options off vs on) come out with positive rates, next to the matmul probe."""
    from bench.perf import llm_speed

    assert llm_speed.main(["--backbone", "tiny-llama", "--batch", "2", "--steps", "1", "--prompts", "2", "--items",
                           "20", "--beams", "2", "--seconds", "0.05", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"fp32 [\d.]+ GFLOP/s, bf16 [\d.]+ GFLOP/s", out), out
    sft, preference, ranking = [table_rows(part) for part in out.split("## ")[1:]]
    assert [row[0] for row in sft] == ["fp32, LM head on every position (baseline)",
                                       "+ LM head only where the loss reads it", "+ bf16 autocast",
                                       "+ length-grouped batches", "+ LoRA on the top 2 of 2 layers only"]
    assert len(preference) == 4                   # no length grouping in the preference trainer yet
    assert [row[0] for row in ranking] == [stage for stage in ("reference pass", "grounding", "likelihood", "beam")
                                           for _ in range(2)]
    for row in sft + preference:
        assert all(positive(cell) for cell in row[1:4]) and positive(row[5]) and positive(row[6].split()[0])
    for row in ranking:
        assert all(positive(cell) for cell in row[2:])


def test_likelihood_bounds_on_a_trained_model(capsys, tmp_path):
    from bench.perf import likelihood_bounds

    likelihood_bounds.main(["--profile", "smoke", "--part", "ood_test", "--prompts", "2", "--k", "5",
                            "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    rows = re.findall(r"d1 ([\d.]+)%, d2 ([\d.]+)%.*feeds (\d+) of (\d+) trie nodes", out)
    assert len(rows) == 2, out
    for d1, d2, kept, every in rows:
        assert float(d1) >= float(d2) > 0 and 0 < int(kept) <= int(every), out   # deeper bounds are tighter


def smoke_sft_cell(tmp_path):
    """The smoke profile's temporal cell with its SFT model trained into `tmp_path`, and that model in eval mode."""
    from bench.config import apply_overrides, load_profile
    from bench.pipeline import PreparedCell

    cfg = load_profile("smoke")
    apply_overrides(cfg, [f"cache_dir={tmp_path}", "data.shift=temporal"], [])
    cell = PreparedCell(cfg, lambda line: None)
    cell.ensure_sft()
    return cell, cell.sft_model().eval()


def test_likelihood_bounds_per_token_logprobs_sum_to_the_protocols_scores(tmp_path):
    import numpy as np

    from bench.perf.likelihood_bounds import token_logprobs
    from methods.ranking import score_all

    cell, model = smoke_sft_cell(tmp_path)
    prompt = cell.eval_prompts["ood_test"][0]
    tokens = token_logprobs(model, prompt, [list(c) for c in cell.catalogue.completions], cell.catalogue.pad_id, 64)
    exact = score_all(model, [prompt], cell.catalogue)[0]
    assert np.allclose(tokens.sum(1), exact, atol=1e-4) and (tokens <= 0).all()


def test_heldout_nll_prints_the_sft_models_nll_against_popularity(capsys, tmp_path):
    from bench.perf import heldout_nll

    heldout_nll.main(["--profile", "smoke", "--prompts", "8", "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    rows = {m[0]: m[1:] for m in re.findall(r"^(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%", out, re.M)}
    assert {"train", "ood_test"} <= set(rows), out
    for samples, sft, pop, share in rows.values():
        assert int(samples) == 8 and float(sft) > 0 and float(pop) > 0 and 0 <= float(share) <= 100


def test_heldout_nll_is_minus_the_likelihood_protocols_score_of_the_target(tmp_path):
    import numpy as np

    from bench.perf.heldout_nll import popularity_nll, title_nll
    from methods.ranking import score_all

    cell, model = smoke_sft_cell(tmp_path)
    prompts, targets = cell.eval_prompts["ood_test"][:3], cell.eval_parts["ood_test"].targets[:3]
    nll = title_nll(model, prompts, [cell.completions[int(t)] for t in targets], cell.catalogue.pad_id, batch_size=2)
    scores = score_all(model, prompts, cell.catalogue)
    exact = [scores[r, cell.position[int(t)]] for r, t in enumerate(targets)]
    assert np.allclose(nll, -np.array(exact), atol=1e-4)

    counts = np.array([3, 0, 1])
    pop = popularity_nll(counts, np.arange(3))
    assert np.allclose(pop, -np.log(np.array([4, 1, 2]) / 7)) and np.isclose(np.exp(-pop).sum(), 1)
