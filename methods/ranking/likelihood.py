"""The ``likelihood`` ranking protocol: exact log P(title | prompt) of every catalogue item, the k best kept.

Exact ``log P(completion | prompt)`` for every item of the catalogue (`score_all`), then the k best, ties broken
by catalogue position (lower first). Every output is a catalogue item, so the valid ratio is 1 by construction.

How `score_all` is fast. Prompts are sorted by length and taken `batch_size` at a time, right-padded, and run once
with the cache on: the logits at each prompt's last real token score the first token of every completion, and the
prompt's keys/values are kept. The completions are then scored *against that cached prefix*, never re-reading the
prompt, and sharing common prefixes through the catalogue's trie: the trie nodes that have children (each one a
distinct completion prefix) are packed, in lexicographic order, into chunks of at most `chunk_len` tokens, each
chunk closed under ancestors (a prefix cut at a chunk boundary is repeated in the next chunk). A chunk is one
sequence whose tokens attend to the whole prompt and to their own trie ancestors only (an explicit 4D additive
mask, the prompt's right padding masked out) with position ids ``len(prompt) + depth``, so each token sees exactly
the context it would have in the unpadded sequence ``prompt + completion``. The logits at a node score all its
children; an item's log-likelihood is the sum over its tokens of ``logit - logsumexp`` read at the parent nodes,
gathered and summed with tensor indexing (no Python loop over items). (prompt, chunk) rows are run `max_tokens`
tokens at a time, each row with its prompt's cache rows. The body (``model.get_decoder()``) and the linear LM head
(``model.get_output_embeddings()``) are called separately: the vocabulary logsumexp is taken a few hundred rows at
a time (fast on CPU, bounded memory) and the needed logits are dot products; models whose logits are not plain
``head(hidden)`` (soft-capping, logit scaling) are rejected. The packing plan depends only on the catalogue and is
computed once per catalogue (cached on it: treat a `Catalogue` as immutable).

The protocol asks `score_all` for the k best only (``top=k``): a chunk is skipped for a prompt once the best
first-token log-probability among its items (an upper bound on their scores, which the prompt pass gives) is
below the k-th best exact score found so far; chunks are scored best bound first, in doubling rounds. The k
best, their order and their ties are exactly those of the full scores (tested); on the tiny profile's SFT model
about an eighth of the item scores are computed and ranking is about 6x faster (`python -m bench.perf.ranking_pruning`).
A flat (untrained) model prunes little and pays ~10 % for the rounds.

``ranking.likelihood_search: nodes`` finds the same k best with `methods.ranking.node_search` instead: a best-first
branch-and-bound over single trie nodes, each bounded by its whole prefix, each fed once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from transformers import DynamicCache

from methods.ranking.catalogue import Catalogue, Ranking, top_k
from methods.ranking.generation import progress
from methods.ranking.lm_head import additive_mask, decoder_and_head, log_probs, prompt_pass
from methods.ranking.node_search import top_k_scores
from methods.ranking.protocols import register_protocol
from methods.train.precision import autocast


@dataclass
class _Plan:
    """Trie prefixes packed into chunks (see module docstring); tensors are indexed by chunk."""
    tokens: torch.Tensor  # (S, C) input token of each fed node
    depth: torch.Tensor  # (S, C) depth - 1 of each fed node, i.e. position offset after the prompt
    tree: torch.Tensor  # (S, C, C) bool, node attends to node: ancestor-or-self
    first: torch.Tensor  # (n_items,) first completion token, scored from the prompt's last logits
    pair_q: torch.Tensor  # (S, K) chunk position whose logits score a later completion token
    pair_t: torch.Tensor  # (S, K) that token
    pair_item: torch.Tensor  # (S, K) its item; n_items for padding entries
    chunk_of: torch.Tensor  # (n_items,) the chunk scoring each item's later tokens; S for one-token completions
    n_fed: int  # real tokens over all chunks


def _plan(catalogue: Catalogue, chunk_len: int, from_token: int = 1) -> _Plan:
    """The packed trie (module docstring); its pairs score completion tokens `from_token`.. (2: the second token is
    scored by `_first_token_plan` instead)."""
    key = chunk_len if from_token == 1 else (chunk_len, from_token)
    if key in catalogue._plans:
        return catalogue._plans[key]
    comps = [tuple(c) for c in catalogue.completions]
    chunk_len = max(chunk_len, max(len(c) for c in comps) - 1)
    chunks: list[dict] = []
    cur: dict | None = None
    for i in sorted(range(len(comps)), key=comps.__getitem__):
        c = comps[i]
        prefixes = [c[:j] for j in range(1, len(c))]  # the nodes to feed; their logits score c[1:]
        if not prefixes:
            continue
        new = [p for p in prefixes if p not in cur["index"]] if cur else prefixes
        if cur is None or len(cur["tokens"]) + len(new) > chunk_len:
            cur = {"index": {}, "tokens": [], "parent": [], "pairs": []}
            chunks.append(cur)
            new = prefixes
        for p in new:
            cur["index"][p] = len(cur["tokens"])
            cur["tokens"].append(p[-1])
            cur["parent"].append(cur["index"].get(p[:-1], -1))
        cur["pairs"] += [(cur["index"][c[:j]], c[j], i) for j in range(from_token, len(c))]

    n_chunks, n_items = max(len(chunks), 1), len(comps)
    width = max((len(ch["tokens"]) for ch in chunks), default=1)
    n_pairs = max((len(ch["pairs"]) for ch in chunks), default=1)
    tokens = np.full((n_chunks, width), catalogue.pad_id, dtype=np.int64)
    depth = np.zeros((n_chunks, width), dtype=np.int64)
    tree = np.broadcast_to(np.eye(width, dtype=bool), (n_chunks, width, width)).copy()
    pairs = np.zeros((n_chunks, n_pairs, 3), dtype=np.int64)
    pairs[:, :, 2] = n_items
    chunk_of = np.full(n_items, len(chunks), dtype=np.int64)
    for s, ch in enumerate(chunks):
        chunk_of[[i for _, _, i in ch["pairs"]]] = s
        for q, parent in enumerate(ch["parent"]):  # parents precede children
            if parent >= 0:
                tree[s, q] |= tree[s, parent]
                depth[s, q] = depth[s, parent] + 1
        tokens[s, : len(ch["tokens"])] = ch["tokens"]
        pairs[s, : len(ch["pairs"])] = ch["pairs"]
    plan = _Plan(
        tokens=torch.from_numpy(tokens), depth=torch.from_numpy(depth), tree=torch.from_numpy(tree),
        first=torch.tensor([c[0] for c in comps]), pair_q=torch.from_numpy(pairs[:, :, 0].copy()),
        pair_t=torch.from_numpy(pairs[:, :, 1].copy()), pair_item=torch.from_numpy(pairs[:, :, 2].copy()),
        chunk_of=torch.from_numpy(chunk_of), n_fed=sum(len(ch["tokens"]) for ch in chunks),
    )
    catalogue._plans[key] = plan
    return plan


def _first_token_plan(catalogue: Catalogue, width: int = 64) -> _Plan:
    """The distinct first completion tokens as independent one-token nodes (each attends to the prompt only),
    packed `width` to a chunk, with the pairs (first-token node, second token, item): scoring it gives every item's
    second-token log-probability, which tightens the pruning bound (see `score_all`)."""
    key = ("first", width)
    if key in catalogue._plans:
        return catalogue._plans[key]
    comps = catalogue.completions
    firsts = sorted({int(c[0]) for c in comps})
    node = {t: i for i, t in enumerate(firsts)}
    n_chunks = max(1, -(-len(firsts) // width))
    tokens = np.full((n_chunks, width), catalogue.pad_id, dtype=np.int64)
    for i, t in enumerate(firsts):
        tokens[i // width, i % width] = t
    per_chunk: list[list[tuple[int, int, int]]] = [[] for _ in range(n_chunks)]
    for item, c in enumerate(comps):
        if len(c) > 1:
            q = node[int(c[0])]
            per_chunk[q // width].append((q % width, int(c[1]), item))
    n_pairs = max((len(p) for p in per_chunk), default=1) or 1
    pairs = np.zeros((n_chunks, n_pairs, 3), dtype=np.int64)
    pairs[:, :, 2] = len(comps)
    for s, chunk_pairs in enumerate(per_chunk):
        if chunk_pairs:
            pairs[s, : len(chunk_pairs)] = chunk_pairs
    plan = _Plan(
        tokens=torch.from_numpy(tokens), depth=torch.zeros((n_chunks, width), dtype=torch.long),
        tree=torch.eye(width, dtype=torch.bool).expand(n_chunks, width, width).clone(),
        first=torch.tensor([int(c[0]) for c in comps]), pair_q=torch.from_numpy(pairs[:, :, 0].copy()),
        pair_t=torch.from_numpy(pairs[:, :, 1].copy()), pair_item=torch.from_numpy(pairs[:, :, 2].copy()),
        chunk_of=torch.zeros(len(comps), dtype=torch.long), n_fed=len(firsts),
    )
    catalogue._plans[key] = plan
    return plan


def _on(plan: _Plan, device) -> dict[str, torch.Tensor]:
    """The tensors `score_all` feeds from a plan, on `device`."""
    return {name: getattr(plan, name).to(device) for name in ("tokens", "depth", "tree", "pair_q", "pair_t",
                                                                "pair_item")}


def score_all(model, prompts: Sequence[Sequence[int]], catalogue: Catalogue, batch_size: int = 16, *,
              top: int | None = None, chunk_len: int | None = None, max_tokens: int = 2048,
              first_round: int = 8, exclude: Sequence[np.ndarray] | None = None, bound_tokens: int = 1
              ) -> np.ndarray:
    """(n_prompts, n_items) float64 log P(completion | prompt), exact up to float rounding.

    With `top` = k, only what decides each prompt's k best items is computed and every other item scores -inf; the
    k best (and their order and ties) are those of the full scores. The bound: an item's log-likelihood is at most
    its first token's log-probability (every later term is <= 0, exactly so in floating point, see `log_probs`),
    which the prompt pass gives for every item. A chunk is bounded by the best first token of its items. Chunks are
    scored best bound first, in rounds (`first_round` chunks per prompt, then twice as many each round); after each
    round tau, the k-th best exact score so far, is at most the true k-th best, so a chunk bounded below tau cannot
    hold a top-k item and is never scored. On the tiny profile's SFT model this scores about an eighth of the
    catalogue's tokens.

    `exclude` (catalogue positions per prompt, e.g. the user's consumed items) score -inf from the start: they never
    bound a chunk nor count towards tau, so with `top` the k best *other* items are exactly those of the full
    scores with the excluded ones removed.

    `bound_tokens` = 2 (with `top`) bounds an item by its first *two* tokens: one extra pass per prompt over the
    distinct first tokens (`_first_token_plan`) gives every second token's log-probability, and the chunks then
    score the third token on. Tighter where the first token says little (subword titles: "Star" before "Wars"), at
    the cost of that pass; scores are the same sums of the same terms as the bound, so the k best stay exact.

    `batch_size` prompts share one prompt pass; `max_tokens` bounds the completion tokens per forward call (the
    activations' size); `chunk_len` is the packed chunk length (see module docstring; default 16 with `top`, whose
    short chunks prune finer, else 64).
    Defaults tuned on CPU; on a GPU a larger `max_tokens` is likely faster.
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be non-empty")
    if exclude is not None and len(exclude) != len(prompts):
        raise ValueError(f"{len(exclude)} exclusion lists for {len(prompts)} prompts")
    if bound_tokens not in (1, 2):
        raise ValueError(f"bound_tokens must be 1 or 2, got {bound_tokens}")
    model.eval()
    n_items = len(catalogue)
    prune = top is not None and top < n_items
    second_pass = prune and bound_tokens == 2
    plan = _plan(catalogue, chunk_len or (16 if prune else 64), from_token=2 if second_pass else 1)
    device = model.device
    n_chunks = plan.tokens.shape[0]
    chunked = _on(plan, device)
    firsts = _on(_first_token_plan(catalogue), device) if second_pass else None
    first, chunk_of = plan.first.to(device), plan.chunk_of.to(device)
    decoder, head = decoder_and_head(model)
    out = np.empty((len(prompts), n_items), dtype=np.float64)
    order = np.argsort([len(p) for p in prompts], kind="stable")

    with torch.inference_mode(), autocast(model):   # the body in the model's autocast dtype; `log_probs` in fp32
        for start in progress(range(0, len(prompts), batch_size), "likelihood ranking", batch_size):
            idx = order[start: start + batch_size]
            n = len(idx)
            batch = prompt_pass(decoder, head, [prompts[i] for i in idx], catalogue.pad_id, device)
            lens, prompt_mask, kv = batch.lens, batch.mask, batch.kv
            scores = torch.zeros(n, n_items + 1, device=device)  # last column collects padding pairs
            scores[:, :n_items] = batch.first[:, first]
            if exclude is not None:
                rows = [np.asarray(exclude[i], dtype=np.int64) for i in idx]
                scores[torch.as_tensor(np.repeat(np.arange(n), [len(e) for e in rows]), device=device),
                       torch.as_tensor(np.concatenate(rows) if rows else [], dtype=torch.long, device=device)] = \
                    -torch.inf
            del batch

            def add_chunks(todo: torch.Tensor, p: dict) -> None:
                """Add to `scores` the log-probs that chunk s of plan `p` gives for prompt b, where todo[b, s]."""
                width = p["tokens"].shape[1]
                rows_per_call = max(1, max_tokens // width)
                row_b, row_s = todo.nonzero(as_tuple=True)
                for g in range(0, len(row_b), rows_per_call):
                    b, s = row_b[g: g + rows_per_call], row_s[g: g + rows_per_call]
                    cache = DynamicCache(ddp_cache_data=[(k[b], v[b]) for k, v in kv])
                    mask = torch.cat([prompt_mask[b, None, :].expand(-1, width, -1), p["tree"][s]], dim=-1)
                    hidden = decoder(input_ids=p["tokens"][s], attention_mask=additive_mask(mask, model.dtype)[:, None],
                                     position_ids=lens[b, None] + p["depth"][s], cache=cache,
                                     use_cache=True).last_hidden_state
                    flat = torch.arange(len(b), device=device)[:, None] * width + p["pair_q"][s]  # (rows, pairs)
                    vals = log_probs(head, hidden.reshape(-1, hidden.shape[-1]), flat.flatten(),
                                      p["pair_t"][s].flatten()).view_as(flat)
                    scores.index_put_((b[:, None].expand_as(flat), p["pair_item"][s]), vals, accumulate=True)

            if not prune:
                add_chunks(torch.ones(n, n_chunks, dtype=torch.bool, device=device), chunked)
            else:
                def exact(chunks: torch.Tensor) -> torch.Tensor:  # (n, n_items): items whose score is complete
                    return torch.cat([chunks, chunks.new_ones(n, 1)], 1).gather(1, chunk_of.expand(n, -1))

                if second_pass:  # every item's second token now; the chunks add the third on
                    add_chunks(torch.ones(n, firsts["tokens"].shape[0], dtype=torch.bool, device=device), firsts)
                bound = torch.full((n, n_chunks + 1), -torch.inf, device=device).scatter_reduce_(
                    1, chunk_of.expand(n, -1), scores[:, :n_items], "amax")[:, :n_chunks]
                done = torch.zeros(n, n_chunks, dtype=torch.bool, device=device)
                tau, step = torch.full((n, 1), -torch.inf, device=device), first_round
                while True:
                    open_ = ~done & (bound >= tau)
                    if not open_.any():
                        break
                    best = bound.masked_fill(~open_, -torch.inf).topk(min(step, n_chunks), dim=1).indices
                    todo = torch.zeros_like(done).scatter_(1, best, True) & open_
                    add_chunks(todo, chunked)
                    done |= todo
                    tau = scores[:, :n_items].masked_fill(~exact(done), -torch.inf).topk(top).values[:, -1:]
                    step *= 2
                scores[:, :n_items].masked_fill_(~exact(done), -torch.inf)
            out[idx] = scores[:, :n_items].double().cpu().numpy()
    return out


def _likelihood_options(ranking, tokenizer, load_base_model, device) -> dict:
    """The search and its settings, where not the defaults (chunks, first-token bound)."""
    if ranking.likelihood_search == "nodes":
        return {"search": "nodes", "expand": ranking.likelihood_expand}
    if ranking.likelihood_search != "chunks":
        raise ValueError(f"ranking.likelihood_search must be chunks or nodes, got {ranking.likelihood_search!r}")
    return {"bound_tokens": ranking.likelihood_bound_tokens} if ranking.likelihood_bound_tokens != 1 else {}


def _cost_key(ranking) -> str:
    if ranking.likelihood_search == "nodes":
        return "likelihood/nodes"
    return "likelihood" if ranking.likelihood_bound_tokens == 1 else f"likelihood/bound{ranking.likelihood_bound_tokens}"


def _settings(rest: list[str]) -> dict:
    if rest == ["nodes"]:
        return {"likelihood_search": "nodes"}
    return {"likelihood_bound_tokens": int(rest[0].removeprefix("bound")) if rest else 1}


@register_protocol("likelihood", options=_likelihood_options, cost_key=_cost_key, settings=_settings)
def likelihood(model, prompts: list[list[int]], catalogue: Catalogue, k: int = 20, batch_size: int = 16,
               exclude: Sequence[np.ndarray] | None = None, search: str = "chunks", expand: int = 32,
               **options) -> Ranking:
    if search == "nodes":
        scores = top_k_scores(model, prompts, catalogue, k, batch_size, exclude=exclude, expand=expand)
    else:
        scores = score_all(model, prompts, catalogue, batch_size, top=k, exclude=exclude, **options)
    return Ranking(topk=top_k(scores, k), valid=np.ones(len(prompts), dtype=bool))
