"""The generation loop shared by the beam and grounding protocols: prompts in length order, `batch_size` at a
time, left-padded, one `model.generate` call per batch, the new tokens of each returned sequence cut after their
first EOS and handed back in the prompts' own order. Runs under the model's autocast mark
(`methods.train.precision`); `generate` computes the LM head at the last position only (transformers passes
``logits_to_keep=1``)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from methods.train.precision import autocast
from methods.train.sequences import left_pad


def progress(batches: range, desc: str, batch_size: int):
    """A progress bar over prompt batches, shown only for long jobs: from 5 s on (a few batches of a real LLM's
    likelihood ranking take minutes; the tiny profile's rankings finish before it shows)."""
    return tqdm(batches, desc=desc, unit=f"x{batch_size} prompts", leave=False, delay=5, disable=len(batches) < 2)


def cut_after_eos(tokens: list[int], eos_id: int) -> list[int]:
    """`tokens` up to and including the first EOS (all of them when there is none)."""
    return tokens[: tokens.index(eos_id) + 1] if eos_id in tokens else tokens


def generate_sorted(model, prompts: Sequence[Sequence[int]], pad_id: int, eos_id: int, batch_size: int, desc: str,
                    num_return_sequences: int = 1, batch_kwargs: Callable[[int, np.ndarray], dict] | None = None,
                    **generate_kwargs) -> list[list[list[int]]]:
    """Per prompt, its `num_return_sequences` generated token lists (new tokens only, each cut after its first EOS).

    Greedy/beam decoding (``do_sample=False``); `batch_kwargs(width, idx)` adds `generate` options that depend on
    the batch: its padded prompt width (a trie constraint reads the generated part as ``sequence[width:]``) and the
    prompts it holds (``idx[b]`` is the prompt of batch row b).
    """
    model.eval()
    out: list[list[list[int]]] = [[] for _ in prompts]
    order = np.argsort([len(p) for p in prompts], kind="stable")
    with torch.inference_mode(), autocast(model):
        for start in progress(range(0, len(prompts), batch_size), desc, batch_size):
            idx = order[start: start + batch_size]
            ids, mask = left_pad([prompts[i] for i in idx], pad_id)
            width = ids.shape[1]
            extra = batch_kwargs(width, idx) if batch_kwargs is not None else {}
            sequences = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                       num_return_sequences=num_return_sequences, do_sample=False,
                                       pad_token_id=pad_id, eos_token_id=eos_id, **generate_kwargs, **extra)
            rows = sequences[:, width:].reshape(len(idx), num_return_sequences, -1).tolist()
            for r, i in enumerate(idx):
                out[i] = [cut_after_eos(seq, eos_id) for seq in rows[r]]
    return out
