"""CausalDPO's overhead over DPO, measured side by side: `python -m bench.perf.causal_overhead`.

Both train the same model on the same random pairs with the shared preference trainer, alternating DPO and CausalDPO
runs so drift on a shared machine hits both; prints the median seconds per epoch of each, their ratio (goal <= 1.05:
the regularizer adds a DBSCAN of a B x d' matrix and a B x B kernel) and the peak accelerator memory.

`--arch` picks the width: `tiny` (the tiny profile's Llama, CPU) or a real architecture built from its config with
random weights (`llama-3.2-1b`, `llama-3.1-8b`, `qwen2.5-7b`; no download), which with `--lora --bf16
--gradient-checkpointing` on a GPU is the paper profile's training path.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config
from transformers.utils import logging as hf_logging

from bench.backbone import add_lora
from bench.config import BackboneConfig
from methods.causal import CausalConfig, CausalRegularizer
from methods.losses import dpo_loss, mean_reduce
from methods.train.config import PreferenceConfig
from methods.train.preference_trainer import PreferencePairs, reference_logps, train_preference

ARCHS = {  # published shapes (config.json of each model); vocabulary sizes as released
    "tiny": (LlamaConfig, dict(vocab_size=2740, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=4, intermediate_size=256, tie_word_embeddings=True)),
    "llama-3.2-1b": (LlamaConfig, dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16,
                                       num_attention_heads=32, num_key_value_heads=8, intermediate_size=8192,
                                       tie_word_embeddings=True, rope_theta=500000.0)),
    "llama-3.1-8b": (LlamaConfig, dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32,
                                       num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336,
                                       tie_word_embeddings=False, rope_theta=500000.0)),
    "qwen2.5-7b": (Qwen2Config, dict(vocab_size=152064, hidden_size=3584, num_hidden_layers=28,
                                     num_attention_heads=28, num_key_value_heads=4, intermediate_size=18944,
                                     tie_word_embeddings=False)),
}


def build(arch: str, device: str, bf16: bool, lora: bool, checkpointing: bool, seed: int = 0):
    config_cls, shape = ARCHS[arch]
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if bf16 else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config_cls(pad_token_id=0, **shape), dtype=dtype)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:  # the paper profile's adapter: r 8, alpha 32, dropout 0.1 on every linear layer
        model = add_lora(model, BackboneConfig(lora=True))
        if checkpointing:
            model.enable_input_require_grads()
    return model


def random_pairs(n: int, vocab: int, prompt_len: int, title_len: int, seed: int = 0) -> PreferencePairs:
    rng = np.random.default_rng(seed)
    return PreferencePairs(
        prompts=[[1] + rng.integers(4, vocab, prompt_len - 1).tolist() for _ in range(n)],
        chosen=[rng.integers(4, vocab, title_len).tolist() + [2] for _ in range(n)],
        rejected=[[rng.integers(4, vocab, title_len).tolist() + [2]] for _ in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny", choices=sorted(ARCHS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=50, help="prompt tokens (tiny titles: ~5 tokens each)")
    parser.add_argument("--title-len", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    cuda = torch.device(args.device).type == "cuda"
    vocab = ARCHS[args.arch][1]["vocab_size"]
    pairs = random_pairs(args.pairs, vocab, args.prompt_len, args.title_len)
    start = time.perf_counter()
    ref_model = build(args.arch, args.device, args.bf16, False, False)
    ref = reference_logps(ref_model, pairs, 0, args.device)
    del ref_model
    print(f"reference pass: {time.perf_counter() - start:.1f}s for {len(pairs)} pairs (build included)")
    cfg = PreferenceConfig(epochs=1, learning_rate=2e-5, batch_size=args.batch_size)
    times: dict[str, list[float]] = {"dpo": [], "causaldpo": []}
    memory: dict[str, float] = {}
    for _ in range(args.repeats):
        for name in times:
            model = build(args.arch, args.device, args.bf16, args.lora, args.gradient_checkpointing)
            hidden = model.config.hidden_size
            reg = CausalRegularizer(hidden, CausalConfig()) if name == "causaldpo" else None
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            _, seconds, _ = train_preference(model, pairs, ref, lambda p, r: dpo_loss(p, r, 0.1), mean_reduce, 0.1,
                                             cfg, 0, args.device, 0, reg,
                                             dtype="bfloat16" if args.bf16 else "float32")
            times[name].append(seconds)
            if cuda:
                memory[name] = torch.cuda.max_memory_allocated() / 2**30
            del model, reg
            if cuda:
                torch.cuda.empty_cache()
    dpo, causal = statistics.median(times["dpo"]), statistics.median(times["causaldpo"])
    steps = -(-args.pairs // args.batch_size)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"arch {args.arch} on {device_name}: bf16 {args.bf16}, LoRA {args.lora}, "
          f"gradient checkpointing {args.gradient_checkpointing}; pairs {args.pairs}, batch {args.batch_size}, "
          f"sequence {args.prompt_len}+{args.title_len + 1} tokens, repeats {args.repeats}")
    for name, value in (("dpo", dpo), ("causaldpo", causal)):
        mem = f", peak {memory[name]:.1f} GiB" if name in memory else ""
        print(f"{name:<10} {value:8.2f} s/epoch ({1000 * value / steps:.0f} ms/step){mem}  {times[name]}")
    print(f"ratio causaldpo/dpo = {causal / dpo:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
