"""The ``beam`` ranking protocol: trie-constrained beam search, the beams being the top-k list (D3's protocol).

``model.generate(prefix_allowed_tokens_fn=...)`` with ``num_beams = k`` returned sequences and ``max_new_tokens`` =
the longest completion, prompts left-padded (`methods.ranking.generation`). Each output is cut at its first EOS and
mapped to an item through the trie; outputs that are not complete completions are invalid and skipped, duplicates
keep their first occurrence, the rest keep beam order. ``valid`` says whether the top-1 output was an item. Extra
options (e.g. ``length_penalty``, ``logits_processor``) are passed to ``generate``; HF's default length penalty
(1.0) applies unless overridden, so beam order need not equal likelihood order. With `exclude` (catalogue
positions per prompt) the constraint also closes every trie branch whose items are all excluded for that prompt
(`Trie.blocked`), so the beams only ever complete items that are not excluded.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from methods.ranking.catalogue import Catalogue, Ranking
from methods.ranking.generation import generate_sorted
from methods.ranking.protocols import register_protocol


@register_protocol("beam")
def beam(model, prompts: list[list[int]], catalogue: Catalogue, k: int = 20, batch_size: int = 4,
         exclude: Sequence[np.ndarray] | None = None, **generate_kwargs) -> Ranking:
    trie, eos = catalogue.trie, catalogue.eos_id
    if exclude is not None and len(exclude) != len(prompts):
        raise ValueError(f"{len(exclude)} exclusion lists for {len(prompts)} prompts")

    def constraint(width: int, idx: np.ndarray) -> dict:
        blocked = [trie.blocked(exclude[i]) if exclude is not None else frozenset() for i in idx]

        def allowed(batch_id: int, sequence: torch.Tensor) -> list[int]:
            # dead ends (finished or invalid prefixes) emit EOS
            return trie.allowed(sequence[width:].tolist(), blocked[batch_id]) or [eos]
        return {"prefix_allowed_tokens_fn": allowed}

    generated = generate_sorted(
        model, prompts, catalogue.pad_id, eos, batch_size, "beam search", num_return_sequences=k,
        batch_kwargs=constraint, num_beams=k, early_stopping=False,
        max_new_tokens=max(len(c) for c in catalogue.completions), **generate_kwargs)
    topk = np.full((len(prompts), k), -1, dtype=np.int64)
    valid = np.zeros(len(prompts), dtype=bool)
    for i, beams in enumerate(generated):
        ranked: list[int] = []
        for j, seq in enumerate(beams):
            item = trie.item(seq) if seq and seq[-1] == eos else None
            if j == 0:
                valid[i] = item is not None
            if item is not None and item not in ranked:
                ranked.append(item)
        topk[i, : len(ranked)] = ranked
    return Ranking(topk=topk, valid=valid)
