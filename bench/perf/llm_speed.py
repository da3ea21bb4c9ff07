"""The real-LLM path's speed, options off vs on, side by side: `python -m bench.perf.llm_speed --backbone smollm2-135m`.

Measures, in one process on the same model and the same samples (real ML-100K titles in the run's prompt template,
`--history` titles per prompt), real (non-padding) tokens per second of:

* an SFT step (LoRA r 8, AdamW, completion-only loss) and a preference step (DPO, 1 chosen + 1 rejected per prompt),
  each row adding one option to the row above: the LM head on every position (TRL's way; the baseline), the LM head
  only where the loss reads it (`completion_logps`, the code's way), bf16 autocast (`backbone.autocast`), an empty
  system turn instead of the chat template's default one (`backbone.chat_system`), length-grouped batches
  (`sft.group_by_length`; SFT only: the preference trainer does not take it yet) and LoRA on the top
  `--lora-layers` layers only (`backbone.lora_layers`);
* a reference pass (the no-gradient forward of the preference log-probs) and each ranking protocol (grounding:
  greedy generation plus the backbone embedder; likelihood: exact top-k scoring of `--items` titles; beam:
  trie-constrained beam search with `--beams` beams over the same titles), fp32 vs bf16 autocast with the empty
  system turn.

Next to them: the machine's matmul throughput (a timed `torch.matmul` of the MLP's shape, batch x tokens rows,
fp32 and bf16), and for each row the fraction of that limit the path reaches: its matmul FLOPs (forward 2 x
linear parameters per token plus the LM head where computed, backward the activation gradients down to the lowest
trained layer; LoRA's own weights neglected) per second over the matmul's FLOP/s in the row's dtype. The rows of a
table run interleaved (one step, or one ranking call, of each row in turn), so that a shared machine's drifting
load hits every row alike; compare rows of one run, never across runs. `--backbone tiny-llama` with small sizes is
what CI runs.

    python -m bench.perf.llm_speed [--backbone smollm2-135m] [--batch 8] [--steps 3] [--prompts 4] [--items 200]
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from bench.backbone import add_lora, build_model, load_tokenizer
from bench.config import BackboneConfig
from bench.prompts import encode_completion, encode_prompt, render_prompt, uses_chat_template
from bench.results import cpu_model
from methods.losses import LogProbs, dpo_loss
from methods.ranking import Catalogue, rank
from methods.ranking.grounding import BackboneEmbedder
from methods.ranking.likelihood import score_all
from methods.train.batching import LengthGroupedSampler, padding_share
from methods.train.precision import native_bf16_cpu, set_autocast
from methods.train.sequences import completion_logps, left_padded, padded_causal_mask
from methods.train.sft import completion_loss
from splits import load_dataset

BF16 = torch.bfloat16


def matmul_flops(rows: int, inner: int, cols: int, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Measured FLOP/s of a (rows x inner) @ (inner x cols) matmul in `dtype`."""
    a, b = torch.randn(rows, inner).to(dtype), torch.randn(inner, cols).to(dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * rows * inner * cols * count / (time.perf_counter() - start)


class Shape:
    """Matmul FLOPs of one backbone: 2 x parameters of its decoder's linear layers per token, plus the LM head."""

    def __init__(self, model):
        head = model.get_output_embeddings()
        self.layers = model.config.num_hidden_layers
        self.body = sum(m.weight.numel() for m in model.modules()
                        if isinstance(m, torch.nn.Linear) and m is not head and "lora" not in type(m).__name__.lower())
        self.head = head.weight.numel()

    def forward(self, tokens: int, head_positions: int) -> float:
        return 2 * self.body * tokens + 2 * self.head * head_positions

    def train(self, tokens: int, head_positions: int, backward_layers: int) -> float:
        """Forward plus the activation gradients through the top `backward_layers` layers and the LM head."""
        return self.forward(tokens, head_positions) + 2 * self.body * tokens * backward_layers / self.layers \
            + 2 * self.head * head_positions


def full_head_logps(model, ids, mask, positions, lengths):
    """`completion_logps` with the LM head on every position (TRL's way): the baseline row."""
    out = model(input_ids=ids, attention_mask=padded_causal_mask(mask, torch.float32), position_ids=positions,
                use_cache=False)
    keep = int(lengths.max()) + 1
    logits = out.logits[:, -keep:-1].float()
    token_logps = torch.gather(logits.log_softmax(-1), 2, ids[:, -(keep - 1):].unsqueeze(2)).squeeze(2)
    column = torch.arange(keep - 1).unsqueeze(0)
    return (token_logps * (column >= (keep - 1 - lengths).unsqueeze(1))).sum(1)


class Samples:
    """Prompts (token ids, in the run's template), their target and a rejected title, from real ML-100K titles."""

    def __init__(self, tokenizer, chat: bool, titles: list[str], history: int, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.prompts, self.chosen, self.rejected = [], [], []
        for _ in range(n):
            picked = rng.choice(len(titles), size=history + 2, replace=False)
            text = render_prompt([titles[i] for i in picked[:history]], "movie", tokenizer if chat else None)
            self.prompts.append(encode_prompt(tokenizer, text, chat))
            self.chosen.append(encode_completion(tokenizer, titles[picked[-2]], chat))
            self.rejected.append(encode_completion(tokenizer, titles[picked[-1]], chat))

    def lengths(self) -> list[int]:
        return [len(p) + len(c) for p, c in zip(self.prompts, self.chosen)]


def batches(samples: Samples, size: int, steps: int, grouped: bool) -> list[np.ndarray]:
    if grouped:
        return LengthGroupedSampler(samples.lengths(), size, seed=0).batches()[:steps]
    order = np.random.default_rng(0).permutation(len(samples.prompts))
    return [order[i * size: (i + 1) * size] for i in range(steps)]


class TrainingRow:
    """One row of a training table: its own LoRA model and optimizer, timed one step at a time, so that the rows'
    steps can be interleaved (drift on a shared machine then hits every row alike)."""

    def __init__(self, model, samples: Samples, plan: list[np.ndarray], pad: int, preference: bool,
                 full_head: bool, shape: Shape, backward_layers: int):
        self.model, self.samples, self.plan, self.pad = model, samples, plan, pad
        self.preference, self.full_head, self.shape, self.backward_layers = (preference, full_head, shape,
                                                                             backward_layers)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        self.tokens = self.rows = self.flops = self.seconds = 0.0

    def step(self, i: int, timed: bool) -> None:
        idx, samples = self.plan[i], self.samples
        prompts = [samples.prompts[j] for j in idx] * (2 if self.preference else 1)
        completions = [samples.chosen[j] for j in idx] + ([samples.rejected[j] for j in idx]
                                                          if self.preference else [])
        ids, mask, positions, lengths = left_padded(prompts, completions, self.pad, "cpu")
        self.model.train()
        start = time.perf_counter()
        if self.full_head:
            logps = full_head_logps(self.model, ids, mask, positions, lengths)
        else:
            logps = completion_logps(self.model, ids, mask, positions, lengths)[0]
        if self.preference:
            b = len(idx)
            policy = LogProbs(logps[:b], logps[b:, None], lengths[:b], lengths[b:, None])
            reference = LogProbs(logps[:b].detach() - 0.1, logps[b:, None].detach(), lengths[:b], lengths[b:, None])
            loss = dpo_loss(policy, reference, SimpleNamespace(beta=0.1)).mean()
        else:
            loss = completion_loss(logps, lengths)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not timed:
            return
        self.seconds += time.perf_counter() - start
        self.tokens += float(mask.sum())
        self.rows += len(idx)
        head = ids.numel() if self.full_head else len(ids) * int(lengths.max())
        self.flops += self.shape.train(ids.numel(), head, self.backward_layers)

    def rates(self) -> tuple[float, float, float]:
        """(real tokens/s, samples/s, matmul FLOP/s) of the timed steps."""
        return self.tokens / self.seconds, self.rows / self.seconds, self.flops / self.seconds


def ranking_run(stage: str, model, dtype, tok, s: Samples, titles: list[str], chat: bool, embedder, args,
                shape: Shape):
    """(run, work): `run()` does one call of `stage` with `model` under autocast `dtype`; `work(result)` gives its
    (prompts, tokens, matmul FLOPs)."""
    pad = tok.pad_token_id
    prompts = s.prompts[: args.prompts]
    prompt_tokens = sum(len(p) for p in prompts)
    completions = [encode_completion(tok, t, chat) for t in titles[: args.items]]
    catalogue = Catalogue(items=list(range(len(completions))), completions=completions, eos_id=tok.eos_token_id,
                          pad_id=pad)

    def under(call):
        def run():
            set_autocast(model, dtype)
            try:
                return call()
            finally:
                set_autocast(model, None)
        return run

    if stage == "reference pass":
        batch = left_padded(s.prompts[: args.batch] * 2, s.chosen[: args.batch] + s.rejected[: args.batch], pad, "cpu")

        def reference():
            with torch.no_grad():
                return completion_logps(model, *batch)[0]
        return under(reference), lambda _: (args.batch, float(batch[1].sum()), shape.forward(
            batch[0].numel(), len(batch[0]) * int(batch[3].max())))
    if stage == "grounding":
        new = 16 * len(prompts)   # an upper bound: generation stops at EOS
        return (under(lambda: rank("grounding", model, prompts, catalogue, k=10, batch_size=args.batch, tokenizer=tok,
                                   embedder=embedder, max_new_tokens=16)),
                lambda _: (len(prompts), prompt_tokens + new, shape.forward(prompt_tokens + new, new + len(prompts))))
    if stage == "likelihood":
        def work(scores):
            scored = np.isfinite(scores)
            title_tokens = sum(int(scored[:, j].sum()) * (len(c) - 1) for j, c in enumerate(completions))
            return (len(prompts), prompt_tokens + title_tokens,
                    shape.forward(prompt_tokens + title_tokens, title_tokens + len(prompts)))
        return under(lambda: score_all(model, prompts, catalogue, args.batch, top=10,
                                       bound_tokens=2 if chat else 1)), work
    fed = prompt_tokens + max(len(c) for c in completions) * args.beams * len(prompts)
    return (under(lambda: rank("beam", model, prompts, catalogue, k=args.beams, batch_size=max(1, args.batch // 4))),
            lambda _: (len(prompts), fed, shape.forward(fed, fed)))


def interleaved(runs: dict[str, callable], repeats: int) -> dict[str, tuple[float, object]]:
    """Per name, (seconds of `repeats` calls, the last result), the calls of all names interleaved after one warm-up
    call each."""
    for run in runs.values():
        run()
    seconds = dict.fromkeys(runs, 0.0)
    results = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name] += time.perf_counter() - start
    return {name: (seconds[name], results[name]) for name in runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m", help="smollm2-135m, tiny-llama, or any backbone name")
    parser.add_argument("--batch", type=int, default=8, help="prompts per training step")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per row (plus one warm-up)")
    parser.add_argument("--history", type=int, default=5, help="titles per prompt (the small profile's 5)")
    parser.add_argument("--lora-layers", type=int, default=10, help="the last SFT row's backbone.lora_layers")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per ranking measurement")
    parser.add_argument("--items", type=int, default=200, help="catalogue titles ranked (likelihood, beam)")
    parser.add_argument("--beams", type=int, default=10, help="beam protocol's beams (= its k)")
    parser.add_argument("--cache", help="cache folder (the dequantised GGUF model; default: a temporary folder)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per matmul probe")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per ranking measurement (plus a warm-up)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache or tmp)
        return run(args, cache)


def run(args, cache: Path) -> int:
    torch.manual_seed(0)
    data = load_dataset("ml-100k")
    titles = [data.titles[int(i)] for i in data.items]
    tiny = dict(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256) \
        if args.backbone.startswith("tiny") else {}
    cfg = BackboneConfig(name=args.backbone, lora=True, **tiny)
    texts = titles + [render_prompt(["x"], "movie")]
    tokenizers = {"default": load_tokenizer(cfg, texts, cache),
                  "empty": load_tokenizer(BackboneConfig(**{**cfg.__dict__, "chat_system": ""}), texts, cache)}
    chat = uses_chat_template(tokenizers["default"], None)
    base = build_model(BackboneConfig(**{**cfg.__dict__, "lora": False}), tokenizers["default"], 0, "cpu", cache)
    base.eval()
    pad = tokenizers["default"].pad_token_id
    n = max(args.batch * (args.steps + 1) * 4, 32)
    samples = {k: Samples(tok, chat, titles, args.history, n) for k, tok in tokenizers.items()}
    shape = Shape(base)
    cfg_ = base.config
    mean_tokens = int(np.mean(samples["default"].lengths()))
    rows = args.batch * mean_tokens
    def probe() -> dict[str, float]:
        return {"fp32": matmul_flops(rows, cfg_.hidden_size, cfg_.intermediate_size, torch.float32, args.seconds),
                "bf16": matmul_flops(rows, cfg_.hidden_size, cfg_.intermediate_size, BF16, args.seconds)}

    peak = probe()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# LLM path speed: {args.backbone} ({shape.layers} layers, {shape.body / 1e6:.1f}M linear parameters), "
          f"{cpu_model()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, load {load:.2f}, "
          f"native bf16 matmuls: {native_bf16_cpu()}")
    print(f"matmul {rows} x {cfg_.hidden_size} @ {cfg_.hidden_size} x {cfg_.intermediate_size}: "
          f"fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s "
          f"({peak['bf16'] / peak['fp32']:.2f}x)")
    print(f"prompts: {args.history} titles, mean {np.mean([len(p) for p in samples['default'].prompts]):.0f} tokens "
          f"with the template's default system turn, {np.mean([len(p) for p in samples['empty'].prompts]):.0f} "
          f"with an empty one (chat template: {chat})\n")

    def lora_model(layers):
        model = add_lora(copy.deepcopy(base), BackboneConfig(**{**cfg.__dict__, "lora_layers": layers}))
        backward = layers if layers is not None and layers < shape.layers else shape.layers
        return model, backward

    lines: list[str] = []           # the tables, printed once the second matmul probe gives the limit
    emit = lines.append

    def share(flop_s: float, dtype: str) -> str:
        return f"<<{dtype}:{flop_s!r}>>"

    steps = args.steps + 1
    for preference in (False, True):
        stage = "preference step (DPO, 1 chosen + 1 rejected)" if preference else "SFT step"
        emit(f"## {stage}, batch {args.batch}, rows' steps interleaved\n")
        emit("| options | real tokens/s | samples/s | speed-up | padding | GFLOP/s | of matmul limit |")
        emit("|---|---|---|---|---|---|---|")
        settings = [("fp32, LM head on every position (baseline)", None, "default", False, None, True),
                    ("+ LM head only where the loss reads it", None, "default", False, None, False),
                    ("+ bf16 autocast", BF16, "default", False, None, False),
                    ("+ empty system turn", BF16, "empty", False, None, False)]
        if not preference:
            settings.append(("+ length-grouped batches", BF16, "empty", True, None, False))
        settings.append((f"+ LoRA on the top {min(args.lora_layers, shape.layers)} of {shape.layers} layers only",
                         BF16, "empty", not preference, args.lora_layers, False))
        table = {}
        for label, dtype, system, grouped, layers, full_head in settings:
            if not chat and system == "empty":     # no chat template, no system turn: that row is skipped
                if label == "+ empty system turn":
                    continue
                system = "default"
            model, backward = lora_model(layers)
            set_autocast(model, dtype)
            table[label] = (TrainingRow(model, samples[system], batches(samples[system], args.batch, steps, grouped),
                                       pad, preference, full_head, shape, backward), dtype)
        for i in range(steps):
            for row, _ in table.values():
                row.step(i, timed=i > 0 or steps == 1)
        first = None
        for label, (row, dtype) in table.items():
            tok_s, sam_s, flop_s = row.rates()
            first = first or sam_s
            name = "bf16" if dtype is not None else "fp32"
            emit(f"| {label} | {tok_s:.0f} | {sam_s:.2f} | {sam_s / first:.2f}x | "
                 f"{padding_share(row.samples.lengths(), row.plan[1:] or row.plan):.0%} | {flop_s / 1e9:.1f} | "
                 f"{share(flop_s, name)} ({name}) |")
        del table
        emit("")

    emit(f"## reference pass and ranking ({args.prompts} prompts; likelihood and beam over {args.items} titles; "
          f"fp32 and bf16 calls interleaved)\n")
    emit("| stage | options | tokens/s | prompts/s | speed-up | GFLOP/s | of matmul limit |")
    emit("|---|---|---|---|---|---|---|")
    model = base
    embedder = BackboneEmbedder(base, tokenizers["default"])
    options = {"fp32": (None, "default"), "bf16 autocast + empty system turn": (BF16, "empty" if chat else "default")}
    for stage in ("reference pass", "grounding", "likelihood", "beam"):
        runs, work = {}, {}
        for label, (dtype, system) in options.items():
            runs[label], work[label] = ranking_run(stage, model, dtype, tokenizers[system], samples[system], titles,
                                                   chat, embedder, args, shape)
        timed = interleaved(runs, args.repeats)
        first = None
        for label, (seconds, result) in timed.items():
            count, tokens, flops = work[label](result)
            rate = count * args.repeats / seconds
            first = first or rate
            flop_s = flops * args.repeats / seconds
            emit(f"| {stage} | {label} | {tokens * args.repeats / seconds:.0f} | {rate:.2f} | {rate / first:.2f}x | "
                 f"{flop_s / 1e9:.1f} | {share(flop_s, 'bf16' if options[label][0] is not None else 'fp32')} |")
    again = probe()     # how far a shared machine's load drifted during the run
    limit = {name: max(peak[name], again[name]) for name in peak}
    print(f"matmul again at the end: fp32 {again['fp32'] / 1e9:.1f} GFLOP/s, bf16 {again['bf16'] / 1e9:.1f} GFLOP/s; "
          f"the limit below is the better probe of each dtype\n")
    for line in lines:
        print(re.sub(r"<<(\w+):([^>]+)>>", lambda m: f"{float(m[2]) / limit[m[1]]:.0%}", line))
    print("\ntokens/s: real tokens (SFT/preference: prompt + completion rows without padding; reference pass: its "
          "rows; grounding: prompt + up to 16 generated tokens; likelihood: prompt + title tokens of the items "
          "scored; beam: prompt + beams x steps). Measured side by side in one run; compare rows, not runs.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
