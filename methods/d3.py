"""D3: "Decoding Matters: Addressing Amplification Bias and Homogeneity Issue for LLM-based Recommendation"
(Bao, Zhang, Zhang, Huo, Chen, Feng; EMNLP 2024, arXiv 2406.14900). Official code: SAI990323/DecodingMatters @ 585c842.

D3 changes only decoding. The cell's SFT model is ranked by trie-constrained beam search (beams = the top-k list)
whose step scores are mixed with a text-free assistant, SASRec (`methods.sasrec`, trained with RecBole on the same
training samples):

    p_TF(v | h) = sum_{i under h v} P_S(i|u) / sum_{v' allowed after h} sum_{i under h v'} P_S(i|u)
    s'(v | h)   = g * log_softmax(LLM)(v | x, h) + (1 - g) * log p_TF(v | h)
    score(y)    = sum_t s'(y_t | y_<t)            (no length normalisation: length_penalty = 0)

with P_S(i|u) = softmax_i of SASRec's logits for the user's history (see `methods.ranking.d3_decoding`). Removing the length
normalisation is the paper's amplification-bias fix (ghost tokens with p ~ 1 no longer inflate long titles);
the assistant is its homogeneity fix.

Choices and deviations:
- g = `guidance_scale` = 0.8 by default. No value is published (the repository's script never sets it, see next
  item; the question in DecodingMatters issue #1 went unanswered). 0.8 gives the assistant a quarter of the LLM's
  weight (s + 0.25 log p_TF up to scale): the LLM stays the main scorer and SASRec re-orders prefixes where the LLM
  is unsure, mostly the first title tokens. Tune it with ``--set d3.guidance_scale=...``.
- The official evaluate script passes no ``--guidance_scale``, so g defaults to 1 and the processor returns early:
  the shipped D3 silently ignores SASRec. Here g < 1 by default; g = 1 reproduces that behaviour exactly.
- The paper disables length normalisation "for ghost tokens"; the code (and we) set length_penalty = 0 everywhere.
- P_S gets a uniform floor eps = 1e-6 (`assistant_floor`) so catalogue items SASRec never saw stay reachable.
- Official decoding uses batch size 1 and a response prefix of 4 prompt tokens as trie keys; we batch prompts
  (`beam_batch_size`) and our completions start right after the prompt (the shared template), so no key overlap.
- SASRec hyperparameters are `methods.sasrec.SASRecConfig`'s (inherited fields); the official run used a SASRec
  trained separately, on the same data, whose logits file is not public.
- The official SFT step (Qwen2-0.5B, its own typo'd prompt) is replaced by the cell's shared SFT model.
- Nothing is trained on the LLM side, so ``seconds_per_epoch`` is SASRec's.
- D3 ranks with its own decoding by default (``protocol=d3``; its record names the protocol ``beam``), whatever the
  run's ``ranking.protocol``. With ``protocol=run`` it follows the run's protocol so that a table's rows are
  measured alike: under ``likelihood`` every item gets D3's sequence score exactly, which telescopes to
  ``g log P_LLM(item) + (1 - g) log P_S(item)`` (no beam pruning, full LLM scores); under ``grounding`` D3's
  decoded top-1 title is grounded by the run's embedder (always a catalogue title, so always valid). Its stats
  hold ``guidance_scale``, ``length_penalty`` and ``assistant``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from methods.base import Method, MethodContext, Paper, register
from methods.ranking import Catalogue, score_all, top_k
from methods.ranking.d3_decoding import TrieMass, assistant_distribution, d3_rank
from methods.ranking.grounding import ground_texts
from methods.sasrec import SASRecConfig, TrainedSASRec, fit_sasrec, sasrec_workload
from methods.declared_work import CellSize, Work, run_ranking_key


@dataclass
class D3Config(SASRecConfig):
    guidance_scale: float = field(default=0.8, metadata={
        "help": "g: weight of the LLM's log-prob; 1 - g weighs the text-free assistant (1 = no assistant)"})
    length_penalty: float = field(default=0.0, metadata={
        "help": "HF beam length penalty (0: summed log-probs, D3's setting; 1: BIGRec's length-averaged)"})
    assistant_floor: float = field(default=1e-6, metadata={"help": "uniform mass mixed into SASRec's P_S"})
    beam_batch_size: int = field(default=4, metadata={"help": "prompts per constrained beam search call"})
    protocol: str = field(default="d3", metadata={
        "help": "d3: D3's own decoding (constrained beam + assistant, whatever the run's protocol); run: the run's "
                "protocol with D3's rule: likelihood = exact g log P_LLM + (1 - g) log P_S over every item, beam = "
                "D3's decoding, grounding = D3's decoded top-1 grounded by the run's embedder",
        "choices": ("d3", "run")})


class D3Recommender:
    """D3's rule under a protocol: ``beam`` (D3's decoding), ``likelihood`` (the same sequence score, exact over
    every item) or ``grounding`` (D3's decoded top-1 grounded by `grounding_options`' embedder)."""

    def __init__(self, model, catalogue: Catalogue, sasrec: TrainedSASRec, cfg: D3Config, protocol: str = "beam",
                 grounding_options: dict | None = None):
        self.model, self.catalogue, self.sasrec, self.cfg = model, catalogue, sasrec, cfg
        self.protocol, self.grounding_options = protocol, grounding_options or {}
        self.mass = TrieMass(catalogue)

    def rank(self, prompts, histories, k, exclude=None, chunk: int = 512):
        """SASRec logits `chunk` prompts at a time (an (n, n_items) matrix for every test sample would be large)."""
        topk, valid = np.full((len(prompts), k), -1, dtype=np.int64), np.zeros(len(prompts), dtype=bool)
        for start in range(0, len(prompts), chunk):
            part = slice(start, start + chunk)
            logits = self.sasrec.scores(list(histories[part]))
            banned = None if exclude is None else exclude[part]
            if self.protocol == "likelihood":
                topk[part], valid[part] = self._likelihood(prompts[part], logits, k, banned), True
                continue
            result = d3_rank(self.model, prompts[part], logits, self.catalogue, k=1 if self.protocol == "grounding"
                             else k, batch_size=self.cfg.beam_batch_size, guidance_scale=self.cfg.guidance_scale,
                             length_penalty=self.cfg.length_penalty, floor=self.cfg.assistant_floor, mass=self.mass,
                             exclude=banned)
            if self.protocol == "grounding":
                result = self._ground(result.topk[:, 0], k, banned)
            topk[part], valid[part] = result.topk, result.valid
        return topk, valid

    def _likelihood(self, prompts, logits, k, exclude):
        """sum_t s'(y_t | y_<t) telescopes to g log P_LLM(item) + (1 - g) log P_S(item): D3's score of every item."""
        llm = score_all(self.model, prompts, self.catalogue)
        g = self.cfg.guidance_scale
        return top_k(g * llm + (1 - g) * np.log(assistant_distribution(logits, self.cfg.assistant_floor)), k, exclude)

    def _ground(self, decoded: np.ndarray, k: int, exclude):
        tokenizer, embedder = self.grounding_options["tokenizer"], self.grounding_options["embedder"]
        titles, items = embedder.catalogue(self.catalogue, tokenizer)
        texts = [titles[i] if i >= 0 else "" for i in decoded]
        return ground_texts(texts, titles, items, embedder, k, exclude=exclude)


@register
class D3(Method):
    name = "d3"
    fit_cacheable = False  # its own decoding with a SASRec assistant
    paper = Paper("Decoding Matters: Addressing Amplification Bias and Homogeneity Issue for LLM-based "
                  "Recommendation", "2406.14900")
    Config = D3Config

    def fit(self, ctx: MethodContext):
        sasrec_cfg = SASRecConfig(**{f.name: getattr(self.config, f.name) for f in dataclasses.fields(SASRecConfig)})
        sasrec = fit_sasrec(ctx, sasrec_cfg, subdir="d3_sasrec")
        model = ctx.load_sft_model()
        model.eval()
        protocol, options = "beam", {}
        if self.config.protocol == "run":
            run = ctx.recommender(model)  # the run's protocol and its options
            protocol, options = run.protocol, run.options
        ctx.stats.update(protocol=protocol if protocol == "beam" else f"{protocol} (D3's score)",
                         guidance_scale=self.config.guidance_scale, length_penalty=self.config.length_penalty,
                         assistant="sasrec")
        return D3Recommender(model, ctx.catalogue, sasrec, self.config, protocol, options)

    def workload(self, size: CellSize) -> list[Work]:
        return sasrec_workload(self.config, size)   # its assistant; the LLM is the cell's SFT model

    def ranking_key(self, ranking) -> str:
        return "d3" if self.config.protocol == "d3" else f"d3/{run_ranking_key(ranking)}"
