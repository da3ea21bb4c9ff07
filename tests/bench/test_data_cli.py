"""`python -m bench data prepare|stats|download` (bench.data_cli, splits.prepared, splits.download)."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from functools import partial

import numpy as np
import pytest

from bench.cli import main
from splits import load_dataset
from splits.download import ChecksumError, download
from splits.prepared import NotPreparedError, prepare
from tests.support import write_bx, write_ml10m, write_yelp


def test_prepare_then_load(tmp_path, capsys):
    raw = write_ml10m(tmp_path / "raw")
    data = tmp_path / "data"
    assert main(["data", "prepare", "--dataset", "ml-10m", "--raw", str(raw), "--data-dir", str(data)]) == 0
    assert "prepared ml-10m" in capsys.readouterr().out
    folder = data / "ml-10m"
    assert sorted(p.name for p in data.iterdir()) == ["ml-10m"]  # no temporary left
    assert sorted(p.name for p in folder.iterdir()) == ["interactions.npz", "manifest.json", "titles.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"interactions": 71, "users": 3, "items": 22, "titles": 22}
    assert set(manifest["raw_files"]) == {"ratings.dat", "movies.dat"}
    cached = load_dataset("ml-10m", data_dir=str(data))
    direct = load_dataset("ml-10m", raw_path=str(raw))
    assert cached.info["fingerprint"] == direct.info["fingerprint"]
    assert cached.titles == direct.titles
    assert cached.interactions.equals(direct.interactions)
    # the pipeline's data.raw_path may name the prepared folder itself
    assert load_dataset("ml-10m", raw_path=str(folder)).info["fingerprint"] == direct.info["fingerprint"]
    assert load_dataset("ml-10m", data_dir=str(data), min_user_positives=1).info["n_users"] == 3


@pytest.mark.parametrize("name, writer", [("yelp2018", write_yelp), ("book-crossing", write_bx)])
def test_prepare_other_datasets(tmp_path, name, writer):
    raw = writer(tmp_path / "raw")
    prepare(name, raw, tmp_path / "data")
    cached, direct = load_dataset(name, data_dir=tmp_path / "data"), load_dataset(name, raw_path=str(raw))
    assert cached.info["fingerprint"] == direct.info["fingerprint"] and cached.titles == direct.titles
    assert cached.info.get("skipped_lines") == direct.info.get("skipped_lines")


def test_missing_preparation_names_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    with pytest.raises(NotPreparedError, match=r"run: python -m bench data prepare --dataset book-crossing --raw "
                                                r"PATH/BX-CSV-Dump --data-dir .*nowhere"):
        load_dataset("book-crossing", data_dir=str(tmp_path / "nowhere"))
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(NotPreparedError, match="not prepared in .*env"):
        load_dataset("ml-10m")


def test_failed_prepare_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    good = write_ml10m(tmp_path / "good")
    prepare("ml-10m", good, data)
    before = (data / "ml-10m" / "manifest.json").read_text()
    bad = tmp_path / "bad" / "ml-10M100K"
    bad.mkdir(parents=True)
    (bad / "ratings.dat").write_text("1::2::5::10\n1::2::x::11\n")
    (bad / "movies.dat").write_text("2::M (1990)::Drama\n")
    with pytest.raises(ValueError, match=r"ratings\.dat:2:"):
        prepare("ml-10m", bad, data)
    assert sorted(p.name for p in data.iterdir()) == ["ml-10m"]
    assert (data / "ml-10m" / "manifest.json").read_text() == before  # earlier preparation untouched
    # and the CLI reports it as one error line
    assert main(["data", "prepare", "--dataset", "ml-10m", "--raw", str(bad.parent), "--data-dir", str(data)]) == 2


def test_prepare_replaces_and_detects_corruption(tmp_path):
    data = tmp_path / "data"
    prepare("ml-10m", write_ml10m(tmp_path / "raw"), data)
    prepare("ml-10m", tmp_path / "raw", data)  # again: replaced atomically
    assert sorted(p.name for p in data.iterdir()) == ["ml-10m"]
    npz = data / "ml-10m" / "interactions.npz"
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["rating"][0] = 1.0
    np.savez_compressed(npz, **arrays)
    with pytest.raises(ValueError, match="fingerprint"):
        load_dataset("ml-10m", data_dir=str(data))


def test_cli_errors(tmp_path, capsys):
    assert main(["data", "prepare", "--dataset", "ml-10k", "--raw", str(tmp_path)]) == 2
    assert "ml-10m" in capsys.readouterr().err  # unknown name lists the choices
    assert main(["data", "prepare", "--dataset", "yelp2018", "--raw", str(tmp_path)]) == 2
    assert "yelp_academic_dataset_review.json" in capsys.readouterr().err


def test_stats_table(tmp_path, capsys):
    data = tmp_path / "data"
    prepare("book-crossing", write_bx(tmp_path / "bx"), data)
    assert main(["data", "stats", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in
            ("ml-100k", "ml-10m", "yelp2018", "book-crossing")}
    assert set(rows) == {"ml-100k", "ml-10m", "yelp2018", "book-crossing"}
    assert "703" in rows["ml-100k"] and "93,238" in rows["ml-100k"] and "52,244" in rows["ml-100k"]
    assert "not prepared" in rows["ml-10m"] and "71,567" in rows["ml-10m"]  # the paper's figures still shown
    assert "not prepared" in rows["yelp2018"] and "31,668" in rows["yelp2018"]
    assert rows["book-crossing"].split()[1:3] == ["rating", ">="]
    assert " 48 " in rows["book-crossing"] and " 23 " in rows["book-crossing"] and " 20 " in rows["book-crossing"]


# ---------------------------------------------------------------- download from a local server
@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-10M100K/ratings.dat", "1::1::5::10\n")
        z.writestr("ml-10M100K/movies.dat", "1::Toy Story (1995)::Animation\n")
    (root / "ml-10m.zip").write_bytes(buf.getvalue())
    (root / "evil.zip").write_bytes(_zip({"../escape.txt": "x"}))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.sha256(buf.getvalue()).hexdigest()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buf.getvalue()


def test_download_verifies_and_extracts(server, tmp_path, capsys):
    base, digest = server
    dest = tmp_path / "raw"
    assert main(["data", "download", "ml-10m", "--dest", str(dest), "--url", f"{base}/ml-10m.zip",
                 "--sha256", digest, "--timeout", "5"]) == 0
    assert f"sha256 {digest} verified" in capsys.readouterr().out
    folder = dest / "ml-10m"
    assert sorted(p.name for p in dest.iterdir()) == ["ml-10m"]
    assert (folder / "SHA256").read_text().startswith(digest)
    assert load_dataset("ml-10m", raw_path=str(folder), min_user_positives=1).titles == {1: "Toy Story (1995)"}
    # already there: refused, untouched
    assert main(["data", "download", "ml-10m", "--dest", str(dest), "--url", f"{base}/ml-10m.zip"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_download_without_known_checksum_prints_it(server, tmp_path):
    base, digest = server
    messages = []
    download("ml-10m", tmp_path / "raw", url=f"{base}/ml-10m.zip", timeout=5, log=messages.append)
    assert any(digest in m and "no known checksum" in m for m in messages)
    assert (tmp_path / "raw" / "ml-10m" / "SHA256").read_text().split()[0] == digest


def test_download_checksum_mismatch_leaves_nothing(server, tmp_path, monkeypatch, capsys):
    base, _ = server
    dest = tmp_path / "raw"
    with pytest.raises(ChecksumError, match="expected 0000"):
        download("ml-10m", dest, url=f"{base}/ml-10m.zip", sha256="0" * 64, timeout=5, log=lambda m: None)
    assert list(dest.iterdir()) == []
    # the same through the checksum table and the CLI
    import splits.download as dl
    monkeypatch.setitem(dl.SOURCES, "ml-10m", dl.Source(f"{base}/ml-10m.zip", "f" * 64))
    assert main(["data", "download", "ml-10m", "--dest", str(dest), "--timeout", "5"]) == 2
    assert "expected ffff" in capsys.readouterr().err
    assert list(dest.iterdir()) == []


def test_download_errors(server, tmp_path):
    base, _ = server
    with pytest.raises(ValueError, match="outside"):
        download("ml-10m", tmp_path / "raw", url=f"{base}/evil.zip", timeout=5, log=lambda m: None)
    assert list((tmp_path / "raw").iterdir()) == [] and not (tmp_path / "escape.txt").exists()
    with pytest.raises(OSError):  # 404
        download("ml-10m", tmp_path / "raw", url=f"{base}/missing.zip", timeout=5, log=lambda m: None)
    assert list((tmp_path / "raw").iterdir()) == []
    with pytest.raises(ValueError, match="yelp.com/dataset"):
        download("yelp2018", tmp_path / "raw", log=lambda m: None)
    assert main(["data", "download", "movielens"]) == 2


def test_ls_lists_the_new_datasets(capsys):
    assert main(["ls"]) == 0
    assert "datasets:   book-crossing, ml-100k, ml-10m, yelp2018" in capsys.readouterr().out


def test_prepared_folder_is_readable(tmp_path):
    folder = prepare("book-crossing", write_bx(tmp_path / "bx"), tmp_path / "data")
    assert folder.stat().st_mode & 0o755 == 0o755
