"""D3 decoding (Bao et al., "Decoding Matters", EMNLP 2024, arXiv 2406.14900): trie-constrained beam search with no
length normalisation, each step's token scores mixed with a text-free assistant (a conventional recommender).

For a beam whose generated prefix h ends at trie node n, with allowed children A(h) (tokens that keep h in the
catalogue), and the assistant's item distribution P_S(i|u):

    p_TF(v | h) = M(h v) / sum_{v' in A(h)} M(h v'),        M(prefix) = sum of P_S(i|u) over items under prefix
    s'(v | h)   = g * log_softmax(LLM logits)(v) + (1 - g) * log p_TF(v | h),    v in A(h)

and a sequence's score is sum_t s'(v_t | h_<t) (``length_penalty=0``: HF divides by length**0 = 1). g is the
guidance scale: g = 1 is plain constrained decoding without length normalisation. The LLM term is the log-softmax
over the whole vocabulary (HF's beam search applies it before the processors; tokens outside A(h) are -inf), as in
the official `CFEnhancedLogitsProcessor`.

Implementation. `TrieMass` sorts the catalogue's completions; the items under a prefix are then one contiguous run,
found by bisection and cached per prefix, so M(prefix) is a difference of a cumulative sum of P_S in that order.
`TextFreeAssistant` is a `LogitsProcessor` applying the mix row by row (row r of a generate batch belongs to prompt
r // num_beams). `d3_rank` runs `methods.ranking.beam` (same trie, EOS handling, output mapping and valid flags as the
``beam`` protocol) on prompts taken in length order, so each `generate` call sees its prompts in the order the
processor was given them (checked on the first step).

Choices: P_S = softmax of the assistant's logits over the catalogue, mixed with a uniform floor
P_S <- (1 - eps) P_S + eps / n (eps = `floor`, default 1e-6) so that items the assistant cannot score (-inf, e.g.
never seen by SASRec) stay reachable instead of making every prefix above them impossible; a row with no finite
logit is uniform. Dead-end beams (prefix outside the trie) are left as they are.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from methods.ranking.beam import beam
from methods.ranking.catalogue import Catalogue, Ranking


class TrieMass:
    """Which items lie under each completion prefix, as a [lo, hi) run of the lexicographically sorted completions."""

    def __init__(self, catalogue: Catalogue):
        self.trie = catalogue.trie
        self.order = np.array(sorted(range(len(catalogue)), key=lambda i: tuple(catalogue.completions[i])))
        self.keys = [tuple(int(t) for t in catalogue.completions[i]) for i in self.order]
        self._children: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}

    def children(self, prefix: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(allowed tokens, lo, hi) for `prefix`; the items under ``prefix + (v,)`` are ``order[lo:hi]``."""
        if prefix not in self._children:
            tokens = self.trie.allowed(prefix)
            if not tokens:
                self._children[prefix] = None
            else:
                lo = [bisect_left(self.keys, prefix + (v,)) for v in tokens]
                hi = [bisect_left(self.keys, prefix + (v + 1,)) for v in tokens]
                self._children[prefix] = (np.array(tokens), np.array(lo), np.array(hi))
        return self._children[prefix]

    def cumulative(self, probs: np.ndarray) -> np.ndarray:
        """(m, n + 1) float64 cumulative sums of (m, n) item probabilities, in sorted-completion order."""
        out = np.zeros((len(probs), probs.shape[1] + 1))
        np.cumsum(probs[:, self.order], axis=1, out=out[:, 1:])
        return out

    def log_p_tf(self, cumulative: np.ndarray, prefix: tuple) -> tuple[np.ndarray, np.ndarray] | None:
        """(allowed tokens, log p_TF over them) for one user's cumulative row; None outside the trie."""
        found = self.children(prefix)
        if found is None:
            return None
        tokens, lo, hi = found
        mass = cumulative[hi] - cumulative[lo]
        return tokens, np.log(mass) - np.log(mass.sum())


def assistant_distribution(logits: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """P_S: row-wise softmax of (m, n) logits (-inf allowed) mixed with a uniform `floor`, float64."""
    logits = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(logits)
    top = np.where(finite.any(1), np.max(np.where(finite, logits, -np.inf), axis=1), 0.0)
    weights = np.where(finite, np.exp(logits - top[:, None]), 0.0)
    total = weights.sum(1, keepdims=True)
    probs = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 1.0 / logits.shape[1])
    return (1.0 - floor) * probs + floor / logits.shape[1]


class TextFreeAssistant(LogitsProcessor):
    """s' = g * s + (1 - g) * log p_TF on the allowed tokens of each beam; everything else -inf."""

    def __init__(self, mass: TrieMass, cumulative: np.ndarray, prompts: Sequence[Sequence[int]], num_beams: int,
                 guidance_scale: float):
        self.mass, self.cumulative, self.prompts = mass, cumulative, prompts
        self.num_beams, self.g = num_beams, float(guidance_scale)
        self.width: int | None = None

    def _check(self, input_ids: torch.Tensor) -> None:
        self.width = input_ids.shape[1]
        if input_ids.shape[0] != len(self.prompts) * self.num_beams:
            raise RuntimeError(f"{input_ids.shape[0]} rows for {len(self.prompts)} prompts x {self.num_beams} beams")
        for r, prompt in enumerate(self.prompts):
            if input_ids[r * self.num_beams, self.width - len(prompt):].tolist() != list(prompt):
                raise RuntimeError("generate's rows are not in the order of the assistant's prompts")

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.width is None:
            self._check(input_ids)
        out = torch.full_like(scores, -float("inf"))
        for r, prefix in enumerate(input_ids[:, self.width:].tolist()):
            found = self.mass.log_p_tf(self.cumulative[r // self.num_beams], tuple(prefix))
            if found is None:  # outside the trie (dead end): leave the row to the trie constraint
                out[r] = scores[r]
                continue
            tokens = torch.as_tensor(found[0], device=scores.device)
            log_tf = torch.as_tensor(found[1], dtype=scores.dtype, device=scores.device)
            out[r, tokens] = self.g * scores[r, tokens] + (1.0 - self.g) * log_tf
        return out


def d3_rank(model, prompts: list[list[int]], assistant_logits: np.ndarray, catalogue: Catalogue, k: int = 20,
            batch_size: int = 4, guidance_scale: float = 0.8, length_penalty: float = 0.0, floor: float = 1e-6,
            mass: TrieMass | None = None, exclude: Sequence[np.ndarray] | None = None) -> Ranking:
    """Top-k catalogue positions per prompt by D3 decoding; `assistant_logits` is (n_prompts, n_items)."""
    mass = mass or TrieMass(catalogue)
    topk = np.full((len(prompts), k), -1, dtype=np.int64)
    valid = np.zeros(len(prompts), dtype=bool)
    order = np.argsort([len(p) for p in prompts], kind="stable")  # beam() keeps a length-sorted batch in order
    for start in range(0, len(prompts), batch_size):
        idx = order[start: start + batch_size]
        batch = [prompts[i] for i in idx]
        cumulative = mass.cumulative(assistant_distribution(assistant_logits[idx], floor))
        assistant = TextFreeAssistant(mass, cumulative, batch, k, guidance_scale)
        result = beam(model, batch, catalogue, k=k, batch_size=len(batch), length_penalty=length_penalty,
                      logits_processor=LogitsProcessorList([assistant]),
                      exclude=None if exclude is None else [exclude[i] for i in idx])
        topk[idx], valid[idx] = result.topk, result.valid
    return Ranking(topk=topk, valid=valid)
