"""BIGRec: a bi-step grounding paradigm for LLM recommenders (Bao et al., 2023, arXiv 2308.08434).

Step 1 (language space): the cell's shared SFT model, unchanged. BIGRec's own SFT trains on the whole Alpaca text
(``--train_on_inputs``: prompt + response tokens); we reuse the cell's completion-only SFT model instead, because in
the CausalDPO paper "all baseline methods and CausalDPO utilize the same supervised fine-tuning dataset" (Appendix
B.3): one SFT model per cell.

Step 2 (grounding to actual items): the ``grounding`` protocol of `methods.ranking.grounding`, **regardless of the
run's ``ranking.protocol``** unless ``protocol=run`` (then the run's protocol and settings, so that a table's rows
are measured alike; BIGRec is then the SFT model under that protocol, a copy of the SFT row except for grounding's
settings) (BIGRec is defined by its grounding; the method records this in its stats):

* generate unconstrained with ``num_beams`` beams (BIGRec's inference.py: 4), ground the top beam only;
* embed the generated text and every title with the **base** backbone's last-layer hidden state at the last token
  (BIGRec embeds with the base LLaMA, not the fine-tuned model; the same model embeds items and generations);
* ``D_{u,i} = ||e_gen - e_i||_2`` over all items, ranked ascending; exact title matches are valid outputs.

Step 3b (optional, off by default): BIGRec's popularity injection (adjust_pda.py),
``D~_{u,i} = (1 + C_i)^(-gamma) * D^_{u,i}`` with ``D^`` the per-row min-max normalised distance and ``C_i`` the
min-max normalised training interaction count of item i. ``gamma = 0`` (the default) gives plain BIGRec, which is
what the CausalDPO paper compares against; BIGRec grid-searches gamma per metric on validation, which we do not do.
Its collaborative-information variant (SASRec scores, adjust_ci.py) is not implemented.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from methods.base import Method, MethodContext, Paper, register
from methods.ranking import ProtocolRecommender
from methods.ranking.grounding import EMBEDDERS, make_embedder
from methods.declared_work import run_ranking_key


@dataclass
class BIGRecConfig:
    num_beams: int = field(default=4, metadata={
        "help": "beams of the unconstrained generation; the top beam is grounded (BIGRec: 4; 1 = greedy)"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "cap on generated tokens (None: the longest title + EOS; BIGRec: 128)"})
    embedder: str = field(default="backbone", metadata={
        "help": f"grounding embedder: {' or '.join(EMBEDDERS)} (BIGRec: the base backbone's last-token state)",
        "choices": EMBEDDERS})
    gamma: float = field(default=0.0, metadata={
        "help": "popularity injection (1 + C_i)^-gamma on min-max normalised distances (0: plain BIGRec)"})
    batch_size: int = field(default=16, metadata={"help": "prompts per generation / grounding batch"})
    protocol: str = field(default="grounding", metadata={
        "help": "grounding: BIGRec's own grounding with the settings above, whatever the run's protocol; run: the "
                "run's protocol and settings (BIGRec is then the SFT model under that protocol)",
        "choices": ("grounding", "run")})


def popularity_adjust(counts: np.ndarray, gamma: float, device):
    """BIGRec's PDA adjustment of a (rows, items) distance batch: (1 + C)^-gamma * rowwise min-max(D)."""
    counts = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    spread = counts.max() - counts.min()
    c = ((counts - counts.min()) / spread if spread > 0 else torch.zeros_like(counts)).float().to(device)
    factor = (1.0 + c) ** (-gamma)

    def adjust(dist: torch.Tensor) -> torch.Tensor:
        low, high = dist.min(1, keepdim=True).values, dist.max(1, keepdim=True).values
        normalised = (dist - low) / (high - low).clamp_min(torch.finfo(dist.dtype).tiny)
        return factor.to(dist) * normalised

    return adjust


@register
class BIGRec(Method):
    name = "bigrec"
    fit_cacheable = False  # the SFT model itself, under its own grounding or the run's protocol
    paper = Paper("A Bi-Step Grounding Paradigm for Large Language Models in Recommendation Systems", "2308.08434",
                  "shared completion-only SFT model; grounding protocol with the base backbone as embedder")
    Config = BIGRecConfig

    def fit(self, ctx: MethodContext):
        cfg, tok = self.config, ctx.tokenizer
        if cfg.protocol == "run":
            recommender = ctx.recommender(ctx.load_sft_model())
            ctx.stats.update(protocol=recommender.protocol)
            ctx.log(f"bigrec: the run's {recommender.protocol} protocol (bigrec.protocol=run)")
            return recommender
        catalogue = ctx.catalogue
        embedder = make_embedder(cfg.embedder, tok, ctx.load_base_model, ctx.device)
        adjust = popularity_adjust(ctx.train_counts, cfg.gamma, ctx.device) if cfg.gamma else None
        ctx.stats.update(protocol="grounding", embedder=cfg.embedder, num_beams=cfg.num_beams, gamma=cfg.gamma)
        ctx.log(f"bigrec: grounding protocol (embedder {cfg.embedder}, {cfg.num_beams} beams, gamma {cfg.gamma}), "
                f"whatever the run's ranking protocol")
        return ProtocolRecommender(ctx.load_sft_model(), catalogue, "grounding", cfg.batch_size, tokenizer=tok,
                                   embedder=embedder, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens,
                                   adjust=adjust)

    def ranking_key(self, ranking) -> str:
        if self.config.protocol == "run":
            return run_ranking_key(ranking)
        return f"grounding/{self.config.embedder}/beams{self.config.num_beams}"
