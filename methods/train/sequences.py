"""Sequence helpers shared by training and ranking: left padding, the padded causal mask, completion log-probs.

Training rows are left-padded ``[pad.. prompt completion]`` with explicit position ids, so every completion ends in
the last column and the LM head runs on the last ``max completion length + 1`` positions only (`logits_to_keep`).
A forward that needs hidden states only (`last_hidden_states`) runs the decoder body without the LM head. Both run
under the model's autocast mark (`methods.train.precision`); log-softmaxes are taken in fp32.
"""
from __future__ import annotations

from typing import Sequence

import torch

from methods.train.precision import autocast


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of rows left-padded to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = torch.as_tensor(row)
        mask[r, width - len(row):] = 1
    return ids, mask


def left_padded(prompts: list[list[int]], completions: list[list[int]], pad_id: int, device):
    """(input_ids, attention_mask, position_ids, completion lengths) for prompt+completion rows, left-padded."""
    ids, mask = left_pad([p + c for p, c in zip(prompts, completions)], pad_id)
    positions = (mask.cumsum(1) - 1).clamp_min(0)
    lengths = torch.tensor([len(c) for c in completions])
    return ids.to(device), mask.to(device), positions.to(device), lengths.to(device)


def padded_causal_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The (B, 1, L, L) additive attention mask of left-padded rows: causal, padding keys hidden, and each padding
    query sees itself. Without that last part a padding query has no key at all, and CUDA's SDPA backward returns NaN
    gradients for such fully masked rows (seen in bf16 on an H200), which then poison every weight."""
    width = mask.shape[1]
    allowed = torch.ones(width, width, dtype=torch.bool, device=mask.device).tril() & mask.bool()[:, None, None, :]
    allowed |= torch.eye(width, dtype=torch.bool, device=mask.device)
    return torch.zeros(allowed.shape, dtype=dtype, device=mask.device).masked_fill(~allowed, torch.finfo(dtype).min)


def completion_logps(model, ids, mask, positions, lengths, want_hidden: bool = False):
    """Summed log-probs of each row's completion (its last `lengths` tokens), plus hidden states if asked:
    (logps (N,), prompt_hidden (N, d) at the last prompt token, end_hidden (N, d) at the last token)."""
    keep = int(lengths.max()) + 1
    dtype = getattr(model, "module", model).get_input_embeddings().weight.dtype   # DDP wraps the model
    with autocast(model):
        out = model(input_ids=ids, attention_mask=padded_causal_mask(mask, dtype), position_ids=positions,
                    logits_to_keep=keep, output_hidden_states=want_hidden, use_cache=False)
    logits = out.logits[:, :-1].float()                          # predicts the last keep-1 tokens
    targets = ids[:, -(keep - 1):]
    token_logps = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(2)).squeeze(2)
    column = torch.arange(keep - 1, device=ids.device).unsqueeze(0)
    in_completion = column >= (keep - 1 - lengths).unsqueeze(1)
    logps = (token_logps * in_completion).sum(1)
    if not want_hidden:
        return logps, None, None
    last = out.hidden_states[-1]
    rows = torch.arange(len(ids), device=ids.device)
    prompt_hidden = last[rows, last.shape[1] - 1 - lengths]
    return logps, prompt_hidden, last[:, -1]


def last_hidden_states(model, ids, mask, positions=None) -> torch.Tensor:
    """(N, L, d) last-layer hidden states (after the final norm) of left- or right-padded rows, from the decoder body
    alone: the LM head, a (L x vocabulary) product per row, is never computed. The same values as the full model's
    ``output_hidden_states[-1]``."""
    inner = getattr(model, "module", model)   # DDP wraps the model
    with autocast(model):
        return inner.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions,
                                   use_cache=False).last_hidden_state
