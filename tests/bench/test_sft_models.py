"""Finding a committed SFT model (`bench.sft_models`): by its tag, or by its identity when another machine trained
it; never one trained under another identity, never a partial entry."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.sft_models import SHIPPED_LEADERBOARDS, find_prebuilt, portable, prebuilt_folder, read_identity, write_identity

IDENTITY = {"split": "abc", "seed": 0, "sft": {"epochs": 1}, "cpu_threads": 2, "autocast": "bf16"}


def entry(folder, name, identity=None, complete=True):
    path = folder / name
    path.mkdir(parents=True)
    if identity is not None:
        write_identity(path, identity)
    if complete:
        (path / "complete").touch()
    return path


def is_complete(path):
    return (path / "complete").exists()


def test_the_exact_tag_is_found_first(tmp_path):
    entry(tmp_path, "aaaa", {**IDENTITY, "cpu_threads": 8})
    exact = entry(tmp_path, "tag0")
    assert find_prebuilt(tmp_path, "tag0", IDENTITY, is_complete) == (exact, "the same identity")


def test_another_machines_model_of_the_same_identity_is_found_and_says_so(tmp_path):
    entry(tmp_path, "aaaa", {**IDENTITY, "seed": 1})
    theirs = entry(tmp_path, "bbbb", {**IDENTITY, "cpu_threads": 16, "autocast": "fp32"})
    found, why = find_prebuilt(tmp_path, "tag0", IDENTITY, is_complete)
    assert found == theirs
    assert why == "trained on another machine: cpu_threads 16 (here 2), autocast fp32 (here bf16)"


def test_a_gpu_trained_model_without_a_thread_count_is_found_on_a_cpu(tmp_path):
    gpu = {k: v for k, v in IDENTITY.items() if k != "cpu_threads"}
    theirs = entry(tmp_path, "cccc", gpu)
    assert find_prebuilt(tmp_path, "tag0", IDENTITY, is_complete)[0] == theirs


@pytest.mark.parametrize("change", [{"seed": 1}, {"sft": {"epochs": 2}}, {"split": "abd"}])
def test_a_model_of_another_identity_is_not_used(tmp_path, change):
    entry(tmp_path, "aaaa", {**IDENTITY, **change})
    found, why = find_prebuilt(tmp_path, "tag0", IDENTITY, is_complete)
    assert found is None and "none of its 1 models" in why


def test_partial_entries_and_entries_without_an_identity_are_skipped(tmp_path):
    entry(tmp_path, "tag0", complete=False)
    entry(tmp_path, "aaaa", {**IDENTITY, "cpu_threads": 4}, complete=False)
    entry(tmp_path, "bbbb")
    assert find_prebuilt(tmp_path, "tag0", IDENTITY, is_complete)[0] is None


def test_a_missing_folder_is_an_error_naming_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="sft.prebuilt_dir=.*nowhere"):
        find_prebuilt(tmp_path / "nowhere", "tag0", IDENTITY, is_complete)


def test_an_identity_is_written_once_and_read_back(tmp_path):
    path = entry(tmp_path, "aaaa", IDENTITY)
    write_identity(path, {**IDENTITY, "seed": 5})
    assert read_identity(path) == IDENTITY and portable(read_identity(path)) == {
        "split": "abc", "seed": 0, "sft": {"epochs": 1}}
    assert read_identity(tmp_path / "missing") is None


def test_a_leaderboards_path_resolves_inside_the_installed_package_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert prebuilt_folder("leaderboards/tiny") == SHIPPED_LEADERBOARDS / "tiny"
    (tmp_path / "leaderboards" / "tiny").mkdir(parents=True)  # a folder here wins
    assert prebuilt_folder("leaderboards/tiny") == Path("leaderboards/tiny")
    assert prebuilt_folder("elsewhere/tiny") == Path("elsewhere/tiny")  # only leaderboards/ paths are shipped
    assert prebuilt_folder("leaderboards/nowhere") == Path("leaderboards/nowhere")  # missing: find_prebuilt says so
