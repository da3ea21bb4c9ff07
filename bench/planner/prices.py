"""Seconds for counted work: from a calibration (per-unit seconds measured on one device, `bench.planner.calibrate`)
or, where no calibration exists (a GPU one does not have yet), from FLOPs at an assumed throughput.

Calibrated prices scale with the cell: training and forward units by the mean sequence length relative to the
calibration cell's, likelihood ranking by the catalogue's completion tokens, setup by the training interactions;
a preference step costs ``intercept + per_sequence x batch x (1 + K)`` (fitted on two K), plus the causal
regularizer's measured extra per step; each training run adds the measured fixed cost of starting one (loading
the model, building the Trainer). Ranking keys not calibrated are an error that names them.

The FLOPs price (``--tflops``) uses 2N FLOPs per token forward and 6N per trained token (4N with LoRA: no weight
gradients for the frozen matrices), plus 2N with gradient checkpointing (the forward is recomputed in the backward
pass), N the backbone's parameters; ranking per prompt: likelihood scores the prompt
and every catalogue title (the unpruned bound), beam and grounding decode `beams x title tokens`. Decoding is memory
bound on GPUs, so FLOPs prices of ranking are optimistic; they say so. SASRec: 3x its forward FLOPs per training
sample per epoch (`sasrec_flops`), a lower bound (its kernels are far too small to reach the utilisation).

``--tflops`` is the GPU's *peak* dense bf16 throughput; FLOPs run at ``utilisation`` x peak (model FLOPs
utilisation, MFU). The default is the suite's own measurement (`default_utilisation`, README "The paper profile on
GPUs"): on one H200, a DPO step of 16 pairs (32 sequences) of 213 tokens at Llama-3.1-8B's shape (N = 8.03e9), LoRA,
bf16, gradient checkpointing took 0.999 s. By the planner's formula that step is
32 x 213 x (4 + 2) x 8.03e9 = 3.284e14 FLOPs, i.e. 3.284e14 / 0.999 s = 328.7 TFLOP/s sustained, and
328.7 / 989 (the H200's bf16 dense peak) = 0.332.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from methods.declared_work import Work

FIXED_RANKINGS = ("fixed",)
# the share of the title trie the likelihood node search feeds per prompt: 334 of 17,875 nodes on SmolLM2's
# 4k-sample SFT model (`python -m bench.perf.ranking_pruning --profile small`); a flatter model feeds more
NODE_SEARCH_SHARE = 0.02

# the H200 check (README "The paper profile on GPUs"; bench/perf/gpu_paper_path.sh) the default utilisation is from
CHECK_SEQUENCES = 16 * 2         # 16 pairs per step, chosen + 1 rejected
CHECK_TOKENS = 213               # tokens per sequence (200-token prompt, 12-token title, EOS)
CHECK_PARAMETERS = 8.03e9        # Llama-3.1-8B
CHECK_SECONDS = 0.999            # measured seconds per DPO step (LoRA, bf16, gradient checkpointing)
H200_PEAK_TFLOPS = 989.0         # H100/H200 SXM bf16 dense peak
A800_PEAK_TFLOPS = 312.0         # A100/A800 bf16 dense peak


def training_flops_per_token(params: float, lora: bool, checkpointing: bool) -> float:
    """6N per trained token (4N with LoRA), + 2N with gradient checkpointing."""
    return ((4 if lora else 6) + (2 if checkpointing else 0)) * params


def default_utilisation() -> float:
    """The fraction of peak the H200 check sustained: its step's FLOPs by the planner's formula / its seconds /
    the H200's peak = 32 x 213 x 6 x 8.03e9 / 0.999 / 989e12 = 0.332."""
    step = CHECK_SEQUENCES * CHECK_TOKENS * training_flops_per_token(CHECK_PARAMETERS, True, True)
    return step / CHECK_SECONDS / (H200_PEAK_TFLOPS * 1e12)


def sasrec_flops(history_len: int, items: int, hidden: int = 32, inner: int = 128, layers: int = 2) -> float:
    """Training FLOPs of one SASRec sample (methods.sasrec defaults: d 32, feed-forward 128, 2 blocks): forward =
    per block 2 x (4d^2 + 2 d inner) per position + 4 L^2 d for attention, then the last position's logits over the
    catalogue (2 d x items, the CE loss); backward twice the forward."""
    blocks = layers * (2 * (4 * hidden ** 2 + 2 * hidden * inner) * history_len + 4 * history_len ** 2 * hidden)
    return 3 * (blocks + 2 * hidden * items)


class CalibrationError(ValueError):
    pass


@dataclass
class Calibration:
    device: str                      # bench.results.device_name
    device_type: str                 # cpu | cuda
    threads: int                     # torch threads (CPU)
    world_size: int
    profile: str
    backbone: str
    dataset: str
    train_samples: int
    train_interactions: int
    prompt_tokens: float
    title_tokens: float
    catalogue_tokens: int
    setup: float                     # seconds to build a cell (data, split, samples, tokenizer)
    run_overhead: float              # seconds to start one training run
    sft_step: float                  # seconds per SFT optimizer step (the profile's batch)
    preference_intercept: float      # seconds per preference step: intercept + per_sequence x sequences
    preference_per_sequence: float
    causal_extra: float              # seconds the causal regularizer adds to a step
    forward: float                   # seconds per sequence, no-grad forward (reference batches)
    top1: float                      # seconds per prompt, constrained greedy decoding
    sasrec_epoch: float              # seconds per training sample per SASRec epoch
    rank: dict[str, float] = field(default_factory=dict)   # seconds per prompt per ranking key
    ranking_model: str = ""          # which model the rankings were timed on
    created: str = ""
    git_commit: str | None = None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise CalibrationError(f"{path}: not a calibration file ({err})") from None


class CalibratedPrices:
    def __init__(self, cal: Calibration):
        self.cal = cal
        self.source = (f"calibrated on {cal.device} ({cal.profile} profile, {cal.backbone}, {cal.dataset}; "
                       f"rankings timed on {cal.ranking_model or 'the calibration model'})")

    def _length_scale(self, size) -> float:
        return (size.prompt_tokens + size.title_tokens) / (self.cal.prompt_tokens + self.cal.title_tokens)

    def seconds(self, work: Work, size) -> float:
        cal, scale = self.cal, self._length_scale(size)
        if work.kind == "sft_step":
            return work.count * cal.sft_step * scale + cal.run_overhead
        if work.kind == "preference_step":
            pref = size.size.preference
            per_step = cal.preference_intercept + cal.preference_per_sequence * pref.batch_size * pref.grad_accum \
                * work.width * scale + (cal.causal_extra if work.causal else 0.0)
            return work.count * per_step + cal.run_overhead
        if work.kind == "forward":
            return work.count * cal.forward * scale
        if work.kind == "top1":
            return work.count * cal.top1 * size.prompt_tokens / cal.prompt_tokens
        if work.kind == "sasrec_epoch":
            return work.sequences * cal.sasrec_epoch
        raise CalibrationError(f"no price for work of kind {work.kind!r}")

    def setup(self, size) -> float:
        return self.cal.setup * size.size.train_interactions / self.cal.train_interactions

    def rank(self, key: str, prompts: int, size) -> float:
        if key in FIXED_RANKINGS:
            return 0.0
        if key not in self.cal.rank:
            raise CalibrationError(f"the calibration has no ranking {key!r} (it has {', '.join(sorted(self.cal.rank))});"
                                   f" run `python -m bench plan ... --calibrate` with the same tables")
        per_prompt = self.cal.rank[key]
        if key.startswith(("likelihood", "d3/likelihood")):
            per_prompt *= size.catalogue_tokens / self.cal.catalogue_tokens
        return prompts * per_prompt


@dataclass
class FlopsPrices:
    params: float                    # backbone parameters N
    tflops: float                    # the GPU's peak dense TFLOP/s (bf16)
    lora: bool
    checkpointing: bool = False      # gradient checkpointing: one more forward per trained token
    beams: int = 20                  # the beam protocol's beams (= the list length)
    utilisation: float = field(default_factory=default_utilisation)   # sustained / peak (MFU)

    @property
    def source(self) -> str:
        training = ("LoRA" if self.lora else "full fine-tuning") + (", gradient checkpointing" if self.checkpointing
                                                                    else "")
        return (f"FLOPs at {self.utilisation:.3f} utilisation of a {self.tflops:g} TFLOP/s peak = "
                f"{self.sustained:.1f} TFLOP/s sustained per GPU, for {self.params / 1e9:.2f}B parameters "
                f"({training}); uncalibrated: ranking by decoding is memory bound and slower than this")

    @property
    def sustained(self) -> float:
        return self.tflops * self.utilisation

    def _s(self, flops: float) -> float:
        return flops / (self.sustained * 1e12)

    def seconds(self, work: Work, size) -> float:
        seq = size.prompt_tokens + size.title_tokens
        train = training_flops_per_token(self.params, self.lora, self.checkpointing)
        if work.kind in ("sft_step", "preference_step"):
            return self._s(work.sequences * seq * train)
        if work.kind == "forward":
            return self._s(work.sequences * seq * 2 * self.params)
        if work.kind == "top1":
            return self._s(work.count * (size.prompt_tokens + size.title_tokens) * 2 * self.params)
        if work.kind == "sasrec_epoch":
            return self._s(work.sequences * sasrec_flops(size.history_len, size.items))
        raise CalibrationError(f"no price for work of kind {work.kind!r}")

    def setup(self, size) -> float:
        return 0.0

    def rank(self, key: str, prompts: int, size) -> float:
        key = key.removesuffix("@base")  # an untrained model's FLOPs are a trained one's
        if key in FIXED_RANKINGS:
            return 0.0
        if key == "sasrec":            # one forward per history: a third of a training sample's FLOPs
            return self._s(prompts * sasrec_flops(size.history_len, size.items) / 3)
        if key.endswith("likelihood/nodes"):
            tokens = size.prompt_tokens + NODE_SEARCH_SHARE * size.catalogue_tokens
        elif "likelihood" in key:
            tokens = size.prompt_tokens + size.catalogue_tokens
        else:
            beams = self.beams if key in ("beam", "d3") else int(key.rsplit("beams", 1)[-1]) if "beams" in key else 1
            tokens = size.prompt_tokens + beams * size.title_tokens
        return self._s(prompts * tokens * 2 * self.params)
