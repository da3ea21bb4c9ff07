"""How much of the title trie an exact top-k likelihood ranking must score: `python -m bench.perf.likelihood_bounds`.

For a few test prompts of a cell's SFT model, every catalogue item's per-token log-probabilities (the prompt's KV
cache, the completions batched), then tau, the k-th best complete score (the user's consumed items excluded, as the
protocol does). A prefix of an item bounds its score from above (every later term is <= 0), so an item whose first
d tokens score below tau cannot be in the top k. Printed per prompt: tau, the share of items whose depth-d prefix
bound is still >= tau (what a bound on d tokens must score, d = 1..6), and the trie nodes a node-level
branch-and-bound would feed (each prefix, of any depth, whose log-prob is >= tau, shared prefixes once) out of all
the trie's nodes (what full scoring feeds). `methods.ranking.score_all` bounds by 1 or 2 tokens at the level of
chunks; the last column is what a node-level search would cost.

    python -m bench.perf.likelihood_bounds [--profile small] [--shift temporal] [--part iid_test] [--prompts 2]
                                           [--k 20] [--cache DIR] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from transformers import DynamicCache

from bench.perf.sft_cell import add_cell_arguments, sft_cell


def token_logprobs(model, prompt: list[int], completions: list[list[int]], pad_id: int,
                   batch: int = 128) -> np.ndarray:
    """(items, longest completion) log P(token j | prompt, tokens < j) of each completion; 0 past its end."""
    width = max(map(len, completions))
    out = np.zeros((len(completions), width))
    with torch.inference_mode():
        res = model(input_ids=torch.tensor([prompt], device=model.device), use_cache=True)
        first = res.logits[0, -1].float().log_softmax(-1)
        positions = torch.arange(len(prompt), len(prompt) + width - 1, device=model.device)
        for start in range(0, len(completions), batch):
            rows = completions[start: start + batch]
            ids = torch.full((len(rows), width), pad_id, device=model.device)
            for r, c in enumerate(rows):
                ids[r, : len(c)] = torch.tensor(c)
            cache = DynamicCache()
            for i, layer in enumerate(res.past_key_values.layers):
                cache.update(layer.keys.expand(len(rows), -1, -1, -1).contiguous(),
                             layer.values.expand(len(rows), -1, -1, -1).contiguous(), i)
            logits = model(input_ids=ids[:, :-1], past_key_values=cache,
                           position_ids=positions.expand(len(rows), -1)).logits.float().log_softmax(-1)
            later = logits.gather(-1, ids[:, 1:, None])[..., 0]
            lengths = torch.tensor([len(c) for c in rows], device=model.device)
            later = later.masked_fill(torch.arange(width - 1, device=model.device)[None] >= lengths[:, None] - 1, 0)
            out[start: start + len(rows), 0] = first[ids[:, 0]].cpu().numpy()
            out[start: start + len(rows), 1:] = later.cpu().numpy()
    return out


def fed_nodes(completions: list[list[int]], prefix_scores: np.ndarray, tau: float) -> tuple[int, int]:
    """(nodes a node-level branch-and-bound feeds, all nodes full scoring feeds): prefixes of length 1..len-1."""
    kept, every = set(), set()
    for i, c in enumerate(completions):
        for d in range(1, len(c)):
            every.add(tuple(c[:d]))
            if prefix_scores[i, d - 1] >= tau:
                kept.add(tuple(c[:d]))
    return len(kept), len(every)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cell_arguments(parser, profile="small", part="iid_test", prompts=2)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args(argv)

    measured = sft_cell(args)
    cell, model, prompts, consumed = measured.cell, measured.model, measured.prompts, measured.consumed
    completions = [list(c) for c in cell.catalogue.completions]
    print(f"torch threads {torch.get_num_threads()}, {len(completions)} items, k = {args.k}, {args.part}")
    for n, prompt in enumerate(prompts):
        start = time.perf_counter()
        tokens = token_logprobs(model, prompt, completions, cell.catalogue.pad_id)
        prefix = np.cumsum(tokens, axis=1)
        total = prefix[:, -1].copy()
        if consumed is not None:
            total[consumed[n]] = -np.inf
        tau = np.sort(total)[-args.k]
        shares = ", ".join(f"d{d} {np.mean(prefix[:, min(d, prefix.shape[1]) - 1] >= tau):.1%}" for d in range(1, 7))
        kept, every = fed_nodes(completions, prefix, tau)
        print(f"prompt {n}: tau {tau:.2f} (best {total.max():.2f}); items whose depth-d bound >= tau: {shares}; "
              f"node-level branch-and-bound feeds {kept} of {every} trie nodes ({kept / every:.1%}); "
              f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
