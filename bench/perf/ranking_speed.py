"""Speed of full-catalogue likelihood scoring: naive per-pair scoring vs `methods.ranking.score_all`.

Builds a tiny random Llama (2 layers, hidden 64, 4 heads, intermediate 256, vocab 2,700) and a synthetic catalogue of
1,440 items whose completions have 2-8 tokens (1-7 title tokens + EOS; title tokens drawn Zipf-like, as words in real
titles, so titles share prefixes; ``--uniform`` draws them uniformly, with almost no sharing), prompts of 60-120
tokens. Naive scoring runs every (prompt, item) pair as its own right-padded sequence, 256 sequences per forward
call, on a few prompts; `score_all` runs on more. Prints seconds per prompt for both, their ratio, and the largest
score difference on the prompts both scored.

    python -m bench.perf.ranking_speed [--prompts 64] [--naive-prompts 3] [--uniform]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from methods.ranking import Catalogue, score_all
from methods.ranking.likelihood import _plan

VOCAB, BOS, EOS, PAD = 2700, 1, 2, 0


def build(n_items: int, n_prompts: int, uniform: bool, seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    model = LlamaForCausalLM(config).float().eval()
    rng = np.random.default_rng(seed)
    weights = np.full(VOCAB - 3, 1.0) if uniform else 1.0 / np.arange(1, VOCAB - 2)
    weights /= weights.sum()
    titles: set[tuple[int, ...]] = set()
    while len(titles) < n_items:
        titles.add(tuple(3 + rng.choice(VOCAB - 3, size=int(rng.integers(1, 8)), p=weights)))
    completions = [list(map(int, t)) + [EOS] for t in sorted(titles, key=lambda t: rng.random())]
    catalogue = Catalogue(items=list(range(n_items)), completions=completions, eos_id=EOS, pad_id=PAD)
    prompts = [[BOS] + rng.integers(3, VOCAB, size=int(rng.integers(59, 120))).tolist() for _ in range(n_prompts)]
    return model, catalogue, prompts


def naive_scores(model, prompts, catalogue: Catalogue, batch: int = 256) -> np.ndarray:
    """Every (prompt, item) pair as its own sequence, right-padded, `batch` sequences per forward call."""
    pairs = [(i, j) for i in range(len(prompts)) for j in range(len(catalogue))]
    out = np.zeros((len(prompts), len(catalogue)))
    with torch.inference_mode():
        for start in range(0, len(pairs), batch):
            chunk = pairs[start: start + batch]
            seqs = [prompts[i] + catalogue.completions[j] for i, j in chunk]
            ids = torch.full((len(seqs), max(map(len, seqs))), PAD)
            mask = torch.zeros_like(ids)
            for r, s in enumerate(seqs):
                ids[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
            logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
            for r, (i, j) in enumerate(chunk):
                c, p = catalogue.completions[j], len(prompts[i])
                out[i, j] = logp[r, torch.arange(p - 1, p - 1 + len(c)), torch.tensor(c)].sum().item()
    return out


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1440)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--naive-prompts", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="likelihood timings; the median is reported")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-len", type=int, help="score_all option (default: its own)")
    parser.add_argument("--max-tokens", type=int, help="score_all option (default: its own)")
    parser.add_argument("--uniform", action="store_true", help="uniform title tokens (little prefix sharing)")
    args = parser.parse_args()

    model, catalogue, prompts = build(args.items, args.prompts, args.uniform)
    options = {k: v for k, v in (("chunk_len", args.chunk_len), ("max_tokens", args.max_tokens)) if v is not None}
    _, t_plan = timed(_plan, catalogue, options.get("chunk_len", 64))
    plan = _plan(catalogue, options.get("chunk_len", 64))
    pair_tokens = sum(len(c) - 1 for c in catalogue.completions)
    print(f"torch threads {torch.get_num_threads()}, {len(catalogue)} items, {len(prompts)} prompts of "
          f"{min(map(len, prompts))}-{max(map(len, prompts))} tokens; completion tokens fed per prompt: "
          f"{plan.n_fed} with trie sharing vs {pair_tokens} without, in {plan.tokens.shape[0]} chunks "
          f"(plan built once per catalogue in {t_plan:.2f} s)")

    score_all(model, prompts[:2], catalogue, args.batch_size, **options)  # warm-up
    runs = [timed(score_all, model, prompts, catalogue, args.batch_size, **options) for _ in range(args.repeats)]
    fast, t_fast = runs[0][0], float(np.median([t for _, t in runs]))
    naive, t_naive = timed(naive_scores, model, prompts[: args.naive_prompts], catalogue)
    naive_s, fast_s = t_naive / args.naive_prompts, t_fast / len(prompts)
    print(f"naive      {naive_s:8.4f} s/prompt  ({args.naive_prompts} prompts)")
    print(f"likelihood {fast_s:8.4f} s/prompt  ({len(prompts)} prompts, median of {args.repeats} runs)")
    print(f"ratio      {naive_s / fast_s:8.1f}x")
    print(f"max |likelihood - naive| = {np.abs(fast[: args.naive_prompts] - naive).max():.2e}")


if __name__ == "__main__":
    main()
