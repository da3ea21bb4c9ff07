"""Dataset formats are one registration each (`splits.formats.FORMATS`): a format registered by an outside module
(`tests/splits/tsv_format.py`) prepares, loads and names a bad row like the built-in ones, through `prepare_custom`
and through `python -m bench data prepare --include MODULE --format NAME`."""
from __future__ import annotations

import importlib
import sys

import pytest

from bench import plugins
from bench.cli import main
from splits import load_dataset
from splits.custom import prepare_custom
from splits.formats import FORMATS

MODULE = "tests.splits.tsv_format"
TSV = "uid\tiid\tstars\twhen\tname\nalice\tm1\t5\t100\tOne\nbob\tm2\t4\t200\tTwo\nalice\tm2\t2\t300\tTwo\n"
COLUMNS = "user=uid,item=iid,rating=stars,timestamp=when,title=name"


@pytest.fixture
def registry(monkeypatch):
    """FORMATS as the harness registers it, and the tsv module not imported yet; both restored afterwards."""
    monkeypatch.setattr(FORMATS, "_items", dict(FORMATS._items))
    monkeypatch.delenv(plugins.ENV, raising=False)
    sys.modules.pop(MODULE, None)
    yield FORMATS
    sys.modules.pop(MODULE, None)


def test_a_registered_format_prepares_loads_and_names_bad_rows(registry, tmp_path):
    assert "tsv" not in registry
    importlib.import_module(MODULE)
    raw = tmp_path / "r.tsv"
    raw.write_text(TSV)
    prepare_custom("mine", raw, "tsv", COLUMNS, positive_threshold=4, min_user_positives=1, root=tmp_path / "data")
    ds = load_dataset("mine", data_dir=tmp_path / "data")
    assert ds.titles == {1: "One", 2: "Two"} and ds.info["custom"]["format"] == "tsv"
    assert ds.interactions["timestamp"].tolist() == [100, 300, 200]  # sorted per user
    assert ds.interactions["positive"].tolist() == [True, False, True]
    raw.write_text(TSV.replace("bob\tm2\t4", "bob\tm2\tfour"))
    with pytest.raises(ValueError, match=r"r\.tsv:3: rating 'four' \(column 'stars'\) is not a number"):
        prepare_custom("mine2", raw, "tsv", COLUMNS, positive_threshold=4, root=tmp_path / "data")


def test_data_prepare_includes_the_module_that_registers_a_format(registry, tmp_path, capsys):
    raw = tmp_path / "r.tsv"
    raw.write_text(TSV)
    argv = ["data", "prepare", "--include", MODULE, "--dataset", "mine", "--format", "tsv", "--raw", str(raw),
            "--columns", COLUMNS, "--positive-threshold", "4", "--min-user-positives", "1",
            "--data-dir", str(tmp_path / "data")]
    assert main(argv) == 0
    assert "prepared mine" in capsys.readouterr().out
    assert load_dataset("mine", data_dir=tmp_path / "data").info["n_interactions"] == 3
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--include", MODULE, "--help"])
    assert "tsv (tab-separated, a header row)" in " ".join(capsys.readouterr().out.split())
    assert main(argv[:7] + ["tsb"] + argv[8:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset format 'tsb'. Did you mean 'tsv'?") and err.count("\n") == 1
    raw.write_text(TSV.replace("alice\tm2\t2", "alice\tm2\t"))
    assert main(argv) == 2
    assert f"error: {raw}:4: rating '' (column 'stars') is not a number" in capsys.readouterr().err
