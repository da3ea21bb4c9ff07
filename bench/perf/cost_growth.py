"""How cost grows with catalogue size, history length and number of negatives: `python -m bench.perf.cost_growth`.

One process, one random-init model (`--arch`, default the tiny profile's Llama; `causal_overhead.build`), four axes:

1. likelihood full-catalogue ranking (`methods.ranking.score_all`), seconds per test prompt vs catalogue size, on
   synthetic catalogues of Zipf-like titles (`ranking_speed.build`: 1-7 title tokens + EOS), 60-token prompts;
2. the same vs history length: a history of h items is a prompt of about 10 + 5h tokens (tiny titles ~5 tokens);
3. preference training (`methods.train.preference_trainer.train_preference`, DPO loss, batch 16) milliseconds per step vs history;
4. the same vs the number of negatives K (the trainer runs (1+K)·B rows in one forward), with and without the causal
   regularizer (`CausalRegularizer`), whose extra cost should not grow with K (it sees the B chosen rows only).

Settings are measured round-robin, `--repeats` times, and the median is kept, so drift on a shared machine hits all
of them alike. Each table gives the value and its growth over the smallest setting; each axis gets the log-log slope
(the fitted exponent of cost ~ size^a). Reference log-probs are zeros: they change the loss value, not its cost.
Plan-building of a catalogue (once per catalogue) and model building are not timed. `--quick` shrinks every axis
to a few seconds in all (for tests).

Extrapolating to the paper profile (Llama-3.1-8B, LoRA, bf16). Cost grows about in proportion to the tokens a stage
processes (fitted exponents near 1 here; at 8B, which is compute-bound, also near 1): a training step with (1+K) x
sequence tokens, likelihood ranking with the catalogue's trie tokens ("tokens fed", ~3.5 per item here), while
prompt length hardly changes ranking cost (the prompt runs once; the trie is ~100x more tokens). The causal
regularizer's cost does not grow with K (a few ms per step at most, within a shared machine's noise). Do not scale
tiny seconds by the parameter ratio (8.0e9 vs 3e5: the tiny model is far from compute-bound); scale from a measured
8B anchor: one DPO step of 16 pairs of 213-token sequences took 1.0 s on one H200 (README), so a step costs ~1.0 s x
(1+K)/2 x (sequence tokens / 213) and an epoch that times pairs / 16. Likelihood ranking costs ~2 x 8.0e9 FLOPs x
(prompt + fed tokens) per prompt. Catalogues (paper Table 2, before the user filters; `python -m bench data stats`
prints ours after them): ML-10M 10,681 items, Yelp2018 38,048, Book-Crossing 271,379; at ~8 Llama tokens per title,
~8e4 to ~2e6 fed tokens, ~1.4e15 to ~3.5e16 FLOPs per test prompt: ~4 s (ML-10M) to ~90 s (Book-Crossing) on one
H100 at an assumed 4e14 FLOP/s achieved. That is why the paper profile ranks by grounding: one generation per
prompt, one embedding pass over the catalogue per model, then an items x d distance per prompt.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import time
from typing import Callable

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from bench.perf import ranking_speed
from bench.perf.causal_overhead import ARCHS, build, random_pairs
from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import dpo_loss, mean_reduce
from methods.ranking import score_all
from methods.ranking.likelihood import _plan
from methods.train.config import PreferenceConfig
from methods.train.preference_trainer import PreferencePairs, train_preference

TITLE_LEN = 4          # + EOS: 5 tokens per completion, as tiny titles
BASE_HISTORY = 10      # the profiles' history length (data.history_len)
FULL = dict(items=(400, 800, 1682, 3200, 6400), histories=(5, 10, 20, 40), negatives=(1, 2, 4, 8),
            base_items=1682, prompts=16, pairs=128, batch=16, repeats=3)
QUICK = dict(items=(100, 200), histories=(2, 4), negatives=(1, 2), base_items=100, prompts=2, pairs=8, batch=4,
             repeats=1)


def prompt_tokens(history: int) -> int:
    return 10 + 5 * history


def median_of_rounds(settings: dict, measure: Callable, repeats: int) -> dict:
    """measure(setting) for every setting, round-robin `repeats` times; the median per setting."""
    values: dict = {s: [] for s in settings}
    for _ in range(repeats):
        for s in settings:
            values[s].append(measure(s))
    return {s: statistics.median(v) for s, v in values.items()}


def ranking_seconds(model, catalogue, prompt_len: int, n_prompts: int, batch: int, vocab: int) -> float:
    rng = np.random.default_rng(prompt_len)
    prompts = [[1] + rng.integers(4, vocab, prompt_len - 1).tolist() for _ in range(n_prompts)]
    start = time.perf_counter()
    score_all(model, prompts, catalogue, batch)
    return (time.perf_counter() - start) / n_prompts


def pairs_with_negatives(n: int, vocab: int, prompt_len: int, k: int) -> PreferencePairs:
    pairs = random_pairs(n, vocab, prompt_len, TITLE_LEN, seed=0)
    extra = [random_pairs(n, vocab, prompt_len, TITLE_LEN, seed=j) for j in range(1, k)]
    pairs.rejected = [[r[0]] + [e.rejected[i][0] for e in extra] for i, r in enumerate(pairs.rejected)]
    return pairs


def train_ms_per_step(arch: str, device: str, pairs: PreferencePairs, batch: int, causal: bool) -> float:
    model = build(arch, device, False, False, False)
    k = len(pairs.rejected[0])
    ref = (np.zeros(len(pairs), dtype=np.float32), np.zeros((len(pairs), k), dtype=np.float32))
    reg = CausalRegularizer(model.config.hidden_size, CausalConfig()) if causal else None
    cfg = PreferenceConfig(epochs=1, learning_rate=2e-5, batch_size=batch)
    with contextlib.redirect_stdout(io.StringIO()):   # the Trainer prints its summary dict
        _, seconds, _ = train_preference(model, pairs, ref, lambda p, r: dpo_loss(p, r, 0.1), mean_reduce, 0.1, cfg,
                                         0, device, 0, reg)
    return 1000 * seconds / math.ceil(len(pairs) / batch)


def slope(xs, ys) -> float:
    """Least-squares slope of log y on log x: cost ~ x^slope."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def growth_rows(keys, values: dict, fmt: str, extra: Callable = lambda k: []) -> list[list]:
    first = values[keys[0]]
    return [[k, *extra(k), format(values[k], fmt), f"{values[k] / first:.2f}x"] for k in keys]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny", choices=sorted(ARCHS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="a few seconds in all (for tests)")
    parser.add_argument("--repeats", type=int, help="rounds per axis; the median is kept (default 3, quick 1)")
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    s = dict(QUICK if args.quick else FULL)
    if args.repeats:
        s["repeats"] = args.repeats
    vocab = ARCHS[args.arch][1]["vocab_size"]
    model = build(args.arch, args.device, False, False, False).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"arch {args.arch} ({params / 1e6:.2f}M parameters) on {args.device}, torch threads "
          f"{torch.get_num_threads()}; median of {s['repeats']} round-robin rounds per axis\n")

    catalogues = {n: ranking_speed.build(n, 0, uniform=False)[1] for n in s["items"]}
    fed = {n: _plan(c, 64).n_fed for n, c in catalogues.items()}      # builds and caches each plan (not timed)
    base_len = prompt_tokens(BASE_HISTORY)
    ranking_seconds(model, catalogues[s["items"][0]], base_len, 2, s["batch"], vocab)   # warm-up
    by_items = median_of_rounds(s["items"], lambda n: ranking_seconds(
        model, catalogues[n], base_len, s["prompts"], s["batch"], vocab), s["repeats"])
    print(f"## Likelihood ranking vs catalogue size ({base_len}-token prompts, {s['prompts']} prompts, "
          f"batch {s['batch']})\n")
    print(table(["items", "tokens fed / prompt", "s / prompt", "growth"],
                growth_rows(s["items"], by_items, ".4f", lambda n: [fed[n]])))
    print(f"\nfitted exponent: s/prompt ~ items^{slope(s['items'], [by_items[n] for n in s['items']]):.2f}\n")

    base = catalogues[s["base_items"]]
    by_history = median_of_rounds(s["histories"], lambda h: ranking_seconds(
        model, base, prompt_tokens(h), s["prompts"], s["batch"], vocab), s["repeats"])
    lens = [prompt_tokens(h) for h in s["histories"]]
    print(f"## Likelihood ranking vs history length ({len(base)} items)\n")
    print(table(["history items", "prompt tokens", "s / prompt", "growth"],
                growth_rows(s["histories"], by_history, ".4f", lambda h: [prompt_tokens(h)])))
    print(f"\nfitted exponent: s/prompt ~ prompt_tokens^{slope(lens, [by_history[h] for h in s['histories']]):.2f}\n")
    del model

    pairs = {h: pairs_with_negatives(s["pairs"], vocab, prompt_tokens(h), 1) for h in s["histories"]}
    train_hist = median_of_rounds(s["histories"], lambda h: train_ms_per_step(
        args.arch, args.device, pairs[h], s["batch"], False), s["repeats"])
    print(f"## DPO training vs history length (K=1, batch {s['batch']}, {s['pairs']} pairs)\n")
    print(table(["history items", "sequence tokens", "ms / step", "growth"],
                growth_rows(s["histories"], train_hist, ".1f", lambda h: [prompt_tokens(h) + TITLE_LEN + 1])))
    print(f"\nfitted exponent: ms/step ~ prompt_tokens^{slope(lens, [train_hist[h] for h in s['histories']]):.2f}\n")

    k_pairs = {k: pairs_with_negatives(s["pairs"], vocab, base_len, k) for k in s["negatives"]}
    runs = [(k, causal) for k in s["negatives"] for causal in (False, True)]
    train_k = median_of_rounds(runs, lambda run: train_ms_per_step(
        args.arch, args.device, k_pairs[run[0]], s["batch"], run[1]), s["repeats"])
    dpo = {k: train_k[(k, False)] for k in s["negatives"]}
    print(f"## DPO training vs negatives K ({base_len}-token prompts, batch {s['batch']}), with the causal "
          "regularizer\n")
    rows = [row + [f"{train_k[(k, True)]:.1f}", f"{train_k[(k, True)] - dpo[k]:+.1f}"]
            for row, k in zip(growth_rows(s["negatives"], dpo, ".1f", lambda k: [(1 + k) * s["batch"]]),
                              s["negatives"])]
    print(table(["K", "rows / forward", "dpo ms / step", "growth", "causaldpo ms / step", "causal overhead ms"],
                rows))
    rows_k = [1 + k for k in s["negatives"]]
    overhead = [train_k[(k, True)] - dpo[k] for k in s["negatives"]]
    print(f"\nfitted exponent: ms/step ~ (1+K)^{slope(rows_k, [dpo[k] for k in s['negatives']]):.2f}; causal "
          f"overhead {overhead[0]:+.1f} ms at K={s['negatives'][0]}, {overhead[-1]:+.1f} ms at "
          f"K={s['negatives'][-1]}\n")
    print(__doc__[__doc__.index("Extrapolating"):].strip())


if __name__ == "__main__":
    main()
