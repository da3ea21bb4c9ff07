"""The LM head read a few rows at a time: what the likelihood searches (`methods.ranking.likelihood`,
`methods.ranking.node_search`) share to score completion tokens against a cached prompt.

`decoder_and_head` splits a causal LM into its body and its linear head (models whose logits are not plain
``head(hidden)`` are rejected); `prompt_pass` runs a batch of prompts once and keeps their keys/values;
`log_probs` reads chosen log-probabilities without materialising the logits of every row at once; `additive_mask`
turns a bool attention mask into the additive float mask every attention implementation accepts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool (True = attend) -> additive float mask, which every attention implementation accepts."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def decoder_and_head(model) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """The transformer body and the linear LM head; logits must be exactly ``head(body(...))``."""
    for attr in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
        if getattr(model.config, attr, None) not in (None, 1.0):
            raise NotImplementedError(f"the likelihood search assumes plain linear logits; the model sets {attr}")
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise NotImplementedError(f"the likelihood search needs a linear LM head, got {type(head).__name__}")
    return model.get_decoder(), head


def log_probs(head: torch.nn.Linear, hidden: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor,
               block: int = 256) -> torch.Tensor:
    """log_softmax(head(hidden))[rows, tokens] in float32, the vocabulary `block` rows of `hidden` at a time.

    The picked logit and the logsumexp come from the same logits, so every value is <= 0 exactly in floating point
    (the logsumexp is ``top + log(sum)`` with ``sum >= 1``), in any dtype: the bound `the likelihood search` prunes with. Small
    blocks written into one reused buffer stay in cache, and the in-place ops avoid temporaries: several times faster
    on CPU than ``head(hidden).log_softmax(-1)``.
    """
    out = torch.empty(len(rows), device=hidden.device)
    lse = torch.empty(len(hidden), device=hidden.device)
    order = torch.argsort(rows)
    bounds = torch.searchsorted(rows[order], torch.arange(0, len(hidden) + block, block, device=rows.device)).tolist()
    buf = torch.empty(min(block, len(hidden)), head.out_features, dtype=hidden.dtype, device=hidden.device)
    for i, start in enumerate(range(0, len(hidden), block)):
        h, logits = hidden[start: start + block], buf[: len(hidden) - start]
        if head.bias is None:
            torch.mm(h, head.weight.T, out=logits)
        else:
            torch.addmm(head.bias, h, head.weight.T, out=logits)
        picked = order[bounds[i]: bounds[i + 1]]
        out[picked] = logits[rows[picked] - start, tokens[picked]].float()
        logits = logits.float()
        top = logits.amax(-1, keepdim=True)
        torch.log(logits.sub_(top).exp_().sum(-1), out=lse[start: start + len(h)]).add_(top.squeeze(-1))
    return out - lse[rows]


@dataclass
class PromptPass:
    """A batch of prompts run once, right-padded: what the completions are scored against."""
    lens: torch.Tensor  # (n,) prompt lengths
    mask: torch.Tensor  # (n, P) bool, real prompt tokens
    first: torch.Tensor  # (n, vocab) float32 log-probs of the first completion token
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), (n, kv heads, P, head dim)


def prompt_pass(decoder, head: torch.nn.Linear, prompts: Sequence[Sequence[int]], pad_id: int, device) -> PromptPass:
    """Run `prompts` (right-padded to the longest) through the body with the cache on; the head only at each
    prompt's last real token."""
    n = len(prompts)
    lens = torch.tensor([len(p) for p in prompts], device=device)
    ids = torch.full((n, int(lens.max())), pad_id, dtype=torch.long, device=device)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = torch.as_tensor(p)
    mask = torch.arange(ids.shape[1], device=device)[None] < lens[:, None]
    res = decoder(input_ids=ids, attention_mask=mask.long(), use_cache=True,
                  position_ids=torch.arange(ids.shape[1], device=device).expand(n, -1))
    first = head(res.last_hidden_state[torch.arange(n, device=device), lens - 1]).float().log_softmax(-1)
    return PromptPass(lens, mask, first, [(layer.keys, layer.values) for layer in res.cache.layers])
