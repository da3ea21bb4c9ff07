"""The data the commands read at run time, shipped inside the installed package: the paper's published numbers
(`paper/*.csv`, read by `compare` and the leaderboard tables) and each profile's committed calibration
(`<profile>/calibration.json`, read by `bench plan`) and finished SFT models (`<profile>/sft/<tag>/`, which a
profile's `sft.prebuilt_dir` names). The regenerated tables and their records stay in the
repository only: pass `--results` to point at records.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPER_DIR = HERE / "paper"


def committed_calibration(profile: str) -> Path | None:
    """The calibration committed for `profile` (`leaderboards/<profile>/calibration.json`), or None if it has none."""
    path = HERE / profile / "calibration.json"
    return path if path.is_file() else None
