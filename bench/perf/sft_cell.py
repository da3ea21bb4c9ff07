"""The trained cell a ranking benchmark measures: a profile's SFT model (trained and cached if missing; `--set` picks
the settings of another cached one), the cell's test prompts of one part and their users' consumed items."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from bench.config import apply_overrides, load_profile
from bench.pipeline import PreparedCell


def add_cell_arguments(parser: argparse.ArgumentParser, profile: str, part: str, prompts: int) -> None:
    parser.add_argument("--profile", default=profile)
    parser.add_argument("--shift", default="temporal")
    parser.add_argument("--part", default=part)
    parser.add_argument("--prompts", type=int, default=prompts, help="test prompts measured")
    parser.add_argument("--cache", help="SFT/tokenizer cache folder (default: the profile's cache_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="the run settings of the SFT model to measure (as `bench run --set`)")


@dataclass
class SFTCell:
    cell: PreparedCell
    model: object  # the cell's SFT model, in eval mode
    prompts: list[list[int]]  # the part's first `--prompts` prompts
    consumed: list[np.ndarray] | None  # their users' consumed items (catalogue positions), or None


def load_cell(args: argparse.Namespace) -> PreparedCell:
    """The cell the arguments name (its SFT model not yet trained or loaded)."""
    cfg = load_profile(args.profile)
    apply_overrides(cfg, [f"data.shift={args.shift}", *args.set] + ([f"cache_dir={args.cache}"] if args.cache else []),
                    [])
    return PreparedCell(cfg, lambda line: print(f"[cell] {line}"))


def sft_cell(args: argparse.Namespace) -> SFTCell:
    cell = load_cell(args)
    cell.ensure_sft()
    prompts = cell.eval_prompts[args.part][: args.prompts]
    consumed = cell.consumed(cell.eval_parts[args.part])
    return SFTCell(cell, cell.sft_model().eval(), prompts, consumed[: len(prompts)] if consumed is not None else None)
