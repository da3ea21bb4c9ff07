"""Top-k likelihood ranking, pruned or not, on a trained model: `python -m bench.perf.ranking_pruning`.

The likelihood protocol only needs each prompt's k best items. `methods.ranking.score_all(top=k)` skips every chunk
of the catalogue whose first-token (or first-two-token, `bound_tokens=2`) bound is below the k-th best exact score
found so far; `methods.ranking.node_search.top_k_scores` feeds single trie nodes best first and prunes each by its
whole prefix. How much that saves depends on how peaked the model is, so this benchmark uses a profile's own SFT
model (trained and cached under the profile's cache folder if missing, which takes minutes; `--set` picks the
settings of another cached one) and the cell's real test prompts and catalogue (ML-100K, 1,681 titles), the user's
consumed items excluded as the protocol does. Full scoring and every search score the same prompts side by side in
one process; printed: seconds per prompt of each, the speed-up over full scoring (over the first search run when
`--skip full`), the share of item scores computed, whether the top-k lists equal the reference's (full scoring's,
else the first search's), and the largest difference between scores both computed. `--profile small` measures
SmolLM2's subword titles.

    python -m bench.perf.ranking_pruning [--shift temporal] [--part ood_test] [--prompts 320] [--k 20]
        [--expand 32 ...] [--skip full|bound1|bound2|nodes ...] [--profile tiny] [--cache DIR] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.perf.sft_cell import add_cell_arguments, sft_cell
from methods.ranking import score_all, top_k
from methods.ranking.node_search import top_k_scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(parser, profile="tiny", part="ood_test", prompts=320)
    parser.add_argument("--k", type=int, default=20, help="the ranking's k (the profile's ranking.k is 20)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--full-chunk-len", type=int, default=64,
                        help="chunk length of the full scoring (64 is its fastest on CPU; pruning prefers 16)")
    parser.add_argument("--expand", type=int, nargs="+", default=[32], help="node search: nodes per prompt and round")
    parser.add_argument("--skip", nargs="*", default=[], choices=["full", "bound1", "bound2", "nodes"])
    args = parser.parse_args(argv)

    measured = sft_cell(args)
    cell, model, prompts, exclude = measured.cell, measured.model, measured.prompts, measured.consumed
    print(f"torch threads {torch.get_num_threads()}, {len(cell.catalogue)} items ({len(cell.catalogue.trie)} trie "
          f"nodes), {len(prompts)} {args.part} prompts, k = {args.k}")

    searches = {} if "full" in args.skip else {
        f"full (chunk_len {args.full_chunk_len})":
            lambda p: score_all(model, p, cell.catalogue, args.batch_size, chunk_len=args.full_chunk_len)}
    for bound in (1, 2):
        if f"bound{bound}" not in args.skip:
            searches[f"chunks, bound on {bound} token(s)"] = lambda p, b=bound: score_all(
                model, p, cell.catalogue, args.batch_size, top=args.k, bound_tokens=b,
                exclude=exclude[: len(p)] if exclude is not None else None)
    stats: dict[str, dict] = {}
    for expand in [] if "nodes" in args.skip else args.expand:
        name = f"nodes, expand {expand}"
        searches[name] = lambda p, e=expand, name=name: top_k_scores(
            model, p, cell.catalogue, args.k, args.batch_size, expand=e, stats=stats.setdefault(name, {}),
            exclude=exclude[: len(p)] if exclude is not None else None)
    reference = t_reference = None
    for name, search in searches.items():
        search(prompts[:4])  # warm-up + plans
        stats.pop(name, None)
        start = time.perf_counter()
        scores = search(prompts)
        seconds = (time.perf_counter() - start) / len(prompts)
        best = top_k(scores, args.k, exclude)
        computed = np.isfinite(scores)
        line = f"{name:<28s} {seconds * 1000:9.1f} ms/prompt  {computed.mean():6.1%} of item scores computed"
        if reference is None:
            reference, t_reference = (scores, best), seconds
        else:
            both = computed & np.isfinite(reference[0])
            line += (f", {t_reference / seconds:5.1f}x faster; top-{args.k} lists identical in "
                     f"{(best == reference[1]).all(1).mean():.1%} of prompts, max |difference| "
                     f"{np.abs(scores[both] - reference[0][both]).max():.2e}")
        if name in stats:
            line += (f"; {stats[name]['fed'] / len(prompts):.0f} trie nodes fed per prompt, "
                     f"{stats[name]['rounds']} rounds")
        print(line, flush=True)


if __name__ == "__main__":
    main()
