"""Backbones: tiny models from config, the local tokenizer, local paths, LoRA, and no silent downloads."""
import pytest
import torch

from bench.backbone import BackboneError, build_model, load_tokenizer, load_trained
from bench.config import BackboneConfig
from bench.prompts import encode_completion, encode_prompt, render_prompt
from methods.train.cache import save_atomically

TEXTS = ["Toy Story (1995)", "Cape Fear (1991)", "Cape Fear (1962)", render_prompt(["x"], "movie")]


def tiny(name="tiny-llama", **kw):
    return BackboneConfig(name=name, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, **kw)


def test_tokenizer_is_trained_locally_cached_and_reloadable(tmp_path):
    tok = load_tokenizer(tiny(), TEXTS, tmp_path)
    again = load_tokenizer(tiny(), TEXTS, tmp_path)
    assert len(list((tmp_path / "tokenizers").iterdir())) == 1
    prompt = encode_prompt(tok, render_prompt(["Toy Story (1995)", "Cape Fear (1991)"], "movie"))
    assert prompt[0] == tok.bos_token_id and tok.unk_token_id not in prompt
    completion = encode_completion(tok, "Cape Fear (1962)")
    assert completion[-1] == tok.eos_token_id and tok.unk_token_id not in completion
    assert completion != encode_completion(tok, "Cape Fear (1991)")
    assert encode_prompt(again, "Cape Fear (1991)") == encode_prompt(tok, "Cape Fear (1991)")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2", "tiny-qwen3"])
def test_tiny_backbones_build_from_config_with_seeded_weights(name, tmp_path):
    tok = load_tokenizer(tiny(name), TEXTS, tmp_path)
    a, b = build_model(tiny(name), tok, 0, "cpu"), build_model(tiny(name), tok, 0, "cpu")
    assert a.config.model_type == name.split("-")[1]
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    out = a(input_ids=torch.tensor([encode_prompt(tok, "Toy Story (1995)")]))
    assert out.logits.shape[-1] == len(tok)
    # the same width everywhere (Qwen3Config's own default head_dim is 128): families differ, sizes do not
    assert a.config.head_dim * a.config.num_attention_heads == a.config.hidden_size
    assert a.model.layers[0].self_attn.q_proj.out_features == a.config.hidden_size


def test_a_local_path_loads_and_a_missing_one_is_a_clear_error(tmp_path):
    tok = load_tokenizer(tiny(), TEXTS, tmp_path)
    model = build_model(tiny(), tok, 0, "cpu")
    save_atomically(model, tmp_path / "model")
    save_atomically(tok, tmp_path / "tok")
    tok.save_pretrained(tmp_path / "model")
    local = BackboneConfig(name=str(tmp_path / "model"))
    loaded = build_model(local, load_tokenizer(local, [], tmp_path), 0, "cpu")
    assert all(torch.equal(x, y) for x, y in zip(model.parameters(), loaded.parameters()))
    with pytest.raises(BackboneError, match="allow_download"):
        build_model(BackboneConfig(name="no-such-org/no-such-model"), tok, 0, "cpu")


def test_lora_adapters_train_only_the_adapter_and_reload(tmp_path):
    tok = load_tokenizer(tiny(), TEXTS, tmp_path)
    base = build_model(tiny(), tok, 0, "cpu")
    save_atomically(base, tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    cfg = BackboneConfig(name=str(tmp_path / "base"), lora=True, lora_r=2, lora_alpha=4)
    model = build_model(cfg, tok, 0, "cpu")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    save_atomically(model, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    reloaded = load_trained(tmp_path / "adapter", cfg, "cpu")
    assert any("lora_" in n for n, _ in reloaded.named_parameters())


def test_a_tiny_lora_model_saves_its_base_and_reloads_identically(tmp_path):
    cfg = tiny(lora=True, gradient_checkpointing=True)
    tok = load_tokenizer(cfg, TEXTS, tmp_path)
    model = build_model(cfg, tok, 0, "cpu", cache_dir=tmp_path)
    assert len(list((tmp_path / "base").iterdir())) == 1     # the random base weights, reloadable by path
    with torch.no_grad():                                     # make the adapter non-trivial
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)
    save_atomically(model, tmp_path / "sft")
    again = load_trained(tmp_path / "sft", cfg, "cpu")
    ids = torch.tensor([encode_prompt(tok, "Toy Story (1995)")])
    model.eval(), again.eval()
    assert torch.allclose(model(input_ids=ids).logits, again(input_ids=ids).logits, atol=1e-6)
    assert any(p.requires_grad for n, p in again.named_parameters() if "lora_" in n)


def test_lora_layers_adapts_and_trains_only_the_top_layers(tmp_path):
    from methods.train.sequences import completion_logps, left_padded

    cfg = BackboneConfig(name="tiny-llama", hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                         lora=True, lora_r=2, lora_layers=1)
    tok = load_tokenizer(cfg, TEXTS, tmp_path)
    model = build_model(cfg, tok, 0, "cpu", tmp_path)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.2." in n and "lora_" in n for n in trainable)
    every = build_model(BackboneConfig(**{**cfg.__dict__, "lora_layers": None}), tok, 0, "cpu", tmp_path)
    every_trainable = {n for n, p in every.named_parameters() if p.requires_grad}
    assert len(every_trainable) == 3 * len(trainable) and trainable < every_trainable   # the same modules, 3 layers
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = [encode_prompt(tok, t) for t in TEXTS[:3]]
    logps = completion_logps(model, *left_padded(ids, [encode_completion(tok, "Toy Story (1995)")] * 3,
                                                 tok.pad_token_id, "cpu"))[0]
    (-logps.sum()).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable and all(".layers.2." in n for n in changed)
    with pytest.raises(BackboneError, match="lora_layers"):
        build_model(BackboneConfig(**{**cfg.__dict__, "lora_layers": 0}), tok, 0, "cpu", tmp_path)


def test_chat_system_replaces_the_templates_default_system_turn():
    from bench.backbone import with_system_turn

    template = ("{% for m in messages %}{% if loop.first and messages[0]['role'] != 'system' %}<sys>Default "
                "assistant</sys>{% endif %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}")
    from jinja2 import Template
    user = [{"role": "user", "content": "hi"}]
    assert Template(template).render(messages=user) == "<sys>Default assistant</sys><user>hi</user>"
    assert Template(with_system_turn(template, "")).render(messages=user) == "<system></system><user>hi</user>"
    assert Template(with_system_turn(template, 'Be "brief"')).render(messages=user) == \
        '<system>Be "brief"</system><user>hi</user>'
    own = [{"role": "system", "content": "mine"}] + user
    assert Template(with_system_turn(template, "")).render(messages=own) == "<system>mine</system><user>hi</user>"
