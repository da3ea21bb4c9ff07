"""Ranking: turn a causal LM and prompts into a top-k list of catalogue items per prompt, by a named protocol.

`rank(protocol, model, prompts, catalogue, k)` -> `Ranking`; `ProtocolRecommender` is the `Recommender` every LLM
method returns. The protocols (`PROTOCOLS`), each registered where it is implemented:

* ``likelihood`` (`methods.ranking.likelihood`): exact log P(title | prompt) of every item, top-k pruned;
* ``beam`` (`methods.ranking.beam`): trie-constrained beam search, the beams being the list;
* ``grounding`` (`methods.ranking.grounding`): unconstrained generation matched to every title by L2 distance.

`methods.ranking.d3_decoding` holds D3's decoding rule (constrained beam search mixed with a text-free assistant), which is
D3's own way of ranking rather than a protocol for every method.
"""
from methods.ranking import beam, grounding, likelihood  # noqa: F401  (registers the protocols)
from methods.ranking.catalogue import Catalogue, Ranking, top_k
from methods.ranking.likelihood import score_all
from methods.ranking.protocols import PROTOCOLS, ProtocolRecommender, rank

__all__ = ["Catalogue", "Ranking", "PROTOCOLS", "ProtocolRecommender", "rank", "score_all", "top_k"]
