"""Top-k pruned likelihood ranking vs full scoring, on a trained model: `python -m bench.perf.ranking_pruning`.

The likelihood protocol only needs each prompt's k best items; `methods.ranking.score_all(top=k)` skips every chunk
of the catalogue whose first-token bound is below the k-th best exact score found so far. How much that saves
depends on how peaked the model is, so this benchmark uses the tiny profile's own SFT model (trained and cached
under the profile's cache folder if missing, which takes minutes) and the cell's real test prompts and catalogue
(ML-100K, 1,681 titles). The full run and two pruned runs (the bound on each item's first token, then on its first
two tokens, `bound_tokens=2`) score the same prompts side by side in one process; printed: seconds per prompt of
each, the speed-up, the share of item scores each pruned run computed, whether the top-k lists are identical, and
the largest difference between the scores both computed. `--profile small` measures SmolLM2's subword titles.

    python -m bench.perf.ranking_pruning [--shift temporal] [--prompts 320] [--k 20] [--full-chunk-len 64] [--profile tiny] [--cache DIR]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.config import load_profile
from bench.pipeline import PreparedCell
from methods.ranking import score_all, top_k


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--shift", default="temporal")
    parser.add_argument("--prompts", type=int, default=320, help="OOD test prompts scored by both")
    parser.add_argument("--k", type=int, default=20, help="the ranking's k (the profile's ranking.k is 20)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--full-chunk-len", type=int, default=64,
                        help="chunk length of the full scoring (64 is its fastest on CPU; pruning prefers 16)")
    parser.add_argument("--cache", help="SFT/tokenizer cache folder (default: the profile's cache_dir)")
    args = parser.parse_args(argv)

    cfg = load_profile(args.profile)
    cfg.data.shift = args.shift
    if args.cache:
        cfg.cache_dir = args.cache
    cell = PreparedCell(cfg, lambda line: print(f"[cell] {line}"))
    cell.ensure_sft()
    model = cell.sft_model()
    part = next(iter(cell.eval_prompts))
    prompts = cell.eval_prompts[part][: args.prompts]
    print(f"torch threads {torch.get_num_threads()}, {len(cell.catalogue)} items, {len(prompts)} {part} prompts, "
          f"k = {args.k}")

    score_all(model, prompts[:4], cell.catalogue, args.batch_size, chunk_len=args.full_chunk_len)  # warm-up + plans
    start = time.perf_counter()
    full = score_all(model, prompts, cell.catalogue, args.batch_size, chunk_len=args.full_chunk_len)
    t_full = (time.perf_counter() - start) / len(prompts)
    print(f"full    {t_full * 1000:8.1f} ms/prompt  (chunk_len {args.full_chunk_len})")
    for bound in (1, 2):  # the first-token bound, then the first two tokens (an extra pass over the first tokens)
        score_all(model, prompts[:4], cell.catalogue, args.batch_size, top=args.k, bound_tokens=bound)
        start = time.perf_counter()
        pruned = score_all(model, prompts, cell.catalogue, args.batch_size, top=args.k, bound_tokens=bound)
        t_pruned = (time.perf_counter() - start) / len(prompts)
        computed = np.isfinite(pruned)
        print(f"top-{args.k:<3d} {t_pruned * 1000:8.1f} ms/prompt  bound on {bound} token(s): "
              f"{computed.mean():.1%} of item scores computed, {t_full / t_pruned:.1f}x faster than full; top-{args.k} "
              f"lists identical: {bool((top_k(pruned, args.k) == top_k(full, args.k)).all())}, max |pruned - full| "
              f"{np.abs(pruned[computed] - full[computed]).max():.2e}")


if __name__ == "__main__":
    main()
