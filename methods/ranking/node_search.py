"""Exact top-k likelihood ranking by a best-first branch-and-bound over the title trie's nodes.

`top_k_scores` returns what `methods.ranking.likelihood.score_all` returns with ``top=k``: every item's exact
log P(title + EOS | prompt) where it was needed to decide the k best, -inf elsewhere; the k best, their order and their
ties are those of the full scores. It reaches them by feeding far fewer trie nodes.

The bound. A trie node's prefix log-probability (the sum of its tokens' log-probs) bounds every item below it from
above, because every later term is <= 0, exactly so in floating point (`methods.ranking.lm_head.log_probs`; adding
a non-positive float never rounds up). tau, the k-th best complete score found so far (excluded items never count),
never exceeds the true k-th best. So a node whose prefix log-prob is below tau holds no top-k item and is never fed,
and every item scoring at least the true k-th best, ties included, is completed before the search stops.

The search, per batch of prompts. The prompt pass caches each prompt's keys/values and gives the log-probs of the
depth-1 nodes. Each round then feeds, per prompt, the `expand` open nodes with the best prefix log-probs (open: not
yet fed, not a leaf, not under excluded items only, prefix >= tau), one query token per node. A node attends to its
prompt, to its ancestors' keys/values (kept from the rounds that fed them: every node is fed once, and its ancestors
are never fed again) and to itself, at position ``len(prompt) + depth - 1``: exactly the context it has in the
unpadded sequence ``prompt + title``. Its logits score its children, so a leaf's (EOS) prefix log-prob is its item's
score. Rounds stop when no prompt has an open node. On SmolLM2-135M after 4,096 SFT samples on MovieLens titles the
search feeds about 334 of the trie's 17,875 nodes per prompt, 0.8 s per prompt on 2 CPU cores, where the chunk
search with a two-token bound takes 3.1 s (`python -m bench.perf.ranking_pruning --profile small`).

Scores are the same sums of the same log-probs as `score_all`'s, computed in other batch shapes: they agree to float
rounding, not bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from transformers import DynamicCache

from methods.ranking.catalogue import Catalogue
from methods.ranking.generation import progress
from methods.ranking.lm_head import additive_mask, decoder_and_head, log_probs, prompt_pass
from methods.train.precision import autocast


@dataclass
class _Tree:
    """The catalogue's trie as arrays, indexed by trie node (root 0)."""
    token: torch.Tensor  # (N,) the token that leads into each node (the root's: pad)
    depth: torch.Tensor  # (N,) tokens from the root
    ancestors: torch.Tensor  # (N, D) each node's ancestors at depth 1..depth-1, in order, then -1
    child_start: np.ndarray  # (N + 1,) CSR: node v's children are children[child_start[v]: child_start[v + 1]]
    children: np.ndarray  # (E,)
    leaf_of_item: torch.Tensor  # (n_items,) the leaf (EOS node) of each catalogue position


def _tree(catalogue: Catalogue) -> _Tree:
    """The trie's arrays, computed once per catalogue (cached on it)."""
    if "node-search" in catalogue._plans:
        return catalogue._plans["node-search"]
    trie = catalogue.trie
    n_nodes = len(trie)
    token = np.full(n_nodes, catalogue.pad_id, dtype=np.int64)
    depth = np.zeros(n_nodes, dtype=np.int64)
    child_lists = [sorted(trie._children[v].items()) for v in range(n_nodes)]
    for v in range(n_nodes):  # parents are numbered before their children
        for t, child in child_lists[v]:
            token[child], depth[child] = t, depth[v] + 1
    ancestors = np.full((n_nodes, max(int(depth.max()) - 1, 1)), -1, dtype=np.int64)
    for v in range(1, n_nodes):
        parent = trie._parent[v]
        if parent > 0:
            ancestors[v, : depth[parent]] = ancestors[parent, : depth[parent]]
            ancestors[v, depth[parent] - 1] = parent
    tree = _Tree(
        token=torch.from_numpy(token), depth=torch.from_numpy(depth), ancestors=torch.from_numpy(ancestors),
        child_start=np.cumsum([0] + [len(c) for c in child_lists]),
        children=np.array([child for c in child_lists for _, child in c], dtype=np.int64),
        leaf_of_item=torch.tensor(trie._leaf, dtype=torch.long),
    )
    catalogue._plans["node-search"] = tree
    return tree


def _blocked(catalogue: Catalogue, exclude: Sequence[np.ndarray], device) -> torch.Tensor:
    """(len(exclude), N) bool: the nodes all of whose items a prompt excludes (`Trie.blocked`)."""
    blocked = torch.zeros((len(exclude), len(catalogue.trie)), dtype=torch.bool)
    for row, positions in enumerate(exclude):
        blocked[row, list(catalogue.trie.blocked(positions))] = True
    return blocked.to(device)


def _children(tree: _Tree, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into `parents`, child node) of every child of every parent."""
    counts = tree.child_start[parents + 1] - tree.child_start[parents]
    query = np.repeat(np.arange(len(parents)), counts)
    offset = np.arange(len(query)) - np.repeat(np.cumsum(counts) - counts, counts)
    return query, tree.children[np.repeat(tree.child_start[parents], counts) + offset]


def top_k_scores(model, prompts: Sequence[Sequence[int]], catalogue: Catalogue, top: int, batch_size: int = 16, *,
                 exclude: Sequence[np.ndarray] | None = None, expand: int = 32, stats: dict | None = None
                 ) -> np.ndarray:
    """(n_prompts, n_items) float64: exact log P(completion | prompt) of the items that decide each prompt's `top`
    best, -inf for the others and for `exclude`d positions (module docstring). `expand` nodes are fed per prompt
    and round; `batch_size` prompts share the rounds. `stats`, if given, gets "fed" (trie nodes fed, all prompts)
    and "rounds" added to.

    With ``expand=1`` the search is exactly best-first: a node is fed only if its prefix log-prob is at least the
    final k-th best score. Larger `expand` feeds a few more nodes in far fewer, larger forward calls."""
    if any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be non-empty")
    if exclude is not None and len(exclude) != len(prompts):
        raise ValueError(f"{len(exclude)} exclusion lists for {len(prompts)} prompts")
    if top < 1 or expand < 1:
        raise ValueError(f"top and expand must be >= 1, got {top} and {expand}")
    model.eval()
    device = model.device
    tree = _tree(catalogue)
    token, depth, ancestors = tree.token.to(device), tree.depth.to(device), tree.ancestors.to(device)
    leaf_of_item = tree.leaf_of_item.to(device)
    n_nodes, n_items = len(catalogue.trie), len(catalogue)
    expandable = torch.from_numpy(np.diff(tree.child_start) > 0).to(device)
    depth_one = torch.from_numpy(tree.children[tree.child_start[0]: tree.child_start[1]]).to(device)
    decoder, head = decoder_and_head(model)
    out = np.empty((len(prompts), n_items), dtype=np.float64)
    order = np.argsort([len(p) for p in prompts], kind="stable")

    with torch.inference_mode(), autocast(model):
        for start in progress(range(0, len(prompts), batch_size), "likelihood ranking (node search)", batch_size):
            idx = order[start: start + batch_size]
            n = len(idx)
            batch = prompt_pass(decoder, head, [prompts[i] for i in idx], catalogue.pad_id, device)
            lens, prompt_mask, prompt_kv = batch.lens, batch.mask, batch.kv
            logp = torch.full((n, n_nodes), -torch.inf, device=device)  # prefix log-prob of each reached node
            logp[:, depth_one] = batch.first[:, token[depth_one]]
            del batch
            # nodes under excluded items only stay at -inf: never fed, never counted in tau
            blocked = (_blocked(catalogue, [exclude[i] for i in idx], device) if exclude is not None
                       else torch.zeros((n, n_nodes), dtype=torch.bool, device=device))
            logp.masked_fill_(blocked, -torch.inf)
            closed = ~expandable.expand(n, -1).clone()  # leaves and fed nodes
            slot = torch.full((n, n_nodes), -1, dtype=torch.long, device=device)  # a fed node's row in the store
            store = [(k.new_zeros((256, k.shape[1], k.shape[3])), v.new_zeros((256, v.shape[1], v.shape[3])))
                     for k, v in prompt_kv]  # per layer: the fed nodes' keys and values, (slot, kv heads, head dim)
            used = 0
            tau = torch.full((n, 1), -torch.inf, device=device)

            while True:
                open_ = ~closed & (logp >= tau) & (logp > -torch.inf)
                if not open_.any():
                    break
                best, node = logp.masked_fill(~open_, -torch.inf).topk(min(expand, n_nodes), dim=1)
                rows = (best > -torch.inf).any(1).nonzero(as_tuple=True)[0]
                fed = best[rows] > -torch.inf  # (r, expand): real queries; the others are padding
                node = node[rows].masked_fill(~fed, 0)
                n_queries = node.shape[1]
                # the union of the fed nodes' ancestors per row (their keys/values come from the store)
                anc = ancestors[node]  # (r, expand, D)
                union = [torch.unique(a[a > 0]) for a in anc]
                held = torch.zeros((len(rows), max(1, max(len(u) for u in union))), dtype=torch.long, device=device)
                for r, u in enumerate(union):
                    held[r, : len(u)] = u
                sees = (anc[:, :, :, None] == held[:, None, None, :]).any(2)  # padding (0, the root) never matches
                held_slot = slot[rows[:, None], held].clamp(min=0)
                cache = DynamicCache(ddp_cache_data=[
                    (torch.cat([k[rows], sk[held_slot].transpose(1, 2)], 2),
                     torch.cat([v[rows], sv[held_slot].transpose(1, 2)], 2))
                    for (k, v), (sk, sv) in zip(prompt_kv, store)])
                mask = torch.cat([prompt_mask[rows, None, :].expand(-1, n_queries, -1), sees,
                                  torch.eye(n_queries, dtype=torch.bool, device=device).expand(len(rows), -1, -1)],
                                 dim=-1)
                hidden = decoder(input_ids=token[node], attention_mask=additive_mask(mask, model.dtype)[:, None],
                                 position_ids=lens[rows, None] + depth[node] - 1, cache=cache,
                                 use_cache=True).last_hidden_state
                q_row, q_col = fed.nonzero(as_tuple=True)
                b, parent = rows[q_row], node[q_row, q_col]
                store = _stored(store, cache, n_queries, q_row, q_col, used)
                slot[b, parent] = torch.arange(used, used + len(q_row), device=device)
                used += len(q_row)
                if stats is not None:
                    stats["fed"] = stats.get("fed", 0) + len(q_row)
                    stats["rounds"] = stats.get("rounds", 0) + 1
                closed[b, parent] = True
                # each fed node's children: prefix log-prob = the node's + the child's token log-prob
                query, child = (torch.from_numpy(a).to(device) for a in _children(tree, parent.cpu().numpy()))
                vals = log_probs(head, hidden.reshape(-1, hidden.shape[-1]), (q_row * n_queries + q_col)[query],
                                 token[child])
                logp[b[query], child] = (logp[b[query], parent[query]] + vals).masked_fill(blocked[b[query], child],
                                                                                          -torch.inf)
                tau = logp[:, leaf_of_item].topk(min(top, n_items), dim=1).values[:, -1:]
            out[idx] = logp[:, leaf_of_item].double().cpu().numpy()
    return out


def _stored(store, cache: DynamicCache, n_queries: int, q_row: torch.Tensor, q_col: torch.Tensor, used: int):
    """The per-layer key/value store, (slot, kv heads, head dim), with the fed queries' new keys/values (the cache's
    last `n_queries` positions) written at slots ``used..``; grown by doubling, zero-filled (masked slots must stay
    finite)."""
    need = used + len(q_row)
    out = []
    for (sk, sv), layer in zip(store, cache.layers):
        if len(sk) < need:
            grown_k = sk.new_zeros((max(need, 2 * len(sk)),) + sk.shape[1:])
            grown_v = sv.new_zeros(grown_k.shape)
            grown_k[:used], grown_v[:used] = sk[:used], sv[:used]
            sk, sv = grown_k, grown_v
        sk[used:need] = layer.keys[:, :, -n_queries:].transpose(1, 2)[q_row, q_col]
        sv[used:need] = layer.values[:, :, -n_queries:].transpose(1, 2)[q_row, q_col]
        out.append((sk, sv))
    return out
