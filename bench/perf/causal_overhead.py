"""CausalDPO's overhead over DPO, measured side by side: `python -m bench.perf.causal_overhead`.

Both train the same tiny Llama (tiny-profile widths) on the same random pairs with the shared preference trainer,
alternating DPO and CausalDPO runs so drift on a shared machine hits both; prints the median seconds per epoch of
each and their ratio (goal <= 1.05: the regularizer adds a DBSCAN of a B x d' matrix and a B x B kernel).
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from bench.config import PreferenceConfig
from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import dpo_loss, mean_reduce
from methods.trainer import PreferencePairs, reference_logps, train_preference


def model(vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=4, intermediate_size=256, pad_token_id=0,
                                        tie_word_embeddings=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    rng = np.random.default_rng(0)
    vocab = 2740
    pairs = PreferencePairs(prompts=[[1] + rng.integers(4, vocab, 50).tolist() for _ in range(args.pairs)],
                            chosen=[rng.integers(4, vocab, 4).tolist() + [2] for _ in range(args.pairs)],
                            rejected=[[rng.integers(4, vocab, 4).tolist() + [2]] for _ in range(args.pairs)])
    ref = reference_logps(model(vocab), pairs, 0, "cpu")
    cfg = PreferenceConfig(epochs=1, learning_rate=2e-5, batch_size=16)
    times: dict[str, list[float]] = {"dpo": [], "causaldpo": []}
    for _ in range(args.repeats):
        for name in times:
            reg = CausalRegularizer(64, CausalConfig()) if name == "causaldpo" else None
            _, seconds, _ = train_preference(model(vocab), pairs, ref, lambda p, r: dpo_loss(p, r, 0.1),
                                             mean_reduce, 0.1, cfg, 0, "cpu", 0, reg)
            times[name].append(seconds)
    dpo, causal = statistics.median(times["dpo"]), statistics.median(times["causaldpo"])
    print(f"pairs {args.pairs}, batch {cfg.batch_size}, repeats {args.repeats}")
    print(f"dpo        {dpo:8.2f} s/epoch  {times['dpo']}")
    print(f"causaldpo  {causal:8.2f} s/epoch  {times['causaldpo']}")
    print(f"ratio causaldpo/dpo = {causal / dpo:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
