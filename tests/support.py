"""Builders shared by the test modules (not a test module): tiny random Llamas and token data, preference pairs, a
word-tokenizer setup, and small raw files in each published dataset format. The fixtures built from them live in
`conftest.py`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import methods
from bench.backbone import train_word_tokenizer
from bench.pipeline import record_key_for
from bench.results import record_path, write_record
from methods.ranking import Catalogue
from methods.ranking.trie import Trie
from methods.train.preference_trainer import PreferencePairs

# ---------------------------------------------------------------- token-level models and data
VOCAB, BOS, EOS, PAD = 50, 1, 2, 0
WORDS = [f"w{i}" for i in range(60)]


def random_llama(vocab_size: int = VOCAB, seed: int = 0) -> LlamaForCausalLM:
    """The ranking tests' random 2-layer Llama (BOS 1, EOS 2, PAD 0)."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    return LlamaForCausalLM(config).float().eval()


def catalogue_for(items, completions: dict[int, list[int]]) -> Catalogue:
    """The catalogue of `items` (ids) with their completions (title tokens + EOS)."""
    return Catalogue(items=[int(i) for i in items], completions=[completions[int(i)] for i in items],
                     eos_id=EOS, pad_id=PAD)


def random_catalogue(n_items: int, seed: int = 0) -> Catalogue:
    rng = np.random.default_rng(seed)
    titles = {(5, 6), (5, 6, 7), (8,)}  # (5, 6) is a token-prefix of (5, 6, 7); (8,) has one title token
    while len(titles) < n_items:
        length = int(rng.integers(0, 5))  # completions of 1..5 tokens with EOS
        titles.add(tuple(int(t) for t in rng.integers(3, 12 if length < 3 else VOCAB, size=length)))
    completions = [list(t) + [EOS] for t in sorted(titles, key=lambda t: rng.random())]
    return Catalogue(items=list(range(100, 100 + n_items)), completions=completions, eos_id=EOS, pad_id=PAD)


def random_prompts(lengths: list[int], seed: int = 1) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[BOS] + rng.integers(3, VOCAB, size=n - 1).tolist() for n in lengths]


def naive_scores(model, prompts, catalogue) -> np.ndarray:
    out = np.zeros((len(prompts), len(catalogue)))
    with torch.inference_mode():
        for i, p in enumerate(prompts):
            for j, c in enumerate(catalogue.completions):
                logp = model(torch.tensor([p + c])).logits[0].log_softmax(-1)
                out[i, j] = sum(logp[len(p) - 1 + t, tok].item() for t, tok in enumerate(c))
    return out


def greedy_constrained(model, prompt, trie: Trie) -> list[int]:
    generated: list[int] = []
    with torch.inference_mode():
        while not generated or generated[-1] != EOS:
            logits = model(torch.tensor([prompt + generated])).logits[0, -1]
            allowed = trie.allowed(generated)
            generated.append(allowed[int(logits[allowed].argmax())])
    return generated


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=32, max_position_embeddings=128, pad_token_id=PAD)
    return LlamaForCausalLM(cfg).eval()


def naive_logp(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].log_softmax(-1)
    return sum(logits[len(prompt) - 1 + j, tok].item() for j, tok in enumerate(completion))


def pairs(n=12, k=2, seed=0):
    rng = np.random.default_rng(seed)
    rand = lambda lo, hi: rng.integers(3, 40, size=int(rng.integers(lo, hi))).tolist()  # noqa: E731
    return PreferencePairs(prompts=[rand(3, 9) for _ in range(n)], chosen=[rand(1, 4) + [2] for _ in range(n)],
                           rejected=[[rand(1, 4) + [2] for _ in range(k)] for _ in range(n)])


def word_model_setup(seed=0, n=24):
    tok = train_word_tokenizer([" ".join(WORDS)])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=32,
                                         pad_token_id=tok.pad_token_id))
    rng = np.random.default_rng(seed)
    prompts = [[tok.bos_token_id] + rng.integers(4, len(tok), int(rng.integers(3, 8))).tolist() for _ in range(n)]
    completions = [rng.integers(4, len(tok), int(rng.integers(1, 4))).tolist() + [tok.eos_token_id]
                   for _ in range(n)]
    return tok, model, prompts, completions



# ---------------------------------------------------------------- raw files in the published formats
def ml10m_lines() -> list[str]:
    lines = []
    # user 1: 20 positives (4.5 / 5) and 2 ratings of 4.0 (not positive: "> 4"), timestamps decreasing
    for i in range(20):
        lines.append(f"1::{i + 1}::{4.5 if i % 2 else 5}::{1_000_000 - i}")
    lines += ["1::21::4::900", "1::22::4.0::901"]
    # user 2: 19 positives and 5 ratings of 4 -> dropped
    lines += [f"2::{i + 1}::5::{2_000 + i}" for i in range(19)] + [f"2::{i + 1}::4::{3_000 + i}" for i in range(5)]
    # user 3: 21 positives (4.5) and 4 of 3.5 -> kept
    lines += [f"3::{i + 1}::4.5::{5_000 + i}" for i in range(21)] + [f"3::{i + 1}::3.5::{6_000 + i}" for i in range(4)]
    return lines


def write_ml10m(folder: Path, ratings: list[str] | None = None) -> Path:
    folder = folder / "ml-10M100K"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("\n".join(ratings or ml10m_lines()) + "\n")
    movies = b"".join(f"{i}::Movie {i} (199{i % 10})::Drama|Comedy\n".encode() for i in range(1, 23) if i not in (7, 8))
    movies += "7::Hamlet (1990)::Drama\n8::Hamlet (1990)::Drama\n".encode()
    movies = movies.replace(b"Movie 3 (1993)", "Misérables, Les (1995)".encode("latin-1"))  # a non-UTF-8 line
    (folder / "movies.dat").write_bytes(movies)
    return folder


def write_yelp(folder: Path, extra_review: str | None = None) -> Path:
    """Businesses b1-b5 (b4 has no name) and 50 named shops; user A: 40 five-star reviews of distinct businesses,
    3 four-star, 2 of the unnamed b4, 1 of an unknown business and a later 2-star repeat review of b1 (a duplicate);
    user B: 39 five-star and 10 lower reviews of distinct businesses (one positive short of the filter)."""
    folder.mkdir(parents=True, exist_ok=True)
    businesses = [
        {"business_id": "b1", "name": "Starbucks", "city": "Las Vegas", "stars": 4.0},
        {"business_id": "b2", "name": "Starbucks", "city": "Las Vegas"},
        {"business_id": "b3", "name": "Joe's", "city": "Phoenix"},
        {"business_id": "b4", "name": None, "city": "Phoenix"},  # no name: its reviews are dropped
        {"business_id": "b5", "name": "Starbucks", "city": "Toronto"},
    ] + [{"business_id": f"s{k}", "name": f"Shop {k}", "city": "Madison"} for k in range(1, 51)]
    (folder / "yelp_academic_dataset_business.json").write_text("".join(json.dumps(b) + "\n" for b in businesses))
    reviews = []
    day = 0

    def review(user, business, stars):
        nonlocal day
        day += 1
        reviews.append({"review_id": f"r{len(reviews)}", "user_id": user, "business_id": business, "stars": stars,
                        "date": f"2015-{1 + day // 28:02d}-{1 + day % 28:02d} 12:00:00", "text": "..."})

    named = ["b1", "b2", "b3", "b5"] + [f"s{k}" for k in range(1, 51)]
    for business in named[:40]:  # user A: 40 five-star reviews, 3 four-star, 2 on b4, 1 unknown, 1 repeat of b1
        review("userA", business, 5)
    for business in named[40:43]:
        review("userA", business, 4)
    review("userA", "b4", 5)
    review("userA", "b4", 5)
    review("userA", "bX", 5)
    review("userA", "b1", 2)  # a second visit: one interaction per (user, item), the first is kept
    for business in named[:39]:  # user B: 39 five-star + 10 others -> dropped
        review("userB", business, 5.0)
    for i, business in enumerate(named[39:49]):
        review("userB", business, 1 + i % 4)
    lines = [json.dumps(r) for r in reviews]
    if extra_review is not None:
        lines.insert(4, extra_review)
    (folder / "yelp_academic_dataset_review.json").write_text("\n".join(lines) + "\n")
    return folder


BOOKS = [
    b'"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"',
    b'"0001";"Tom &amp; Jerry";"Auth";"1999";"P";"s";"m";"l"',
    b'"0002";"Les Mis\xe9rables";"Hugo";"0";"P";"s";"m";"l"',  # latin-1 byte, unknown year
    b'"0003";"DK Readers: X (Level 4)\\";Michael T";"2000";"DK";"s";"m";"l"',  # malformed: 7 fields
    b'"0004";"Tom &amp; Jerry";"Other";"2050";"P";"s";"m";"l"',  # same title, impossible year
    b'"000500000X";"Dad\x92s Book";"A";"1980";"P";"s";"m";"l"',  # cp1252 right quote
    b'"0006";"The "Best" Book";"A";"2001";"P";"s";"m";"l"',  # stray quotes inside a field
    b'"0007";"The \\"Secret\\" Garden";"B";"1911";"P";"s";"m";"l"',  # the dump's backslash-escaped quotes
] + [f'"1{k:03d}";"Book {k}";"A";"{1950 + k}";"P";"s";"m";"l"'.encode() for k in range(1, 31)]


def write_bx(folder: Path) -> Path:
    """User 10: 20 positives (8-10) on distinct books, 2 implicit 0s, one 7, a later re-rating of a book (a
    duplicate), and ratings of a skipped book row and an unknown ISBN; two malformed lines; user 11: 19 positives
    and 5 implicit (dropped by the filter)."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = ['"User-ID";"ISBN";"Book-Rating"']
    kept = ["0001", "0002", "0004", "000500000x", "0006", "0007"] + [f"1{k:03d}" for k in range(1, 15)]
    ratings += [f'"10";"{isbn}";"{8 + i % 3}"' for i, isbn in enumerate(kept)]  # 20 positives; lower-case x:
    ratings += ['"10";"1015";"0"', '"10";"1016";"0"', '"10";"1017";"7"']    # ISBNs are matched upper-case
    ratings += ['"10";"0001";"3"']  # re-rated later: one interaction per (user, book), the first (10) is kept
    ratings += ['"10";"0003";"9"', '"10";"9999";"10"']  # book row skipped / unknown ISBN: dropped
    ratings += ['"12";"0001";"5";"extra"', '"abc";"0001";"5"']  # malformed: skipped
    ratings += [f'"11";"1{k:03d}";"9"' for k in range(1, 20)] + [f'"11";"1{k:03d}";"0"' for k in range(20, 25)]
    (folder / "BX-Book-Ratings.csv").write_bytes(("\r\n".join(ratings) + "\r\n").encode("cp1252"))
    (folder / "BX-Books.csv").write_bytes(b"\r\n".join(BOOKS) + b"\r\n")
    return folder


# ---------------------------------------------------------------- records without training
def fake_record(cfg, method: str, hr10: float, ranks: list[int] | None = None, seconds: float | None = None) -> dict:
    """A record as bench.pipeline.run writes it, with chosen metrics."""
    hparams = dataclasses.asdict(methods.resolve(method, cfg.method_overrides.get(method)).config)
    config = cfg.to_dict()
    fingerprint = "f" * 64
    metrics = {"HR@10": hr10, "NDCG@10": hr10 / 2, "HR@20": hr10 * 1.5, "NDCG@20": hr10 / 1.5, "valid_ratio": 1.0}
    groups = {f"G{g}": {"n": 10, **{k: metrics[k] for k in ("HR@10", "NDCG@10", "HR@20", "NDCG@20")}}
              for g in range(1, 6)}
    part = {"metrics": metrics, "groups": groups, "samples": 64, "seconds": 0.1,
            "recommendation_counts": {f"G{g}": 100 // g for g in range(1, 6)}}
    if ranks is not None:
        part["target_ranks"] = ranks
    key = record_key_for(method, hparams, config, fingerprint)
    return {"key": key, "method": method, "paper": {"title": method, "arxiv": "", "note": ""},
            "hyperparameters": hparams, "config": config, "dataset": cfg.data.dataset, "shift": cfg.data.shift,
            "seed": cfg.seed, "split_seed": cfg.data.split_seed, "split_fingerprint": fingerprint, "split_info": {},
            "protocol": cfg.ranking.protocol, "sft_tag": None, "sft": None, "fit_seconds": 1.0,
            "seconds_per_epoch": seconds, "method_stats": {}, "results": {"ood_test": part},
            "environment": {"device": "cpu (test)", "git_commit": "abc", "versions": {}}, "memory": {},
            "created": "2026-01-01T00:00:00+0000"}


class FakeRun:
    """Stands in for bench.pipeline.run: records every call and writes fake records."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, names, log):
        self.calls.append((cfg.data.dataset, cfg.data.shift, cfg.seed, list(names)))
        for name in names:
            rec = fake_record(cfg, name, 0.01)
            write_record(record_path(cfg.results_dir, cfg.data.dataset, cfg.data.shift, name, rec["key"]), rec)
        return []
