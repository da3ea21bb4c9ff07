"""The planner against the paper's Table 6 (seconds per epoch of preference training on Book-Crossing, 8 x A800:
DPO 2,482 s, CausalDPO 2,971 s): `python -m bench.planner.table6 [--mfu U] [--cache DIR]`.

The planner's FLOPs price of one epoch is ``pairs x (1 + K) sequences x tokens per sequence x FLOPs per token /
(GPUs x peak x utilisation)``, FLOPs per token 6N trained (4N with LoRA) + 2N with gradient checkpointing, + 2N
when the reference model's forward runs on the fly every epoch (the planner counts it once per pair set, cached).
The pairs and tokens are the paper profile's Book-Crossing exposure cell (`bench.planner.grid_work`: the prepared
data, or a stand-in extrapolated to the release when it is not prepared). The planner prices CausalDPO's epoch as
DPO's: its regularizer adds no FLOPs it counts (measured: 0.96 of DPO's step on one H200).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.planner.prices import A800_PEAK_TFLOPS, default_utilisation, training_flops_per_token

TABLE6_SECONDS = {"dpo": 2482.0, "causaldpo": 2971.0}   # the paper's Table 6 (Book-Crossing, 8 x A800)
PAPER_GPUS = 8


def epoch_seconds(pairs: int, negatives: int, tokens_per_sequence: float, params: float, lora: bool,
                  checkpointing: bool, gpus: int, peak_tflops: float, utilisation: float,
                  reference_on_the_fly: bool = False) -> float:
    """Seconds of one preference epoch by the planner's FLOPs formula (see the module's docstring)."""
    per_token = training_flops_per_token(params, lora, checkpointing) + (2 * params if reference_on_the_fly else 0)
    flops = pairs * (1 + negatives) * tokens_per_sequence * per_token
    return flops / (gpus * peak_tflops * 1e12 * utilisation)


def table6_rows(pairs: int, negatives: int, tokens_per_sequence: float, params: float,
                utilisation: float) -> list[tuple[str, float]]:
    """Predicted seconds per epoch on 8 x A800 under the assumptions that separate the planner from the paper."""
    rows = []
    for label, lora, reference in (("LoRA, reference cached (the suite's recipe)", True, False),
                                   ("LoRA, reference on the fly", True, True),
                                   ("full fine-tuning, reference on the fly", False, True)):
        rows.append((label, epoch_seconds(pairs, negatives, tokens_per_sequence, params, lora, True, PAPER_GPUS,
                                          A800_PEAK_TFLOPS, utilisation, reference)))
    return rows


def main(argv: list[str] | None = None) -> int:
    from bench.planner.command import KNOWN_PARAMETERS
    from bench.planner.grid_work import grid_work

    p = argparse.ArgumentParser(prog="python -m bench.planner.table6", description=__doc__.splitlines()[0])
    p.add_argument("--mfu", type=float, default=default_utilisation(), help="utilisation (default: the H200 check's)")
    p.add_argument("--cache", default="runs/cache", help="cache folder (tokenizers)")
    args = p.parse_args(argv)
    (group,) = grid_work("paper", ["table6"], [0], [], Path(args.cache), log=lambda m: None)
    size = group.size
    pref = size.size.preference
    pairs = min(size.size.train_samples, pref.max_pairs or size.size.train_samples)
    tokens = size.prompt_tokens + size.title_tokens
    params = KNOWN_PARAMETERS[size.backbone]
    print(f"{size.standin or 'book-crossing: prepared data'}")
    print(f"one epoch: {pairs:,} pairs x {1 + pref.negatives} sequences x {tokens:.1f} tokens; N = {params:.3g}; "
          f"8 x A800 at {A800_PEAK_TFLOPS:g} TFLOP/s peak x {args.mfu:.3f} utilisation")
    for label, seconds in table6_rows(pairs, pref.negatives, tokens, params, args.mfu):
        print(f"{label:<44} {seconds:8.0f} s; paper / planner: DPO {TABLE6_SECONDS['dpo'] / seconds:.2f}, "
              f"CausalDPO {TABLE6_SECONDS['causaldpo'] / seconds:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
