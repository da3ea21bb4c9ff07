"""Mixed precision for the LLM path: bf16 autocast where the CPU multiplies bf16 matrices natively, fp32 elsewhere.

`backbone.autocast` is one of ``fp32`` (no autocast: the default, so records made before the option keep their
keys; not ``off``, which YAML and ``--set`` read as false), ``bf16`` (always) or ``auto`` (bf16 on a CUDA device,
and on a CPU whose instruction set multiplies bf16 matrices natively: AVX512-BF16 or AMX-BF16, read from
/proc/cpuinfo, with torch's own SIMD level at AVX512 or above; fp32 on any other CPU, where bf16 matmuls are
emulated and slower than fp32). `resolve_autocast`
turns the setting into a dtype (or None) for one device.

The harness marks each model it builds with its dtype (`set_autocast`); every forward the benchmark runs (SFT and
preference losses, reference passes, generation, likelihood scoring, grounding's embedder) enters `autocast(model)`,
which is ``torch.autocast(device, bfloat16)`` for a marked model and does nothing otherwise. Weights, optimizer
states and gradients stay fp32 (autocast casts inside matmuls only); losses and log-softmaxes are computed in fp32.
The mark is a plain attribute on the model, found through peft's and DDP's wrappers (they forward attribute look-ups
to the model they wrap).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

AUTOCAST_SETTINGS = ("fp32", "auto", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_ATTRIBUTE = "bench_autocast_dtype"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo's `flags` line; empty where there is none, e.g. not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16_cpu(flags: set[str] | None = None, capability: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16) and torch dispatches to
    AVX512 kernels (`torch.backends.cpu.get_cpu_capability()`: AVX512 or AMX levels)."""
    flags = cpu_flags() if flags is None else flags
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    return any(f in flags for f in BF16_CPU_FLAGS) and capability.upper().startswith(("AVX512", "AMX"))


def resolve_autocast(setting: str, device) -> torch.dtype | None:
    """The autocast dtype of `setting` (see module docstring) on `device`; None: fp32, no autocast."""
    if setting not in AUTOCAST_SETTINGS:
        raise ValueError(f"backbone.autocast={setting!r}: expected one of {', '.join(AUTOCAST_SETTINGS)}"
                         + (" (YAML reads off/no/false as a boolean: write fp32)" if setting.lower() in
                            ("false", "true") else ""))
    if setting == "fp32":
        return None
    if setting == "bf16" or torch.device(device).type == "cuda" or native_bf16_cpu():
        return torch.bfloat16
    return None


def autocast_name(dtype: torch.dtype | None) -> str:
    """How a record writes the resolved setting: "bf16" or "fp32"."""
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace("bfloat16", "bf16")


def set_autocast(model, dtype: torch.dtype | None):
    """Mark `model` to run its forwards under autocast to `dtype` (None: fp32); returns the model."""
    object.__setattr__(model, _ATTRIBUTE, dtype)
    return model


def autocast_dtype(model) -> torch.dtype | None:
    """The autocast dtype `model` (or the model a DDP/peft wrapper holds) was marked with; None when unmarked."""
    for candidate in (model, getattr(model, "module", None)):
        if candidate is not None:
            try:
                dtype = getattr(candidate, _ATTRIBUTE)
            except AttributeError:
                continue
            return dtype
    return None


def autocast(model):
    """A context running `model`'s forwards in its marked dtype (a no-op for an unmarked or fp32 model)."""
    dtype = autocast_dtype(model)
    if dtype is None:
        return contextlib.nullcontext()
    device = next(model.parameters()).device.type
    return torch.autocast(device_type=device, dtype=dtype)
