"""Mixed precision (`methods.train.precision`): native-bf16 detection, `backbone.autocast` resolution, the model's
mark (found through peft's wrapper), forwards that really run in bf16, and the record's fields."""
import pytest
import torch

from bench.backbone import build_model, load_tokenizer
from bench.config import BackboneConfig
from bench.results import environment
from methods.train import precision
from methods.train.precision import (autocast, autocast_dtype, autocast_name, cpu_flags, native_bf16_cpu,
                                     resolve_autocast, set_autocast)
from methods.train.sequences import completion_logps, left_padded
from tests.support import pairs, random_llama

CPUINFO = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n"


def test_native_bf16_needs_a_bf16_matmul_flag_and_avx512_kernels():
    assert cpu_flags(CPUINFO.format(extra="avx512_bf16")) >= {"avx512f", "avx512_bf16"}
    assert native_bf16_cpu(cpu_flags(CPUINFO.format(extra="avx512_bf16")), "AVX512")
    assert native_bf16_cpu(cpu_flags(CPUINFO.format(extra="amx_bf16 amx_tile")), "AVX512")
    assert not native_bf16_cpu(cpu_flags(CPUINFO.format(extra="")), "AVX512")        # AVX512 without BF16
    assert not native_bf16_cpu(cpu_flags(CPUINFO.format(extra="avx512_bf16")), "AVX2")  # torch not on AVX512
    assert cpu_flags("no flags line here") == set()


def test_autocast_setting_resolves_per_device(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    assert resolve_autocast("fp32", "cpu") is None and resolve_autocast("auto", "cpu") is None
    assert resolve_autocast("bf16", "cpu") is torch.bfloat16
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    assert resolve_autocast("auto", "cpu") is torch.bfloat16 and resolve_autocast("fp32", "cpu") is None
    assert [autocast_name(d) for d in (None, torch.bfloat16)] == ["fp32", "bf16"]
    with pytest.raises(ValueError, match="fp32, auto, bf16"):
        resolve_autocast("fp16", "cpu")
    with pytest.raises(ValueError, match="write fp32"):   # `--set backbone.autocast=off` reads as false
        resolve_autocast("False", "cpu")


def _linear_output_dtypes(model, run) -> set:
    seen = set()
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_a_marked_model_runs_its_matmuls_in_bf16_and_its_log_probs_stay_close():
    model = random_llama()
    batch = left_padded(*(lambda p: (p.prompts, p.chosen))(pairs(6)), 0, "cpu")
    with torch.no_grad():
        fp32 = completion_logps(model, *batch)[0]
        assert _linear_output_dtypes(model, lambda: completion_logps(model, *batch)) == {torch.float32}
        set_autocast(model, torch.bfloat16)
        bf16 = completion_logps(model, *batch)[0]
        assert _linear_output_dtypes(model, lambda: completion_logps(model, *batch)) == {torch.bfloat16}
    assert bf16.dtype == torch.float32 and torch.allclose(bf16, fp32, atol=0.1, rtol=0.02)
    assert all(p.dtype == torch.float32 for p in model.parameters())          # weights stay fp32
    set_autocast(model, None)
    assert isinstance(autocast(model), type(autocast(random_llama())))        # unmarked and off: no autocast


def test_build_model_marks_the_model_through_the_lora_wrapper(tmp_path):
    cfg = dict(name="tiny-llama", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    tok = load_tokenizer(BackboneConfig(**cfg), ["a b c"], tmp_path)
    assert autocast_dtype(build_model(BackboneConfig(**cfg), tok, 0, "cpu")) is None     # the default: off
    lora = build_model(BackboneConfig(**cfg, lora=True, autocast="bf16"), tok, 0, "cpu", tmp_path)
    assert autocast_dtype(lora) is torch.bfloat16
    assert autocast_dtype(lora.merge_and_unload()) is torch.bfloat16


def test_the_record_says_whether_the_cpu_has_native_bf16_and_the_resolved_autocast():
    env = environment("cpu", autocast="bf16")
    assert env["autocast"] == "bf16" and env["cpu_kernels"]["native_bf16"] in (True, False)
    assert environment("cpu")["autocast"] is None
