"""Our preference trainer vs TRL's `DPOTrainer`, per method: `python -m bench.perf.trl_comparison`.

One process trains the tiny profile's Llama (random init, the same initial weights for every run) on the same random
pairs, batch size, learning rate, schedule and DPO sigmoid loss (beta 0.1), fp32 on the CPU, alternating (and
rotating the order of) five variants so drift on a shared machine hits all of them:

- `trl`: TRL `DPOTrainer` as shipped, the reference model (a copy of the initial one) scored on the fly each step;
- `trl-pre`: TRL `DPOTrainer` with `precompute_ref_log_probs=True` (one reference pass when the trainer is built);
- `trl-compact`, `trl-pre-compact`: the same with TRL's CUDA choice of scored positions forced on the CPU (below);
- `ours`: `reference_logps` once, then `train_preference` on the cached reference log-probs.

TRL is fed the same token ids through a word-level tokenizer whose word i is token id i (TRL 1.16 has no
pre-tokenized input path: it always extracts the prompt, appends EOS and tokenizes text); the script checks that
TRL's tokenized columns equal our ids. Both reference passes run at batch 32.

How to read it: seconds per epoch are medians over the repeats. The step split times the forwards with module hooks
("rest" is backward, optimizer, collation and TRL's per-step metrics). The suite caches the reference log-probs per
(SFT model, pair set) and shares them across the reference-based methods of a cell, so our per-method cost is
train + ref/M: M = 1 (one method alone) and M = `--methods`. On a Table 1/5 cell six methods draw the same seeded
random negatives from the same SFT model and so share one cache: dpo, causaldpo, dmpo, sdpo, drdpo, drdpo+causal
(rosepo draws its own negatives, sprec its self-play pairs, causaldpo-nosft starts from the base model, cpo and
simpo need no reference). The goal: ours per method / TRL <= 0.8. TRL-precomputed pays its reference pass once per
trainer, i.e. per method (its on-disk cache only hits for datasets loaded from files).

CPU caveat, hence the -compact variants: without Triton, TRL's fused LM head (`trl.kernels.chunked_logprob`) scores
every position of every row, prompt included; with Triton (CUDA) it scores the completion positions only, as ours
does on any device (`logits_to_keep`). As shipped, TRL on the CPU thus projects ~10x more positions than on a GPU;
`-compact` patches that one decision (`scoring`), so its ratio is the one that carries over to a GPU.

Correctness: the batch order is the same (both are `transformers.Trainer`s with seed 0), so the per-step training
losses of TRL and ours must agree (~1e-5); step 1 is ln 2 for both (policy = reference), so the script also
compares both losses on one fixed batch with a policy (seed 1) that differs from the reference (seed 0).

On a GPU, at a real architecture's shape (the options and `build` of `bench.perf.causal_overhead`: random weights
from the published config, no download; `--lora --bf16 --gradient-checkpointing` is the paper profile's path):

    python -m bench.perf.trl_comparison --arch llama-3.2-1b --bf16 --pairs 256 --repeats 2

(about a minute on one H200: 64 s wall measured, imports and builds included; add `--lora` and/or
`--gradient-checkpointing` for those paths, about as long). The word-level
tokenizer then spans the arch's vocabulary (128256 ids for Llama-3). `--device` defaults to cuda when there is one.
On CUDA, TRL's fused LM head already scores the completion positions only (Triton), so the -compact variants would
repeat the plain ones and are skipped; each variant first runs once untimed on a few batches (Triton compiles TRL's
kernels, cuBLAS and attention pick theirs: seconds that would otherwise land on whichever variant runs first), the
timers synchronize the device (epochs, forwards, reference passes), and each variant reports its peak GPU memory
(`torch.cuda.max_memory_allocated`, reset before the variant builds its models, so TRL's resident reference model
counts; ours frees its reference model before training).
`--bf16` builds the models in bf16 on both sides (ours `train_preference(dtype="bfloat16")`, TRL `DPOConfig(bf16=
True)`, both only on CUDA, as `training_arguments` does). The two then round differently (ours upcasts the kept
bf16 logits, TRL's fused head accumulates the projection in fp32; the backward and the bf16 weight updates differ
too) and the per-step losses drift apart over the steps, so the last line compares the largest |TRL - ours| with a
bf16 tolerance (`LOSS_TOLERANCE`: 2e-2 on a loss of ~0.69, 1e-5 in fp32) and prints, never asserts (on an H200 at
llama-3.2-1b: 2e-3 over 16 steps, 0 on the fixed batch). `--gradient-checkpointing` enables non-reentrant
checkpointing on the policy for both (TRL also through `DPOConfig(gradient_checkpointing=True)`).

`--lora` (r 8, alpha 32, dropout 0.1 on every linear layer, as `causal_overhead`): both train the same peft-wrapped
policy. TRL 1.16 given a `PeftModel` with `ref_model=None` would add a frozen copy of the adapter ("ref") and score
the reference through the policy with that adapter (base + LoRA matmuls; with peft < 0.20 and `target_parameters`
the adapter-disabled base); here TRL is given an explicit `ref_model`, the plain base model built with the same seed
(no adapter, no checkpointing), which is the model our reference pass scores: a fresh adapter's B = 0 makes it the
same function, and both sides do the same reference work (for `trl-pre` TRL keeps it resident while training, which
its peak memory shows). TRL's `disable_dropout` is turned off so that it trains with the adapter's dropout as ours
does (the Llama shapes have no other dropout modules, so the default run is unchanged).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import statistics
import sys
import tempfile
import time

import datasets
import torch
import trl.trainer.utils as trl_utils
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, TrainingArguments
from transformers.utils import logging as hf_logging
from trl import DPOConfig, DPOTrainer

from bench.perf.causal_overhead import ARCHS, build, random_pairs
from methods.losses import dpo_loss, mean_reduce
from methods.train.config import PreferenceConfig
from methods.train.loop import EpochTimer, training_arguments
from methods.train.preference_trainer import (PairCollator, PairDataset, PreferencePairs, PreferenceTrainer, reference_logps,
                                      train_preference)

BETA, PAD, REF_BATCH = 0.1, 0, 32
SPECIALS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]   # ids 0-3, as in bench.backbone; random_pairs uses 1 = BOS, 2 = EOS
LOSS_TOLERANCE = {False: 1e-5, True: 2e-2}      # |TRL - ours| on a DPO loss (~0.69): fp32, bf16 (see the docstring)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What both sides train on: the arch's shape (random weights), device, precision, adapter, checkpointing."""
    arch: str = "tiny"
    device: str = "cpu"
    bf16: bool = False
    lora: bool = False
    checkpointing: bool = False

    @property
    def cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    @property
    def dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float32"

    def policy(self, seed: int = 0):
        return build(self.arch, self.device, self.bf16, self.lora, self.checkpointing, seed=seed)

    def reference(self, seed: int = 0):
        """The frozen reference: the policy's initial base model (a fresh LoRA adapter, B = 0, leaves it unchanged),
        without adapter or checkpointing; our reference pass and TRL's `ref_model` both score this."""
        return build(self.arch, self.device, self.bf16, False, False, seed=seed)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def id_tokenizer(vocab: int) -> PreTrainedTokenizerFast:
    """Word i <-> token id i, split on whitespace, nothing added (the prompt ids already start with BOS)."""
    words = SPECIALS + [f"w{i}" for i in range(len(SPECIALS), vocab)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
                                   unk_token="[UNK]")


def as_text(pairs: PreferencePairs, tokenizer) -> datasets.Dataset:
    """TRL's text columns for K = 1 pairs; prompt + completion is plain string concatenation, hence the space."""
    text = lambda ids: " ".join(tokenizer.convert_ids_to_tokens(ids))  # noqa: E731
    return datasets.Dataset.from_dict({"prompt": [text(p) + " " for p in pairs.prompts],
                                       "chosen": [text(c) for c in pairs.chosen],
                                       "rejected": [text(r[0]) for r in pairs.rejected]})


class ForwardClock:
    """Wall seconds spent in a module's forward calls (pre/post hooks; `sync` runs before each clock reading, on CUDA
    `torch.cuda.synchronize` so that the forward's kernels are counted, not just their launches)."""

    def __init__(self, module, sync=lambda: None):
        self.seconds, self._start = 0.0, 0.0

        def pre(*_):
            sync()
            self._start = time.perf_counter()

        def post(*_):
            sync()
            self.seconds += time.perf_counter() - self._start

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


@contextlib.contextmanager
def scoring(compact: bool):
    """TRL's fused LM head scores only the completion positions where Triton runs (CUDA) and every position elsewhere
    (`trl.trainer.utils`, `compact = _use_triton(device)`); compact=True makes the CUDA choice on the CPU, the tiles
    still folding in torch."""
    original = trl_utils._use_triton
    if compact:
        trl_utils._use_triton = lambda device: True
    try:
        yield
    finally:
        trl_utils._use_triton = original


@contextlib.contextmanager
def synchronized_epochs(setup: Setup):
    """On CUDA, `EpochTimer` (ours inside `train_preference`, and the one given to TRL) reads the clock only once the
    queued kernels have run, so the last step's backward and optimizer step count."""
    if not setup.cuda:
        yield
        return
    begin, end = EpochTimer.on_epoch_begin, EpochTimer.on_epoch_end

    def synced(hook):
        def call(self, *args, **kwargs):
            torch.cuda.synchronize()
            return hook(self, *args, **kwargs)
        return call

    EpochTimer.on_epoch_begin, EpochTimer.on_epoch_end = synced(begin), synced(end)
    try:
        yield
    finally:
        EpochTimer.on_epoch_begin, EpochTimer.on_epoch_end = begin, end


class RecordingDPOTrainer(DPOTrainer):
    """DPOTrainer that keeps each step's loss and the seconds of its reference precompute."""

    def __init__(self, *args, **kwargs):
        self.losses, self.precompute_seconds = [], 0.0
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.losses.append(float((loss[0] if return_outputs else loss).detach()))
        return loss

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.args.device.type == "cuda":
            torch.cuda.synchronize()             # the models' initialization, queued when they were built
        start = time.perf_counter()
        out = super()._precompute_ref_logps(dataset, name, batch_size)
        self.precompute_seconds += time.perf_counter() - start
        return out


def trl_trainer(model, ref_model, data, tokenizer, cfg: PreferenceConfig, out: str, precompute: bool, callbacks=(),
                setup: Setup = Setup()):
    args = DPOConfig(
        output_dir=out, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, lr_scheduler_type="cosine", warmup_steps=cfg.warmup_ratio, weight_decay=0.0,
        max_grad_norm=cfg.max_grad_norm, seed=0, data_seed=0,
        use_cpu=not setup.cuda, bf16=setup.cuda and setup.bf16,           # as ours (`training_arguments`)
        gradient_checkpointing=setup.checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if setup.checkpointing else None,
        disable_dropout=False,                # ours trains with the model's dropout (LoRA's 0.1) as built
        report_to="none", save_strategy="no", eval_strategy="no", logging_steps=50, dataloader_num_workers=0,
        max_length=None,                      # no truncation
        beta=BETA, loss_type=["sigmoid"], precompute_ref_log_probs=precompute, precompute_ref_batch_size=REF_BATCH)
    return RecordingDPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=data,
                               processing_class=tokenizer, callbacks=list(callbacks))


def check_same_ids(trainer, pairs: PreferencePairs) -> None:
    ds = trainer.train_dataset
    if (ds["prompt_ids"] != pairs.prompts or ds["chosen_ids"] != pairs.chosen
            or ds["rejected_ids"] != [r[0] for r in pairs.rejected]):
        raise AssertionError("TRL's tokenized pairs differ from our token ids")


def run_trl(pairs, tokenizer, cfg, precompute: bool, compact: bool, setup: Setup = Setup()) -> dict:
    policy = setup.policy()
    # Full fine-tuning with precompute: TRL scores the untouched policy (no second model). Otherwise an explicit
    # reference, also with LoRA (see the docstring: with ref_model=None TRL would score base + a copy of the adapter).
    ref_model = setup.reference() if setup.lora or not precompute else None
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out, scoring(compact):
        trainer = trl_trainer(policy, ref_model, as_text(pairs, tokenizer), tokenizer, cfg, out, precompute, [timer],
                              setup)
        check_same_ids(trainer, pairs)
        clocks = {"policy": ForwardClock(trainer.model, setup.sync)}
        if trainer.ref_model is not None and not precompute:
            clocks["ref"] = ForwardClock(trainer.ref_model, setup.sync)
        trainer.train()
    return {"epoch": timer.seconds_per_epoch(cfg.epochs), "ref_pass": trainer.precompute_seconds,
            "policy_fwd": clocks["policy"].seconds, "ref_fwd": clocks["ref"].seconds if "ref" in clocks else 0.0,
            "losses": trainer.losses}


def run_ours(pairs, cfg, setup: Setup = Setup()) -> dict:
    ref_model = setup.reference()
    setup.sync()                                  # its initialization, queued when it was built
    start = time.perf_counter()
    ref = reference_logps(ref_model, pairs, PAD, setup.device, batch_size=REF_BATCH)
    ref_seconds = time.perf_counter() - start
    del ref_model
    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
    policy = setup.policy()
    clock = ForwardClock(policy, setup.sync)
    _, seconds, history = train_preference(policy, pairs, ref, lambda p, r: dpo_loss(p, r, BETA), mean_reduce, BETA,
                                           cfg, 0, setup.device, PAD, dtype=setup.dtype)
    return {"epoch": seconds, "ref_pass": ref_seconds, "policy_fwd": clock.seconds, "ref_fwd": 0.0,
            "losses": history["pref_loss"]}


@torch.no_grad()
def fixed_batch_losses(pairs: PreferencePairs, tokenizer, cfg: PreferenceConfig,
                       setup: Setup = Setup()) -> dict[str, float]:
    """Ours and TRL's DPO loss, and mean chosen log-prob, on the first `cfg.batch_size` pairs: `PreferenceTrainer
    .compute_loss` on `reference_logps` vs `DPOTrainer.compute_loss` with its on-the-fly reference. The policy (seed 1)
    differs from the reference (seed 0): with policy = reference every DPO loss is ln 2, whatever the log-probs."""
    n = min(cfg.batch_size, len(pairs))
    policy, ref_model = setup.policy(seed=1), setup.reference(seed=0)
    batch = PreferencePairs(pairs.prompts[:n], pairs.chosen[:n], pairs.rejected[:n])
    ref = reference_logps(ref_model, batch, PAD, setup.device, batch_size=REF_BATCH)
    ours_chosen = float(reference_logps(policy, batch, PAD, setup.device, batch_size=REF_BATCH)[0].mean())
    with tempfile.TemporaryDirectory() as out:
        ours = PreferenceTrainer(model=policy, args=TrainingArguments(**training_arguments(
            out, 1, cfg.batch_size, 1, cfg.learning_rate, cfg.warmup_ratio, 0, setup.device, dtype=setup.dtype)),
            loss_fn=lambda p, r: dpo_loss(p, r, BETA), reduce=mean_reduce, beta=BETA)
        data = PairDataset(batch, *ref)
        ours_loss = ours.compute_loss(policy, ours._prepare_inputs(PairCollator(PAD)([data[i] for i in range(n)])))
        trl = trl_trainer(policy, ref_model, as_text(batch, tokenizer), tokenizer, cfg, out, precompute=False,
                          setup=setup)
        check_same_ids(trl, batch)
        trl_loss = trl.compute_loss(trl.model, trl._prepare_inputs(
            trl.data_collator([trl.train_dataset[i] for i in range(n)])))
        trl_chosen = next(v[-1] for v in (trl._metrics["train"]["logps/chosen"], trl._metrics["eval"]["logps/chosen"])
                          if v)
    return {"ours": float(ours_loss), "trl": float(trl_loss), "ours_chosen": ours_chosen, "trl_chosen": trl_chosen}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny", choices=sorted(ARCHS),
                        help="the model's shape (random weights; bench.perf.causal_overhead.ARCHS)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="models in bf16 (and bf16 mixed precision on CUDA)")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter on both sides (see the docstring)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", type=int, default=6,
                        help="reference-based methods sharing one reference cache on a cell (see the docstring)")
    parser.add_argument("--prompt-len", type=int, default=50, help="prompt tokens (tiny titles: ~5 tokens each)")
    parser.add_argument("--title-len", type=int, default=4)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    setup = Setup(args.arch, args.device, args.bf16, args.lora, args.gradient_checkpointing)
    vocab = ARCHS[args.arch][1]["vocab_size"]
    pairs = random_pairs(args.pairs, vocab, args.prompt_len, args.title_len)
    tokenizer = id_tokenizer(vocab)
    cfg = PreferenceConfig(epochs=1, learning_rate=2e-5, batch_size=args.batch_size)   # the tiny profile's values

    runners = {"trl": lambda p: run_trl(p, tokenizer, cfg, precompute=False, compact=False, setup=setup),
               "trl-compact": lambda p: run_trl(p, tokenizer, cfg, precompute=False, compact=True, setup=setup),
               "trl-pre": lambda p: run_trl(p, tokenizer, cfg, precompute=True, compact=False, setup=setup),
               "trl-pre-compact": lambda p: run_trl(p, tokenizer, cfg, precompute=True, compact=True, setup=setup),
               "ours": lambda p: run_ours(p, cfg, setup)}
    # Where Triton runs, TRL's fused LM head already scores the completion positions only: -compact = plain.
    compact_native = trl_utils._use_triton(torch.device(args.device))
    if compact_native:
        del runners["trl-compact"], runners["trl-pre-compact"]
    names = list(runners)

    def run(name: str, subset: PreferencePairs) -> dict:
        gc.collect()                                              # the last variant's models (trainer cycles)
        if setup.cuda:                                            # then a fresh peak
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with contextlib.redirect_stdout(sys.stderr), synchronized_epochs(setup):   # the trainers' log lines
            result = runners[name](subset)
        if setup.cuda:
            result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return result

    # CUDA: one untimed run of each variant first, on as many pairs as one training batch and one reference batch
    # need (the same shapes): Triton compiles TRL's kernels, cuBLAS and attention pick their kernels.
    warm = min(args.pairs, max(2 * args.batch_size, REF_BATCH)) if setup.cuda else 0
    if warm:
        head = PreferencePairs(pairs.prompts[:warm], pairs.chosen[:warm], pairs.rejected[:warm])
        for name in names:
            run(name, head)
    results: dict[str, list[dict]] = {name: [] for name in runners}
    for repeat in range(args.repeats):
        turn = repeat % len(names)
        for name in names[turn:] + names[:turn]:                  # rotate who runs first
            results[name].append(run(name, pairs))
    gc.collect()
    if setup.cuda:
        torch.cuda.empty_cache()
    keys = ("epoch", "ref_pass", "policy_fwd", "ref_fwd")
    med = {name: {key: statistics.median(r[key] for r in runs) for key in keys} for name, runs in results.items()}

    steps = -(-args.pairs // args.batch_size)
    ms = lambda s: 1000 * s / steps  # noqa: E731
    model_name = "tiny Llama" if args.arch == "tiny" else args.arch
    where = (f"CUDA, {torch.cuda.get_device_name(torch.device(args.device))}" if setup.cuda
             else f"CPU, {torch.get_num_threads()} threads")
    extras = (", LoRA" if setup.lora else "") + (", gradient checkpointing" if setup.checkpointing else "")
    print(f"{model_name} ({'bf16' if setup.bf16 else 'fp32'} {where}{extras}), DPO sigmoid beta {BETA}, lr "
          f"{cfg.learning_rate} cosine; pairs {args.pairs}, batch {args.batch_size} ({steps} steps), sequence "
          f"{args.prompt_len}+{args.title_len + 1} tokens, repeats {args.repeats} (medians; alternating, rotated "
          "order)")
    if warm:
        print(f"warm-up: one untimed run of each variant on the first {warm} pairs (Triton compilation, kernel "
              "selection), not counted")
    if compact_native:
        print(f"-compact variants skipped: on {args.device} TRL's fused LM head (Triton) already scores the completion "
              "positions only, so they would repeat trl and trl-pre")
    peak_head = f" {'peak GiB':>8}" if setup.cuda else ""
    print(f"{'variant':<15} {'s/epoch':>8} {'ms/step':>8} {'policy fwd':>11} {'ref fwd':>8} {'rest':>6}{peak_head}   "
          f"{'ref pass s':>10}  all s/epoch")
    for name, m in med.items():
        rest = m["epoch"] - m["policy_fwd"] - m["ref_fwd"]
        ref_pass = f"{m['ref_pass']:10.2f}" if m["ref_pass"] else f"{'-':>10}"
        peak = f" {max(r['peak_gib'] for r in results[name]):8.2f}" if setup.cuda else ""
        print(f"{name:<15} {m['epoch']:8.2f} {ms(m['epoch']):8.1f} {ms(m['policy_fwd']):11.1f} "
              f"{ms(m['ref_fwd']):8.1f} {ms(rest):6.1f}{peak}   {ref_pass}  "
              f"{[round(r['epoch'], 2) for r in results[name]]}")
    print("(ms/step: policy forward, reference forward, rest = backward + optimizer + collation + metrics; ref pass: "
          "one reference pass over the pairs, batch 32; -compact: TRL's CUDA scoring of completion positions only"
          + ("; peak GiB: max_memory_allocated over the variant's run, its models included" if setup.cuda else "")
          + ")")

    ours = med["ours"]
    per_method = {name: m["epoch"] + m["ref_pass"] for name, m in med.items() if name != "ours"}
    ours_m = {m: ours["epoch"] + ours["ref_pass"] / m for m in (1, args.methods)}
    print("per method, s: " + ", ".join(f"{name} {value:.2f}" for name, value in per_method.items())
          + f" (trl-pre*: train + its own ref pass); ours {ours_m[1]:.2f} (M=1), {ours_m[args.methods]:.2f} "
          f"(M={args.methods}: the reference pass shared by {args.methods} methods)")
    for trl in (t for t in ("trl", "trl-compact") if t in per_method):
        print(f"ratio ours(M=1)/{trl} = {ours_m[1] / per_method[trl]:.3f}, ours(M={args.methods})/{trl} = "
              f"{ours_m[args.methods] / per_method[trl]:.3f}  (goal <= 0.8)")
    for pre in (p for p in ("trl-pre", "trl-pre-compact") if p in per_method):
        print(f"ratio ours(M=1)/{pre} = {ours_m[1] / per_method[pre]:.3f}  (train only: "
              f"{ours['epoch'] / med[pre]['epoch']:.3f}; ref pass only: {ours['ref_pass'] / med[pre]['ref_pass']:.3f})")

    ours_steps = results["ours"][0]["losses"]
    diff = {name: max(abs(a - b) for a, b in zip(results[name][0]["losses"], ours_steps)) for name in per_method}
    print(f"training losses: step 1 {ours_steps[0]:.7f} for all (ln 2: policy = reference); last step ours "
          f"{ours_steps[-1]:.7f}, trl {results['trl'][0]['losses'][-1]:.7f}; max |TRL - ours| over the "
          f"{len(ours_steps)} steps: " + ", ".join(f"{name} {value:.1e}" for name, value in diff.items()))
    fixed = fixed_batch_losses(pairs, tokenizer, cfg, setup)
    print(f"fixed batch (first {min(args.batch_size, args.pairs)} pairs, policy seed 1 vs reference seed 0): loss "
          f"ours {fixed['ours']:.7f}, TRL {fixed['trl']:.7f} (|diff| {abs(fixed['ours'] - fixed['trl']):.1e}); mean "
          f"chosen log-prob ours {fixed['ours_chosen']:.5f}, TRL {fixed['trl_chosen']:.5f}")
    if setup != Setup():       # the default run's agreement is asserted by tests/bench/test_perf_trl.py
        tol, worst = LOSS_TOLERANCE[setup.bf16], max([*diff.values(), abs(fixed["ours"] - fixed["trl"])])
        print(f"loss agreement ({'bf16' if setup.bf16 else 'fp32'} tolerance {tol:.0e}): largest |TRL - ours| "
              f"{worst:.1e}, " + ("within it" if worst <= tol else "OUTSIDE it: look at the lines above"))


if __name__ == "__main__":
    main()
