"""Where a cell's SFT model comes from: its own cache entry (`<cache_dir>/sft/<tag>`), or a finished model committed
elsewhere (`sft.prebuilt_dir`, e.g. a leaderboard's), found even when it was trained on another machine.

A model's tag hashes everything that shaped it, the machine included: the CPU thread count and the autocast that
`auto` resolved to change the trained weights' last bits, so this machine's own training is another model with
another tag. A committed model is a fixed artefact, though: a cell whose identity equals the committed one's in
everything but those machine fields ranks and aligns from it, records its tag (the model it really used) and says
so. Each entry keeps the identity it was trained under (`sft_identity.json`) for that comparison.
"""
from __future__ import annotations

import json
from pathlib import Path

from leaderboards import HERE as SHIPPED_LEADERBOARDS

IDENTITY_FILE = "sft_identity.json"
MACHINE_KEYS = ("cpu_threads", "autocast")  # how this machine trained a model, not which model it is


def prebuilt_folder(option: str) -> Path:
    """The folder `sft.prebuilt_dir` names: as given (absolute, or relative to the working directory), else, for a
    relative `leaderboards/...` path, that folder inside the installed package (a wheel ships the leaderboards'
    committed SFT models), so a profile's `leaderboards/small/sft` works in a checkout and after `pip install`."""
    path = Path(option)
    if path.is_absolute() or path.is_dir() or path.parts[:1] != ("leaderboards",):
        return path
    shipped = SHIPPED_LEADERBOARDS.joinpath(*path.parts[1:])
    return shipped if shipped.is_dir() else path


def portable(identity: dict) -> dict:
    """`identity` without the fields that describe the training machine."""
    return {k: v for k, v in identity.items() if k not in MACHINE_KEYS}


def write_identity(entry: Path, identity: dict) -> None:
    """Keep the identity an SFT entry was trained under beside it (once; an entry is never retagged)."""
    path = entry / IDENTITY_FILE
    if entry.is_dir() and not path.exists():
        path.write_text(json.dumps(identity, sort_keys=True, indent=1, default=str) + "\n")


def read_identity(entry: Path) -> dict | None:
    try:
        return json.loads((entry / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None


def find_prebuilt(folder: Path, tag: str, identity: dict, is_complete) -> tuple[Path | None, str]:
    """The committed model for a cell whose SFT model is `tag` with `identity`: `folder/tag` itself, else the one
    entry of `folder` trained under the same identity on another machine (the first by name when several were).
    Returns (entry, what the log says) or (None, why none): `is_complete(entry)` rejects a partial entry."""
    if not folder.is_dir():
        raise FileNotFoundError(f"sft.prebuilt_dir={folder}: no such folder")
    exact = folder / tag
    if exact.is_dir() and is_complete(exact):
        return exact, "the same identity"
    wanted = json.loads(json.dumps(portable(identity), default=str))  # as the file holds it
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        theirs = read_identity(entry)
        if theirs is not None and portable(theirs) == wanted and is_complete(entry):
            machine = ", ".join(f"{k} {theirs.get(k, '-')} (here {identity.get(k, '-')})" for k in MACHINE_KEYS)
            return entry, f"trained on another machine: {machine}"
    return None, f"none of its {sum(p.is_dir() for p in folder.iterdir())} models has this cell's identity"
