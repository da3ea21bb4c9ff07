"""Robustness ("Performance and robustness to measured goals"): determinism, interruption, bad input, concurrency.

* Determinism: two fresh processes with the same seed write byte-identical split files (every shift), prepared data
  and SFT weights, and records with identical CPU metrics (`test_same_seed_two_fresh_processes_*`).
* Interruption: a leaderboard grid killed with SIGKILL at a random point after its first record leaves no partial
  record and no temporary file, and restarted ends with the same records (full target ranks) and tables as an
  uninterrupted one, every record finished before the kill surviving byte for byte
  (`test_grid_killed_at_a_random_point_then_restarted_*`).
* Concurrency: two processes writing records into one folder lose and corrupt none, while a reader never sees a
  partial record (`test_two_processes_writing_records_*`); two leaderboard runners on one folder run every cell
  exactly once and write the records a single runner writes (`test_two_leaderboard_runners_*`), sharing one cache
  and one SFT model: a cache entry (tokenizer, SFT model) that another process puts in place first is kept, not an
  error (`test_cache_entry_saved_by_another_process_meanwhile_is_kept`).
* Bad input: each kind below gives exactly one `error:` line on stderr naming the input (file:line, option or value)
  and a non-zero exit with nothing written (`error_line` checks the one line), or a documented fallback. Tests of
  other modules are named by their module; where those test below the command line and the command line reaches
  the input, a test here goes through `bench.cli.main` too.

| # | bad input | outcome | test |
|---|---|---|---|
| 1 | ML-10M malformed rating row (non-numeric, off-scale, wrong field count) | exit 2, `file:line`, nothing written | test_malformed_raw_lines_through_data_prepare (+ test_raw_loaders.py::test_ml10m_malformed_line_names_file_and_line) |
| 2 | Yelp malformed line (not JSON, missing field, bad date) | exit 2, `file:line`, nothing written | test_malformed_raw_lines_through_data_prepare (+ test_raw_loaders.py::test_yelp_malformed_line) |
| 3 | Book-Crossing broken rows, bad ids, ratings of unknown ISBNs | skipped and counted (documented) | test_raw_loaders.py::test_bookcrossing_counts |
| 4 | truncated raw files (last line cut: ML-10M, Yelp), through `data prepare` | exit 2, `file:line`, nothing written | test_truncated_raw_files_name_file_and_line |
| 5 | ML-10M movies.dat in Latin-1, Book-Crossing in cp1252 | decoded (documented fallback) | test_raw_loaders.py::test_ml10m_counts, ::test_bookcrossing_counts |
| 6 | Yelp file not UTF-8 (was a bare codec error naming no file; fixed) | exit 2, `file:line` | test_wrong_encodings_name_file_and_line |
| 7 | ML-10M ratings.dat in UTF-16 or with Latin-1 bytes | exit 2, `file:line` | test_wrong_encodings_name_file_and_line |
| 8 | empty raw files (ratings, reviews, books, movies) (was prepared as an empty dataset, exit 0; fixed) | exit 2, nothing written | test_empty_or_unreadable_raw_files_prepare_nothing |
| 9 | every raw line unreadable (Book-Crossing in UTF-16: all skipped) (was exit 0; fixed) | exit 2 with the skipped counts | test_empty_or_unreadable_raw_files_prepare_nothing |
| 10 | missing raw files (raw folder missing or empty), through `data prepare` | exit 2 naming the folder and the files | test_missing_raw_files_name_the_folder_and_the_files (+ test_raw_loaders.py::test_ml10m_missing_files) |
| 11 | dataset not prepared, through `bench run` | exit 2 with the `prepare` command | test_dataset_not_prepared_names_the_prepare_command (+ test_data_cli.py::test_missing_preparation_names_the_command) |
| 12 | corrupt prepared dataset / failed preparation | exit 2, fingerprint error / earlier preparation untouched | test_corrupt_prepared_dataset_is_refused_and_a_failed_prepare_keeps_the_last_good_one (+ test_data_cli.py::test_prepare_replaces_and_detects_corruption, ::test_failed_prepare_leaves_nothing) |
| 13 | no user left after the filters (was a ZeroDivisionError traceback; fixed) | exit 2 naming the dataset | test_dataset_with_no_user_left_is_an_error |
| 14 | unknown dataset, method, shift, profile, protocol in `bench run` (flags or `--set`); unknown raw dataset in `data prepare` | exit 2, "did you mean" | test_cli.py::test_bad_input_exits_2_naming_it, test_unknown_raw_dataset_suggests_a_name |
| 15 | unknown profile or table, bad `--shard`, bad `--seeds` in `bench leaderboard` (`--seeds x` named nothing; fixed) | exit 2 naming it | test_leaderboard_bad_names_exit_2 (+ test_leaderboard.py::test_table_names, ::test_parse_shard) |
| 16 | `--set` unknown key or section, wrong type, no `=` in `bench run` | exit 2 naming it | test_cli.py::test_bad_input_exits_2_naming_it |
| 17 | `--set` unknown section/method, wrong type or no `=` in `bench leaderboard` (a typo was silently ignored; fixed) | exit 2 naming it | test_leaderboard_set_is_checked |
| 18 | `--set` a float to NaN (surfaced mid-run as "Invalid learning rate: nan"; fixed) | exit 2 naming the key | test_nan_setting_is_refused |
| 19 | empty `--methods` | exit 2 | test_empty_methods |
| 20 | users with empty histories | dropped and counted (documented) | test_samples.py::test_history_is_the_most_recent_training_positives_before_the_target |
| 21 | duplicate titles | made unique with " [k]" (documented) | test_datasets.py::test_unique_titles_rule, test_raw_loaders.py::test_ml10m_counts |
| 22 | titles differing only in whitespace (were "completions 0 and 1 are identical"; fixed) | made unique | test_titles_differing_only_in_whitespace_are_made_unique |
| 23 | catalogue smaller than K: ranking.k > items | lists padded with -1 / shorter, metrics defined | test_ranking.py::test_top_k_ties_and_fill, test_k_larger_than_the_catalogue |
| 24 | catalogue smaller than K negatives (`bench run --negatives`; checked only after SFT training) | exit 2 naming K and the catalogue size, no record | test_catalogue_too_small_for_k_negatives_in_a_run (+ test_samples.py::test_catalogue_too_small_for_k_negatives_is_an_error) |
| 25 | NaN loss | stops with the step number | test_trainer.py::test_non_finite_loss_stops_with_the_step_number |
| 26 | infinite loss at a later step | stops with that step number | test_infinite_loss_stops_with_its_step_number |
| 27 | non-finite loss in a CLI run (was a traceback; fixed) | one `error:` line with the step, exit 1, no record | test_non_finite_loss_in_a_run_is_one_error_line |
| 28 | DBSCAN: all points noise / one cluster | one environment, no MMD (documented) | test_causal.py::test_all_noise_falls_back_to_one_environment_without_mmd, ::test_one_cluster_falls_back_to_one_environment |
| 29 | missing or corrupt reference log-prob cache entry | recomputed | test_trainer.py::test_reference_cache_is_reused_and_a_corrupt_entry_recomputed |
| 30 | corrupt SFT or tokenizer cache entry (was trusted: traceback; fixed) | retrained, same metrics | test_corrupt_sft_and_tokenizer_cache_entries_are_rebuilt |
| 31 | corrupt record in the results folder | ignored, cell re-run, record replaced | test_corrupt_record_is_rerun_and_replaced |
| 32 | half-written lock file | broken once old, respected while fresh | test_unreadable_lock_file |
| 33 | results folder not writable (was a traceback after training; fixed) | exit 2 before training, nothing written | test_results_folder_not_writable |
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.leaderboard.grids import GridCell
from bench.leaderboard.locks import GroupLock
from bench.leaderboard.records import RecordIndex
from bench.leaderboard.runner import GridRunner, group_cells
from tests.support import FakeRun, ml10m_lines, write_bx, write_ml10m, write_yelp

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
ENV.pop("PYTHONHASHSEED", None)  # each fresh process gets its own hash seed: results must not depend on it
VOLATILE_RESULT = ("seconds",)   # per part: wall time


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=timeout)


def error_line(err: str) -> str:
    """The one `error: ...` line of a refused command's stderr (no traceback, no second error). A progress bar may
    end just before it on the same line: tqdm moves back with a carriage return, not a newline."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line[line.index("error: "):] for line in err.splitlines() if "error: " in line]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def record_results(results: Path) -> dict[str, dict]:
    """file name -> what must not change between identical runs (metrics, ranks, keys; not times or dates)."""
    out = {}
    for path in sorted(results.rglob("*.json")):
        rec = json.loads(path.read_text())
        parts = {p: {k: v for k, v in r.items() if k not in VOLATILE_RESULT} for p, r in rec["results"].items()}
        out[str(path.relative_to(results))] = {
            "key": rec["key"], "method": rec["method"], "split_fingerprint": rec["split_fingerprint"],
            "hyperparameters": rec["hyperparameters"], "sft_tag": rec["sft_tag"], "results": parts,
            "config": {k: v for k, v in rec["config"].items() if k not in ("results_dir", "cache_dir")}}
    return out


# ================================================================ determinism

DETERMINISM = textwrap.dedent("""
    import sys
    from pathlib import Path
    from bench.cli import main
    from splits import build_split, load_dataset
    from splits.prepared import prepare

    out, raw = Path(sys.argv[1]), Path(sys.argv[2])
    (out / "splits").mkdir(parents=True)
    dataset = load_dataset("ml-100k")
    for shift in ("iid", "popularity", "temporal", "exposure", "mixed"):
        split = build_split(dataset, shift, 0)
        for part, frame in split.parts.items():
            frame.to_csv(out / "splits" / f"{shift}.{part}.csv", index_label="interaction")
        (out / "splits" / f"{shift}.fingerprint").write_text(split.fingerprint)
    prepare("ml-10m", raw, out / "data")
    sys.exit(main(["run", "--profile", "smoke", "--methods", "mostpop,random,sft", "--shift", "temporal",
                   "--set", f"results_dir={out / 'results'}", "--set", f"cache_dir={out / 'cache'}"]))
""")


def test_same_seed_two_fresh_processes_give_byte_identical_splits_and_identical_metrics(tmp_path):
    raw = write_ml10m(tmp_path / "raw")
    outs = [tmp_path / f"process{i}" for i in (1, 2)]
    procs = [subprocess.Popen([sys.executable, "-c", DETERMINISM, str(out), str(raw)], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for out in outs]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    one, two = outs
    split_files = files(one / "splits")
    assert len(split_files) == 5 * 5 and split_files == files(two / "splits")       # byte-identical split files
    assert files(one / "data") == files(two / "data")                             # prepared data, byte for byte
    sft_one, sft_two = (next((o / "cache" / "sft").iterdir()) for o in outs)
    assert sft_one.name == sft_two.name
    assert (sft_one / "model.safetensors").read_bytes() == (sft_two / "model.safetensors").read_bytes()
    recs = record_results(one / "results")
    assert {r["method"] for r in recs.values()} == {"mostpop", "random", "sft"}
    assert recs == record_results(two / "results")                                # same metrics, ranks and keys
    # and the split seed matters: another seed is another split
    from splits import build_split, load_dataset
    dataset = load_dataset("ml-100k")
    assert build_split(dataset, "temporal", 1).fingerprint != (one / "splits" / "temporal.fingerprint").read_text()


# ================================================================ interruption and concurrent runners

GRID = textwrap.dedent("""
    import sys
    from bench.leaderboard import grids
    columns = {"temporal": grids.Column("ML-10M", "temporal"), "popularity": grids.Column("Yelp2018", "popularity"),
               "iid": grids.Column("ML-10M", "iid")}
    shifts, names = sys.argv[1].split(","), sys.argv[2].split(",")
    grids.TABLES["robust"] = grids.TableSpec("robust", "robustness grid", tuple(columns[s] for s in shifts),
                                             tuple(grids.Row(n, n.split("@")[0], overrides=tuple(n.split("@")[1:]))
                                                   for n in names))
    from bench.cli import main
    sys.exit(main(sys.argv[3:]))
""")


def grid_command(folder: Path, shifts: str, names: str, cache: Path | None = None, *args: str) -> list[str]:
    """`python -m bench leaderboard --profile smoke --tables robust ARGS` with a small table of our own; a name
    `method@key=value` is a row of that method with that override (a group of its own)."""
    return [sys.executable, "-c", GRID, shifts, names, "leaderboard", "--profile", "smoke", "--tables", "robust",
            "--results", str(folder / "results"), "--cache", str(cache or folder / "cache"), "--out",
            str(folder / "tables"), *args]


# every target ranked (k > the 1681 items): records compare full ranks, not "not in the top 20" for nearly all
FULL_RANKS = ("--set", "ranking.k=2000")


def tables(folder: Path) -> dict[str, bytes]:
    return {name: data for name, data in files(folder / "tables").items() if name != "README.md"}  # README: dates


def wait_for_a_record(proc: subprocess.Popen, results: Path, started: float, timeout: float = 180) -> float:
    """Seconds from `started` until `proc` has written its first record into `results` (fails if it ends first)."""
    while True:
        ended = proc.poll() is not None                          # polled first: a record written just before the
        if any(results.rglob("*.json")):                         # exit is still seen
            return time.perf_counter() - started
        assert not ended, f"the grid ended (status {proc.returncode}) before writing any record"
        assert time.perf_counter() - started < timeout, f"no record after {timeout}s"
        time.sleep(0.05)


def temporaries(folder: Path) -> list[str]:
    """What a writer removes once done: `.NAME.json.XXXX.tmp` records, `.NAME.XXXX` folders (tempfile.mkdtemp),
    `.write-probe-` files, lock graves; everything dot-named but the `.locks` folder and its `*.lock` files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or (p.name.startswith(".") and p.name != ".locks")
                  or (p.parent.name == ".locks" and not p.name.endswith(".lock")))


def test_grid_killed_at_a_random_point_then_restarted_equals_an_uninterrupted_one(tmp_path):
    shifts, names = "temporal,popularity", "mostpop,random,sft"
    start = time.perf_counter()
    with open(tmp_path / "ref.log", "w") as log:
        ref = subprocess.Popen(grid_command(tmp_path / "ref", shifts, names, None, *FULL_RANKS), cwd=ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=log)
        first = wait_for_a_record(ref, tmp_path / "ref" / "results", start)
        ref.wait(timeout=300)
    duration = time.perf_counter() - start
    assert ref.returncode == 0, (tmp_path / "ref.log").read_text()[-3000:]
    expected = record_results(tmp_path / "ref" / "results")
    assert len(expected) == 6

    # kill at a random point after the first record (then there is something to keep), before the grid would end
    delay = random.uniform(0, 0.75 * (duration - first))
    run = tmp_path / "run"
    start = time.perf_counter()
    proc = subprocess.Popen(grid_command(run, shifts, names, None, *FULL_RANKS), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        after = wait_for_a_record(proc, run / "results", start)
        where = f"killed {delay:.1f}s after the first record ({after:.1f}s) of a grid that took {duration:.1f}s"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, where             # died by the signal, not a normal exit
    finished = {p: p.read_bytes() for p in (run / "results").rglob("*.json")}
    assert finished, where
    for path, data in finished.items():
        json.loads(data)                                         # no partial record, ever
    # writers rename or remove their temporaries (only a kill inside write_record's few milliseconds leaves one)
    assert not temporaries(run / "results"), f"{where}: {temporaries(run / 'results')}"
    assert len(list((run / "results" / ".locks").glob("*.lock"))) <= 1, where   # the killed runner's group only

    again = subprocess.run(grid_command(run, shifts, names, None, *FULL_RANKS), cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, f"{where}\n{again.stderr[-3000:]}"
    assert f"{len(finished)} already finished" in again.stderr, where
    assert record_results(run / "results") == expected, where
    for path, data in finished.items():
        assert path.read_bytes() == data, f"{where}: {path} was lost or rewritten"
    assert tables(run) == tables(tmp_path / "ref") and tables(run), where
    assert not list((run / "results" / ".locks").glob("*.lock")), where
    assert not temporaries(run / "results"), where


def test_two_leaderboard_runners_on_one_folder_run_every_cell_once(tmp_path):
    """Two runners share one results folder and one cache. The grid is two groups of one SFT family (the second
    differs in a ranking setting only): while one runner holds the first group, the other runs the second at once
    (it has nothing else to do), so both need the same SFT model and tokenizer from the shared cache, training or
    saving them side by side or loading what the other saved. Their records must equal those of a single runner
    started beside them on folders of its own."""
    shifts, names = "temporal", "mostpop,random,sft,sft@ranking.batch_size=8"
    small = ("--set", "data.max_train_samples=64", "--set", "data.max_eval_samples=16", *FULL_RANKS)
    cache, single = tmp_path / "cache", tmp_path / "single"
    commands = [grid_command(tmp_path, shifts, names, cache, *small) for _ in range(2)]
    commands.append(grid_command(single, shifts, names, None, *small))
    procs = [subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for command in commands]
    logs = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        logs.append(err)
    ran = [int(line.split("] ran ")[1].split()[0]) for log in logs[:2] for line in log.splitlines()
           if "] ran " in line]
    assert sum(ran) == 4, logs[:2]                               # no cell trained twice, none left out
    records = list((tmp_path / "results").rglob("*.json"))
    assert len(records) == 4 and all(json.loads(p.read_text())["results"] for p in records)
    expected = record_results(single / "results")
    assert len(expected) == 4 and sorted(r["method"] for r in expected.values()) == ["mostpop", "random", "sft", "sft"]
    assert record_results(tmp_path / "results") == expected     # same keys, metrics, target ranks, SFT tags
    assert not temporaries(tmp_path / "results") and not temporaries(cache)
    assert not list((tmp_path / "results" / ".locks").glob("*.lock"))
    for rec in expected.values():                                # ranks that can tell one model from another
        assert len(set(rec["results"]["ood_test"]["target_ranks"])) > 1, rec["method"]
    sft_tags = {r["sft_tag"] for r in expected.values() if r["sft_tag"]}
    assert len(sft_tags) == 1                                   # one SFT model, shared by the two groups
    assert {p.name for p in (cache / "sft").iterdir()} == {p.name for p in (single / "cache" / "sft").iterdir()} \
        == sft_tags


# ================================================================ concurrent record writers

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from bench.results import write_record
    folder, writer, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for i in range(n):
        # every other record is shared by both writers (same path), the rest are this writer's own
        name = f"shared-{i}" if i % 2 == 0 else f"own{writer}-{i}"
        write_record(folder / "ds" / "shift" / f"{name}.json",
                     {"name": name, "writer": writer, "i": i, "payload": [writer * 1000 + i] * 500})
""")


def test_two_processes_writing_records_into_one_folder_lose_and_corrupt_nothing(tmp_path):
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(n)], cwd=ROOT, env=ENV,
                              stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    reads = 0
    while any(p.poll() is None for p in procs):                  # a reader meanwhile never sees a partial record
        for path in tmp_path.rglob("*.json"):
            try:
                rec = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            assert rec["payload"] == [rec["writer"] * 1000 + rec["i"]] * 500
            reads += 1
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    records = {p.name: json.loads(p.read_text()) for p in tmp_path.rglob("*.json")}
    expected = {f"shared-{i}.json" for i in range(0, n, 2)} | {f"own{w}-{i}.json" for w in (0, 1)
                                                                 for i in range(1, n, 2)}
    assert set(records) == expected
    for name, rec in records.items():
        assert rec["payload"] == [rec["writer"] * 1000 + rec["i"]] * 500 and f"{rec['name']}.json" == name
        assert name.startswith("shared") or rec["writer"] == int(name[3])
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".json"]  # no temporary left


# ================================================================ bad input: raw files

def prepare_cli(dataset: str, raw: Path, data: Path, capsys) -> tuple[int, str]:
    code = main(["data", "prepare", "--dataset", dataset, "--raw", str(raw), "--data-dir", str(data)])
    return code, capsys.readouterr().err


def assert_nothing_prepared(data: Path) -> None:
    assert not data.exists() or not [p for p in data.rglob("*") if p.is_file()]


def test_truncated_raw_files_name_file_and_line(tmp_path, capsys):
    ml = write_ml10m(tmp_path / "ml")
    ratings = ml / "ratings.dat"
    ratings.write_bytes(ratings.read_bytes()[:-7])               # the last line cut to "3::4::3.5"
    code, err = prepare_cli("ml-10m", ml, tmp_path / "d1", capsys)
    assert code == 2 and error_line(err).startswith(f"error: {ratings}:{len(ml10m_lines())}: expected 4 ")
    assert_nothing_prepared(tmp_path / "d1")
    yelp = write_yelp(tmp_path / "yelp")
    reviews = yelp / "yelp_academic_dataset_review.json"
    n_lines = len(reviews.read_text().splitlines())
    reviews.write_bytes(reviews.read_bytes()[:-30])
    code, err = prepare_cli("yelp2018", yelp, tmp_path / "d2", capsys)
    assert code == 2 and error_line(err).startswith(f"error: {reviews}:{n_lines}: not JSON")
    assert_nothing_prepared(tmp_path / "d2")


def test_wrong_encodings_name_file_and_line(tmp_path, capsys):
    yelp = write_yelp(tmp_path / "yelp")
    reviews = yelp / "yelp_academic_dataset_review.json"
    reviews.write_bytes(reviews.read_bytes().replace(b'"text": "..."', '"text": "café"'.encode("latin-1"), 1))
    code, err = prepare_cli("yelp2018", yelp, tmp_path / "d1", capsys)
    assert code == 2 and error_line(err).startswith(f"error: {reviews}:1: not UTF-8")
    assert_nothing_prepared(tmp_path / "d1")
    ml = write_ml10m(tmp_path / "ml16")
    (ml / "ratings.dat").write_bytes((ml / "ratings.dat").read_text().encode("utf-16"))
    code, err = prepare_cli("ml-10m", ml, tmp_path / "d2", capsys)
    assert code == 2 and error_line(err).startswith(f"error: {ml / 'ratings.dat'}:1: expected 4 '::'-separated fields")
    ml = write_ml10m(tmp_path / "ml1")
    (ml / "ratings.dat").write_bytes((ml / "ratings.dat").read_bytes().replace(b"1::2::", b"1::\xe9::", 1))
    code, err = prepare_cli("ml-10m", ml, tmp_path / "d3", capsys)
    assert code == 2 and error_line(err).startswith(f"error: {ml / 'ratings.dat'}:2: non-numeric field")
    assert_nothing_prepared(tmp_path / "d2")
    assert_nothing_prepared(tmp_path / "d3")


@pytest.mark.parametrize("dataset, bad, message", [
    ("ml-10m", "1::2::abc::978300760", "non-numeric"),
    ("ml-10m", "1::2::4.3::978300760", "half star"),             # off the 0.5-step scale
    ("ml-10m", "1::2::4::978300760::9", "expected 4"),
    ("yelp2018", "{not json", "not JSON"),
    ("yelp2018", '{"user_id": "u", "stars": 5}', "missing field"),
    ("yelp2018", '{"user_id": "u", "business_id": "b1", "stars": 5, "date": "2015/01/01"}', "bad stars/date"),
])
def test_malformed_raw_lines_through_data_prepare(tmp_path, capsys, dataset, bad, message):
    if dataset == "ml-10m":
        lines = ml10m_lines()
        lines.insert(2, bad)
        raw = write_ml10m(tmp_path / "raw", lines)
        where = f"{raw / 'ratings.dat'}:3: "
    else:
        raw = write_yelp(tmp_path / "raw", extra_review=bad)
        where = f"{raw / 'yelp_academic_dataset_review.json'}:5: "
    code, err = prepare_cli(dataset, raw, tmp_path / "data", capsys)
    line = error_line(err)
    assert code == 2 and line.startswith(f"error: {where}") and message in line
    assert_nothing_prepared(tmp_path / "data")


@pytest.mark.parametrize("dataset, names", [
    ("ml-10m", ("ratings.dat", "movies.dat")),
    ("yelp2018", ("yelp_academic_dataset_review.json", "yelp_academic_dataset_business.json")),
    ("book-crossing", ("BX-Book-Ratings.csv", "BX-Books.csv")),
])
@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_missing_raw_files_name_the_folder_and_the_files(tmp_path, capsys, dataset, names, folder):
    raw = tmp_path / folder
    if folder == "empty":
        raw.mkdir()
    code, err = prepare_cli(dataset, raw, tmp_path / "data", capsys)
    line = error_line(err)
    assert code == 2 and line.startswith(f"error: {raw}: no ") and all(name in line for name in names)
    assert_nothing_prepared(tmp_path / "data")


def test_unknown_raw_dataset_suggests_a_name(tmp_path, capsys):
    code, err = prepare_cli("ml-10k", write_ml10m(tmp_path / "raw"), tmp_path / "data", capsys)
    assert code == 2 and error_line(err).startswith("error: unknown raw dataset 'ml-10k'. Did you mean 'ml-10m'?")
    assert_nothing_prepared(tmp_path / "data")


@pytest.mark.parametrize("dataset, writer, file, content, message", [
    ("ml-10m", write_ml10m, "ml-10M100K/ratings.dat", b"", "no ratings read from"),
    ("ml-10m", write_ml10m, "ml-10M100K/movies.dat", b"", "no titles read from"),
    ("yelp2018", write_yelp, "yelp_academic_dataset_review.json", b"", "no ratings read from"),
    ("yelp2018", write_yelp, "yelp_academic_dataset_business.json", b"\n", "no titles read from"),
    ("book-crossing", write_bx, "BX-Books.csv", b"", "no titles read from"),
    ("book-crossing", write_bx, "BX-Book-Ratings.csv", None, "skipped lines"),  # UTF-16: every line skipped
])
def test_empty_or_unreadable_raw_files_prepare_nothing(tmp_path, capsys, dataset, writer, file, content, message):
    raw = writer(tmp_path / "raw")
    folder = raw if (raw / file).exists() else raw.parent
    path = folder / file
    path.write_bytes(path.read_bytes().decode("cp1252").encode("utf-16") if content is None else content)
    code, err = prepare_cli(dataset, folder, tmp_path / "data", capsys)
    line = error_line(err)
    assert code == 2 and line.startswith(f"error: {dataset}: ") and message in line and path.name in line
    assert_nothing_prepared(tmp_path / "data")


def run_args(tmp_path: Path, *args: str) -> list[str]:
    return ["run", "--profile", "smoke", "--set", f"results_dir={tmp_path / 'results'}", "--set",
            f"cache_dir={tmp_path / 'cache'}", *args]


def assert_no_record(tmp_path: Path) -> None:
    assert not [p for p in tmp_path.joinpath("results").rglob("*") if p.is_file()]


def test_dataset_not_prepared_names_the_prepare_command(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("BENCH_DATA_DIR", str(data))
    assert main(run_args(tmp_path, "--methods", "mostpop", "--dataset", "ml-10m")) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: dataset 'ml-10m' is not prepared in {data}")
    assert line.endswith("run: python -m bench data prepare --dataset ml-10m --raw PATH/ml-10M100K")
    assert_no_record(tmp_path)
    assert not data.exists()


def test_corrupt_prepared_dataset_is_refused_and_a_failed_prepare_keeps_the_last_good_one(tmp_path, capsys,
                                                                                          monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("BENCH_DATA_DIR", str(data))
    assert prepare_cli("ml-10m", write_ml10m(tmp_path / "raw"), data, capsys)[0] == 0
    npz = data / "ml-10m" / "interactions.npz"
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["rating"][0] = 1.0
    np.savez_compressed(npz, **arrays)                           # one rating changed, the manifest not
    assert main(run_args(tmp_path, "--methods", "mostpop", "--dataset", "ml-10m")) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {data / 'ml-10m'}: contents do not match the manifest's fingerprint")
    assert "python -m bench data prepare --dataset ml-10m" in line
    assert_no_record(tmp_path)
    before = files(data)
    bad = tmp_path / "bad" / "ml-10M100K"                        # a new preparation that fails half-way
    bad.mkdir(parents=True)
    (bad / "ratings.dat").write_text("1::2::5::10\n1::2::x::11\n")
    (bad / "movies.dat").write_text("2::M (1990)::Drama\n")
    code, err = prepare_cli("ml-10m", bad.parent, data, capsys)
    assert code == 2 and error_line(err).startswith(f"error: {bad / 'ratings.dat'}:2: ")
    assert files(data) == before                                 # the last preparation untouched, nothing beside it


def test_dataset_with_no_user_left_is_an_error(tmp_path, capsys):
    lines = [line for line in ml10m_lines() if line.startswith("2::")]  # user 2: 19 positives, below 20
    raw = write_ml10m(tmp_path / "raw", lines)
    code = main(run_args(tmp_path, "--methods", "mostpop", "--dataset", "ml-10m", "--set", f"data.raw_path={raw}"))
    line = error_line(capsys.readouterr().err)
    assert code == 2 and line.startswith("error: dataset 'ml-10m' has no positive interaction left") and ">= 20" in line
    assert_no_record(tmp_path)


def test_titles_differing_only_in_whitespace_are_made_unique(tmp_path, capsys):
    raw = write_ml10m(tmp_path / "raw")
    movies = raw / "movies.dat"
    movies.write_bytes(movies.read_bytes().replace(b"2::Movie 2 (1992)", b"2::Movie  1 (1991)"))
    from splits import load_dataset
    titles = load_dataset("ml-10m", raw_path=str(raw)).titles
    assert titles[1] == "Movie 1 (1991)" and titles[2] == "Movie  1 (1991) [2]"
    code = main(run_args(tmp_path, "--methods", "mostpop", "--dataset", "ml-10m", "--set", f"data.raw_path={raw}"))
    assert code == 0, capsys.readouterr().err[-2000:]


# ================================================================ bad input: command line

@pytest.mark.parametrize("args, message", [
    (["--profile", "smok"], "error: unknown profile 'smok'. Did you mean 'smoke'?"),
    (["--tables", "10"], "error: unknown table '10'"),
    (["--shard", "2/2"], "error: --shard '2/2': need 0 <= i < n"),
    (["--shard", "x"], "error: --shard 'x': expected i/n"),
    (["--seeds", "0,x"], "error: --seeds '0,x': expected comma-separated integers"),
    (["--seeds", ","], "error: --seeds is empty"),
])
def test_leaderboard_bad_names_exit_2(tmp_path, capsys, args, message):
    argv = ["leaderboard", "--profile", "smoke", "--tables", "6", "--results", str(tmp_path / "results"), "--out",
            str(tmp_path / "out"), *args]
    assert main(argv) == 2
    assert error_line(capsys.readouterr().err).startswith(message)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("assignment, named, message", [
    ("nosuch.key=1", "--set nosuch.key=1: ", "'nosuch' is neither a config section"),
    ("causaldop.beta=0.5", "--set causaldop.beta=0.5: ", "did you mean 'causaldpo'"),
    ("simpo.beta=abc", "--set simpo.beta: ", "expected float, got 'abc'"),  # simpo is not in table 1: was ignored
    ("dpo.gama=1", "--set dpo: ", "unknown hyperparameter 'gama'"),
    ("sft.epoch=1", "--set sft.epoch=1: ", "did you mean 'epochs'"),
    ("seed=one", "--set seed=one: ", "expected int, got 'one'"),
    ("seed", "--set 'seed': ", "expected key=value"),
])
def test_leaderboard_set_is_checked(tmp_path, capsys, assignment, named, message):
    argv = ["leaderboard", "--profile", "smoke", "--tables", "1", "--results", str(tmp_path / "results"), "--out",
            str(tmp_path / "out"), "--set", assignment]
    assert main(argv) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {named}") and message.lower() in line.lower()
    assert not any(tmp_path.iterdir())
    assert main(argv[:-2] + ["--set", "dpo.beta=0.2", "--dry-run"]) == 0     # a good one still passes


def test_nan_setting_is_refused(tmp_path, capsys):
    assert main(run_args(tmp_path, "--methods", "sft", "--set", "sft.learning_rate=.nan")) == 2
    assert error_line(capsys.readouterr().err) == \
        "error: --set sft.learning_rate=.nan: sft.learning_rate: expected a number, got NaN"
    assert main(run_args(tmp_path, "--methods", "dpo", "--set", "dpo.beta=.nan")) == 2
    assert error_line(capsys.readouterr().err) == "error: --set dpo.beta: expected a number, got NaN"
    assert not any(tmp_path.iterdir())


def test_empty_methods(tmp_path, capsys):
    assert main(run_args(tmp_path, "--methods", " , ")) == 2
    assert error_line(capsys.readouterr().err) == "error: --methods is empty"
    assert not any(tmp_path.iterdir())


def test_results_folder_not_writable(tmp_path, capsys):
    blocker = tmp_path / "file.txt"                              # tests run as root: a file in the path, not chmod
    blocker.write_text("not a folder")
    proc = bench(*run_args(tmp_path, "--methods", "mostpop,sft"), "--set", f"results_dir={blocker / 'results'}")
    line = error_line(proc.stderr)
    assert proc.returncode == 2 and line.startswith(f"error: results_dir '{blocker / 'results'}' is not a writable "
                                                    "folder")
    assert "sft: training" not in proc.stderr                    # refused before any training
    assert blocker.read_text() == "not a folder"
    assert main(["leaderboard", "--profile", "smoke", "--tables", "6", "--results", str(blocker / "results"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert error_line(err).startswith(f"error: --results '{blocker / 'results'}' is not a writable folder")
    assert "running" not in err
    assert not (tmp_path / "out").exists()


# ================================================================ bad input: runs, losses, caches

def test_k_larger_than_the_catalogue(tmp_path, capsys):
    assert main(run_args(tmp_path, "--methods", "mostpop,random", "--set", "ranking.k=5000")) == 0
    recs = {r["method"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "results").rglob("*.json")))}
    n_items = 1681                                               # ml-100k after the filters
    for rec in recs.values():
        part = rec["results"]["ood_test"]
        assert all(np.isfinite(list(part["metrics"].values())))
        assert all(0 <= r <= 5000 for r in part["target_ranks"])
    # every item is ranked, so every target is found: its rank is below the catalogue size
    assert max(recs["mostpop"]["results"]["ood_test"]["target_ranks"]) < n_items


def test_infinite_loss_stops_with_its_step_number():
    from methods.losses import mean_reduce
    from methods.train.config import PreferenceConfig
    from methods.train.preference_trainer import NonFiniteLoss, reference_logps, train_preference
    from tests.support import PAD, pairs, tiny_model

    model, data = tiny_model(), pairs(n=16, k=1)
    ref = reference_logps(model, data, PAD, "cpu")
    calls = []

    def loss(policy, reference):                                 # finite for two steps, then +inf
        calls.append(1)
        return -policy.chosen * (float("inf") if len(calls) >= 3 else 1.0)

    cfg = PreferenceConfig(epochs=1, learning_rate=1e-3, batch_size=4, grad_accum=1, warmup_ratio=0.0)
    with pytest.raises(NonFiniteLoss, match=r"non-finite preference loss \(inf\) at step 3"):
        train_preference(model, data, ref, loss, mean_reduce, 0.1, cfg, 0, "cpu", PAD)


def test_non_finite_loss_in_a_run_is_one_error_line(tmp_path):
    proc = bench(*run_args(tmp_path, "--methods", "sft", "--set", "sft.learning_rate=.inf"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(proc.stderr) == "error: non-finite SFT loss (nan) at step 2"  # a progress bar may close after
    assert not list(tmp_path.joinpath("results").rglob("*.json")) and not (tmp_path / "cache" / "sft").exists()


def test_catalogue_too_small_for_k_negatives_in_a_run(tmp_path, capsys):
    """Checked when the negatives are drawn, after the SFT model is trained (kept small here)."""
    argv = run_args(tmp_path, "--methods", "dpo", "--negatives", "5000", "--set", "data.max_train_samples=32",
                    "--set", "data.max_eval_samples=8")
    assert main(argv) == 2
    assert error_line(capsys.readouterr().err).startswith("error: a catalogue of 1681 items is too small for 5000 "
                                                          "negatives per sample")
    assert_no_record(tmp_path)


def test_corrupt_sft_and_tokenizer_cache_entries_are_rebuilt(tmp_path, capsys):
    argv = run_args(tmp_path, "--methods", "sft", "--set", "data.max_train_samples=64", "--set",
                    "data.max_eval_samples=16")

    def run() -> tuple[dict, str]:
        assert main(argv) == 0
        err = capsys.readouterr().err
        (rec,) = [json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")]
        return rec["results"]["ood_test"]["target_ranks"], err

    first, _ = run()
    (sft,) = (tmp_path / "cache" / "sft").iterdir()
    (tokenizer,) = (tmp_path / "cache" / "tokenizers").iterdir()
    weights = sft / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])             # truncated weights
    (tokenizer / "tokenizer.json").write_text("{not json")       # a broken tokenizer
    ranks, err = run()
    assert "ignoring the corrupt cache entry" in err and "sft: training" in err and ranks == first
    (sft / "sft_stats.json").write_text('{"seconds')             # broken stats beside good weights
    ranks, err = run()
    assert "ignoring the corrupt cache entry" in err and ranks == first
    ranks, err = run()
    assert "sft: cached" in err and "sft: training" not in err and ranks == first


def test_corrupt_record_is_rerun_and_replaced(tmp_path):
    cells = [GridCell("ml-100k", "temporal", m, 0) for m in ("dpo", "sft")]
    runner = GridRunner("tiny", tmp_path, run_fn=FakeRun(), log=lambda m: None)
    assert len(runner.run(group_cells(cells)).ran) == 2
    broken = sorted(tmp_path.rglob("dpo-*.json"))[0]
    broken.write_text(broken.read_text()[: 200])                 # a record cut short (written by hand, say)
    assert len(RecordIndex.load(tmp_path)) == 1                  # ignored, not trusted
    fake = FakeRun()
    summary = GridRunner("tiny", tmp_path, run_fn=fake, log=lambda m: None).run(group_cells(cells))
    assert fake.calls == [("ml-100k", "temporal", 0, ["dpo"])] and summary.done == 1
    assert json.loads(broken.read_text())["method"] == "dpo" and len(RecordIndex.load(tmp_path)) == 2


class _Entry:
    """Saves a one-file cache entry holding `text`."""

    def __init__(self, text: str):
        self.text = text

    def save_pretrained(self, folder):
        Path(folder, "tokenizer.json").write_text(self.text)


def _readable(path: Path) -> bool:
    return (path / "tokenizer.json").read_text() != "corrupt"


@pytest.mark.parametrize("existing,expected", [("theirs", "theirs"), ("corrupt", "ours")])
def test_cache_entry_is_kept_if_valid_and_swapped_out_if_corrupt(tmp_path, existing, expected):
    from methods.train.cache import save_atomically

    target = tmp_path / "tokenizers" / "abc"
    target.mkdir(parents=True)
    (target / "tokenizer.json").write_text(existing)
    save_atomically(_Entry("ours"), target, valid=_readable)
    assert (target / "tokenizer.json").read_text() == expected
    assert [p.name for p in target.parent.iterdir()] == ["abc"]  # no temporary copy or old entry left


def test_cache_entry_saved_by_another_process_meanwhile_is_kept(tmp_path, monkeypatch):
    """We swap a corrupt entry out; before our rename another process installs its good copy: theirs stays, and
    the entry is never deleted in place (a reader loading it would fail: seen with two grid runners)."""
    import shutil

    from methods.train.cache import save_atomically

    target = tmp_path / "tokenizers" / "abc"
    target.mkdir(parents=True)
    (target / "tokenizer.json").write_text("corrupt")
    real_rename = os.rename

    def rename_then_another_process_wins(src, dst):
        real_rename(src, dst)
        if Path(src) == target:  # we just moved the corrupt entry away
            target.mkdir()
            (target / "tokenizer.json").write_text("theirs")

    real_rmtree = shutil.rmtree

    def rmtree_never_the_entry(path, *args, **kwargs):
        assert Path(path) != target, "the cache entry was deleted in place"
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename_then_another_process_wins)
    monkeypatch.setattr(shutil, "rmtree", rmtree_never_the_entry)
    save_atomically(_Entry("ours"), target, valid=_readable)
    assert (target / "tokenizer.json").read_text() == "theirs"
    assert [p.name for p in target.parent.iterdir()] == ["abc"]  # our copy and the corrupt entry are gone


def test_unreadable_lock_file(tmp_path):
    path = tmp_path / "group.lock"
    path.write_text('{"host": "h", "pi')                         # a runner killed while writing its lock
    assert not GroupLock(path).acquire()                         # fresh: another runner may be writing it now
    old = time.time() - 120
    os.utime(path, (old, old))
    lock = GroupLock(path)
    assert lock.acquire() and json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def test_records_name_the_commit_of_the_code_they_ran(tmp_path, monkeypatch):
    """The commit is read when the code is imported (a grid outlives commits made meanwhile), with a dirty flag
    for edits not committed; a copy of the code outside any checkout records None for both."""
    import shutil

    from bench import results

    monkeypatch.setattr(results, "_git", lambda *args: "0" * 40)  # the checkout moves on after the import
    env = results.environment("cpu")
    assert env["git_commit"] == results.GIT_COMMIT and env["git_dirty"] == results.GIT_DIRTY
    assert env["git_commit"] != "0" * 40
    if results.GIT_COMMIT is not None:
        assert len(results.GIT_COMMIT) == 40 and isinstance(results.GIT_DIRTY, bool)
    copy = tmp_path / "bench"
    shutil.copytree(Path(results.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", "import bench.results as r; print(r.GIT_COMMIT, r.GIT_DIRTY)"],
                         cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.stdout.split() == ["None", "None"], out.stderr


def test_cpu_sft_cache_is_keyed_by_the_thread_count(tmp_path):
    """A model trained with 2 threads differs in its last bits from one trained with 1: a run must not reuse it."""
    import torch

    from bench.config import load_profile
    from bench.pipeline import PreparedCell

    cfg = load_profile("smoke")
    cfg.cache_dir = str(tmp_path)
    before = torch.get_num_threads()
    try:
        tags = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            tags.append(PreparedCell(cfg, lambda line: None).sft_tag)
    finally:
        torch.set_num_threads(before)
    assert tags[0] == tags[2] != tags[1]
