"""Fetch a dataset's official archive, only when asked: ``python -m bench data download NAME [--dest DIR] [--url URL]
[--sha256 HEX]``.

The archive is streamed (urllib) to a temporary file in ``DEST``, its sha256 is checked against ``--sha256`` or the
`SOURCES` table, and it is extracted (zip or tar, refusing members outside the folder) into a temporary folder that
is renamed to ``DEST/NAME`` at the end; on a mismatch or any error nothing is left behind. We do not know the
official sha256 of any of these archives (GroupLens publishes an md5, the others nothing), so the table holds
``None``: the command then prints the digest it got and stores it in ``DEST/NAME/SHA256`` so that later downloads
can be checked with ``--sha256``. Yelp's dataset needs its terms accepted on yelp.com, so it has no URL here:
download it by hand (or pass ``--url``) and run ``data prepare`` on the extracted folder.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    url: str | None
    sha256: str | None
    note: str = ""


SOURCES: dict[str, Source] = {
    "ml-10m": Source("https://files.grouplens.org/datasets/movielens/ml-10m.zip", None,
                     "extracts to ml-10M100K/ (ratings.dat, movies.dat)"),
    "book-crossing": Source("http://www2.informatik.uni-freiburg.de/~cziegler/BX/BX-CSV-Dump.zip", None,
                            "the original host may be offline; mirrors can be given with --url"),
    "yelp2018": Source(None, None, "accept the terms at https://www.yelp.com/dataset, download and extract the JSON "
                                   "archive, then run `python -m bench data prepare --dataset yelp2018 --raw DIR`"),
}


class ChecksumError(ValueError):
    pass


def _fetch(url: str, dest: Path, timeout: float) -> str:
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        while block := response.read(1 << 20):
            h.update(block)
            out.write(block)
    return h.hexdigest()


def _extract(archive: Path, folder: Path) -> None:
    root = folder.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise ValueError(f"{archive}: member {member!r} would extract outside {folder}")
            z.extractall(folder)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(folder, filter="data")
    else:
        raise ValueError(f"{archive}: neither a zip nor a tar archive")


def download(name: str, dest: str | os.PathLike = "runs/raw", url: str | None = None, sha256: str | None = None,
             timeout: float = 60.0, log=print) -> Path:
    """Download, verify and extract the archive of ``name`` into ``dest/name``; returns that folder."""
    if name not in SOURCES:
        raise ValueError(f"no download source for dataset {name!r}; known: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    url = url or source.url
    if url is None:
        raise ValueError(f"{name}: no public download URL: {source.note}")
    expected = (sha256 or source.sha256 or "").lower() or None
    dest = Path(dest)
    target = dest / name
    if target.exists():
        raise FileExistsError(f"{target} already exists; remove it to download again")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.download-", dir=dest))
    try:
        archive = tmp / "archive"
        log(f"downloading {url}")
        digest = _fetch(url, archive, timeout)
        if expected is not None and digest != expected:
            raise ChecksumError(f"{name}: sha256 of {url} is {digest}, expected {expected}; nothing kept")
        if expected is None:
            log(f"sha256 {digest} (no known checksum to verify against; stored in {target / 'SHA256'})")
        else:
            log(f"sha256 {digest} verified")
        out = tmp / name
        out.mkdir()
        _extract(archive, out)
        (out / "SHA256").write_text(f"{digest}  {url}\n")
        os.chmod(out, 0o755)
        os.rename(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"extracted to {target}; {source.note}")
    return target
