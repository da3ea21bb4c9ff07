"""RosePO: DPO with oracle-predicted personalised label smoothing and tailored rejected sampling (Liao et al., 2024,
arXiv 2410.12519, "RosePO: Aligning LLM-based Recommenders with Human Values").

No public code exists; the paper fixes the shape of the method, not its details. What follows is our reading, and
every free choice is listed.

Loss (conservative-DPO form with a per-pair smoothing factor, `methods.losses.rosepo_loss`):

    L_ij = -[ (1 - eps_ij) * log sigmoid(beta * h_ij) + eps_ij * log sigmoid(-beta * h_ij) ],
    h_ij = (log pi(y_w|x_i) - log pi_ref(y_w|x_i)) - (log pi(y_l,j|x_i) - log pi_ref(y_l,j|x_i)),

averaged over the K rejected responses of prompt i (each its own pair with its own eps, as `dpo` averages its K
pairwise losses), then over the batch. eps = 0 is DPO; a constant eps is cDPO (TRL <= 0.28 `sigmoid` +
`label_smoothing`; not TRL's `robust`, which is rDPO). The reference is the cell's SFT model (cached log-probs; eps
does not change them, so it does not key the cache). Chosen = the ground-truth next item.

Preference oracle and the eps mapping (`oracle`):
- `mf` (default): a conventional recommender over the same items, the biased matrix factorisation of
  `splits.imputation` (ALS), fitted on the training split's interactions as implicit feedback: every observed
  (user, item) pair rated 1, plus `oracle_negatives` seeded uniformly drawn unobserved catalogue items per observed
  pair rated 0. The paper names a sequential recommender (e.g. SASRec); we use MF because it is cheap, deterministic
  (seeded by the training seed) and already in the repository. The oracle scores a training *sample* (whose user
  has many samples), so the user side is the sample's own history, folded in: p_x = argmin_p sum_{h in H_x}
  (1 - mu - b_h - p.q_h)^2 + reg * |H_x| * |p|^2 (the ALS user step without the user bias, which cancels in score
  differences), and s(x, i) = b_i + p_x.q_i. Items the fit never saw score 0 (bias and factors 0).
  Caveat: the item bias b_i mostly encodes popularity, so this oracle tends to prefer popular rejected items and
  gives the `popularity` negatives larger eps, softening their debiasing push; `oracle_item_bias=False` scores by
  taste alone (s = p_x.q_i). Default True: the paper's oracle is a conventional recommender, popularity included.
- The mapping (the paper says only "a personalised smoothing factor predicted by a preference oracle"):
      eps_ij = eps_max * sigmoid((s(x_i, y_l,j) - s(x_i, y_w)) / T).
  When the oracle prefers the rejected item the pair is more likely a false negative (noisy label) and is
  smoothed more; a pair the oracle agrees with gets eps -> 0 (plain DPO). eps_max = 0.5 (default) keeps every
  eps < 0.5, so no label is ever flipped (eps = 0.5 makes the pair uninformative, eps > 0.5 reverses it).
  T = `eps_temperature`, by default (None) the standard deviation of the score differences over the pair set, so
  that the mapping does not depend on the oracle's score scale (1.0 if that std is 0).
- `constant`: eps_ij = `epsilon` for every pair (cDPO). `epsilon` is also what the loss uses when a pair set
  carries no smoothing array (0 for a plain float beta).

Rejected sampling (`negative_strategy`; the paper's one helpfulness and two harmlessness strategies, of which the
semantic-hallucination one does not apply here: every rejected response is a real catalogue title):
- `self_hard` (helpfulness): the SFT model's own top prediction (`ctx.predict_top1`: constrained greedy, so always
  a title), as SPRec does. When it is the target, a history item or not a catalogue item, the slot falls back to a
  random negative; the fallbacks are counted (by reason) in the stats. Only one self-hard item per prompt exists,
  so with K > 1 the other K - 1 slots are random.
- `popularity` (against popularity bias): items drawn with probability proportional to
  train_counts ** `popularity_power` (training interactions per item), excluding the target, the history and the
  row's other negatives (sequential draws without replacement). Items never seen in training have weight 0; if a
  row has fewer eligible popular items than slots, the rest are uniform.
- `random`: uniform over the catalogue outside the target, the history and the row's other negatives.
- `mixed` (default): with K = 1 (the paper's setting), a seeded random `self_hard_fraction` of the rows (rounded)
  get a self-hard negative and the others a popularity one; with K >= 2 every row gets the self-hard item in slot 0
  and popularity items in the K - 1 other slots.
All draws are seeded by the training seed. Stats (`method_stats`): slot counts per strategy, self-hard fallbacks,
eps mean / min / max overall and per strategy, the temperature, and the fraction of pairs the oracle agrees with.

beta = 0.1 (as `dpo`). The `+causal` variant composes as for any preference method.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

from methods.base import MethodContext, Paper, register
from methods.preference import PreferenceMethod
from splits.imputation import fit_biased_mf

STRATEGIES = ("self_hard", "popularity", "random", "mixed")
ORACLES = ("mf", "constant")


@dataclass
class RosePOConfig:
    beta: float = field(default=0.1, metadata={"help": "beta: scale of the implicit reward"})
    oracle: str = field(default="mf", metadata={
        "help": "where eps comes from: mf (matrix factorisation oracle, personalised eps) or constant (cDPO)",
        "choices": ORACLES})
    epsilon: float = field(default=0.1, metadata={
        "help": "constant label smoothing of oracle=constant (and of pair sets without per-pair eps)"})
    eps_max: float = field(default=0.5, metadata={
        "help": "eps = eps_max * sigmoid((s(x, y_l) - s(x, y_w)) / T); 0.5 never flips a label"})
    eps_temperature: float | None = field(default=None, metadata={
        "help": "T of the eps mapping (None: std of the oracle score differences over the pair set)"})
    negative_strategy: str = field(default="mixed", metadata={
        "help": "rejected sampling: self_hard, popularity, random, or mixed (self_hard + popularity)",
        "choices": STRATEGIES})
    self_hard_fraction: float = field(default=0.5, metadata={
        "help": "mixed with K = 1: fraction of rows with a self-hard negative (the rest: popularity)"})
    popularity_power: float = field(default=1.0, metadata={
        "help": "popularity sampling weight = training count ** power"})
    oracle_rank: int = field(default=16, metadata={"help": "MF oracle: latent dimension"})
    oracle_reg: float = field(default=0.1, metadata={"help": "MF oracle: ALS ridge penalty (times the count)"})
    oracle_epochs: int = field(default=10, metadata={"help": "MF oracle: ALS sweeps"})
    oracle_negatives: int = field(default=1, metadata={
        "help": "MF oracle: sampled unobserved items (rated 0) per observed interaction (rated 1)"})
    oracle_item_bias: bool = field(default=True, metadata={
        "help": "MF oracle: score with the item bias b_i (largely popularity); False: taste p.q only"})


# --- rejected sampling ---------------------------------------------------------------------------------------------

def weighted_negatives(targets: np.ndarray, histories: list[np.ndarray], items: np.ndarray, weights: np.ndarray,
                       counts: np.ndarray, rng: np.random.Generator, taken: np.ndarray | None = None) -> np.ndarray:
    """counts[i] items for row i drawn with probability proportional to `weights` (per catalogue position),
    sequentially without replacement, never the row's target, history items or items in `taken[i]` (-1 = none);
    uniform over the remaining items when the weighted ones run out. Returns (n, max(counts)), -1 padded."""
    items = np.asarray(items)
    weights = np.asarray(weights, dtype=np.float64)
    out = np.full((len(targets), int(max(counts, default=0))), -1, dtype=np.int64)
    if out.shape[1] == 0:
        return out
    cdf = np.cumsum(weights)
    total = cdf[-1] if len(cdf) else 0.0
    for row, (target, history, need) in enumerate(zip(targets, histories, counts)):
        if need == 0:
            continue
        banned = set(np.asarray(history).tolist()) | {int(target)}
        if taken is not None:
            banned |= {int(t) for t in taken[row] if t >= 0}
        chosen: list[int] = []
        for _ in range(20):                                   # rejection draws from the global distribution
            if total <= 0:
                break
            for pos in np.searchsorted(cdf, rng.random(4 * need + 8) * total, side="right").tolist():
                item = int(items[min(pos, len(items) - 1)])
                if item not in banned:
                    banned.add(item)
                    chosen.append(item)
                    if len(chosen) == need:
                        break
            if len(chosen) == need:
                break
        if len(chosen) < need:                                # exact draw among what is left
            left = np.array([i for i, item in enumerate(items.tolist()) if item not in banned], dtype=np.int64)
            w = weights[left]
            heavy = left[w > 0]
            take = min(need - len(chosen), len(heavy))
            if take:
                chosen += items[rng.choice(heavy, take, replace=False, p=w[w > 0] / w[w > 0].sum())].tolist()
            rest = np.setdiff1d(left, heavy)
            if need - len(chosen) > len(rest):
                raise ValueError(f"row {row}: the catalogue of {len(items)} items is too small for {need} negatives")
            chosen += items[rng.choice(rest, need - len(chosen), replace=False)].tolist()
        out[row, :need] = chosen
    return out


def popularity_negatives(targets, histories, items, train_counts, k: int, rng: np.random.Generator,
                         power: float = 1.0) -> np.ndarray:
    """(n, k) items drawn proportionally to training popularity (count ** power), none the target or in the history."""
    weights = np.asarray(train_counts, dtype=np.float64) ** power * (np.asarray(train_counts) > 0)
    return weighted_negatives(targets, histories, items, weights, np.full(len(targets), k), rng)


def self_hard_negatives(predicted: np.ndarray, targets: np.ndarray, histories: list[np.ndarray],
                        items: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The model's top-1 predictions as rejected items where usable; returns (items with -1 where not, masks of the
    fallback reasons: `correct` (= target), `in_history`, `invalid` (not a catalogue item))."""
    predicted = np.asarray(predicted, dtype=np.int64)
    invalid = ~np.isin(predicted, items)
    correct = ~invalid & (predicted == targets)
    seen = np.array([p in set(np.asarray(h).tolist()) for p, h in zip(predicted.tolist(), histories)], dtype=bool)
    in_history = ~invalid & ~correct & seen
    usable = ~(invalid | correct | in_history)
    return np.where(usable, predicted, -1), {"correct": correct, "in_history": in_history, "invalid": invalid}


def strategy_slots(strategy: str, n: int, k: int, self_hard_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(n, k) strategy name of every rejected slot (the rule of the module docstring)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown negative_strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    slots = np.empty((n, k), dtype="U20")
    if strategy in ("popularity", "random"):
        slots[:] = strategy
    elif strategy == "self_hard":
        slots[:] = "random"
        slots[:, 0] = "self_hard"
    elif k == 1:
        slots[:] = "popularity"
        slots[rng.permutation(n)[:int(round(self_hard_fraction * n))], 0] = "self_hard"
    else:
        slots[:] = "popularity"
        slots[:, 0] = "self_hard"
    return slots


# --- the preference oracle -----------------------------------------------------------------------------------------

@dataclass
class MFOracle:
    """Biased MF over catalogue positions; scores a sample by folding its history in as the user vector."""

    items: np.ndarray
    mean: float
    item_bias: np.ndarray       # per catalogue position (0 for items the fit never saw)
    item_factors: np.ndarray    # (n_items, rank)
    reg: float
    train_rmse: float = float("nan")
    use_item_bias: bool = True  # False: s = p.q (the bias still enters the fold-in target)

    def __post_init__(self):
        self._index = pd.Index(np.asarray(self.items, dtype=np.int64))

    def positions(self, ids) -> np.ndarray:
        """Catalogue positions of item ids (-1 for ids outside the catalogue)."""
        return self._index.get_indexer(np.asarray(ids, dtype=np.int64))

    def user_vector(self, history) -> np.ndarray:
        pos = self.positions(history)
        pos = pos[pos >= 0]
        q = self.item_factors[pos]
        gram = q.T @ q + self.reg * max(len(pos), 1) * np.eye(q.shape[1])
        return np.linalg.solve(gram, q.T @ (1.0 - self.mean - self.item_bias[pos]))

    def scores(self, history, candidates) -> np.ndarray:
        """s(x, i) = b_i + p_x . q_i for the candidate item ids (user constants dropped: they cancel in differences)."""
        pos = self.positions(candidates)
        known = pos >= 0
        out = np.zeros(len(pos))
        out[known] = self.item_factors[pos[known]] @ self.user_vector(history)
        if self.use_item_bias:
            out[known] += self.item_bias[pos[known]]
        return out


def fit_mf_oracle(train: pd.DataFrame, items: np.ndarray, rng: np.random.Generator, rank: int = 16, reg: float = 0.1,
                  epochs: int = 10, negatives: int = 1) -> MFOracle:
    """Implicit-feedback biased MF (ALS, `splits.imputation`): observed (user, item) = 1, `negatives` uniformly drawn
    unobserved catalogue items per observed pair = 0."""
    if negatives < 1:
        raise ValueError("the MF oracle needs oracle_negatives >= 1 (with positives only every score is equal)")
    observed = train[["user", "item"]].drop_duplicates()
    users = observed["user"].to_numpy(np.int64)
    sampled = pd.DataFrame({"user": np.repeat(users, negatives),
                            "item": rng.choice(np.asarray(items, dtype=np.int64), len(users) * negatives)})
    sampled = sampled.drop_duplicates()
    sampled = sampled.merge(observed, on=["user", "item"], how="left", indicator=True)
    sampled = sampled[sampled["_merge"] == "left_only"][["user", "item"]]
    data = pd.concat([observed.assign(rating=1.0), sampled.assign(rating=0.0)], ignore_index=True)
    mf = fit_biased_mf(data["user"].to_numpy(), data["item"].to_numpy(), data["rating"].to_numpy(), rng,
                       rank=rank, reg=reg, epochs=epochs)
    items = np.asarray(items, dtype=np.int64)
    pos = pd.Index(mf.items).get_indexer(items)
    known = pos >= 0
    bias = np.zeros(len(items))
    factors = np.zeros((len(items), rank))
    bias[known], factors[known] = mf.item_bias[pos[known]], mf.item_factors[pos[known]]
    return MFOracle(items, mf.mean, bias, factors, reg, mf.train_rmse)


def oracle_margins(oracle: MFOracle, targets: np.ndarray, histories: list[np.ndarray],
                   negatives: np.ndarray) -> np.ndarray:
    """d_ij = s(x_i, y_l,j) - s(x_i, y_w): positive where the oracle prefers the rejected item. Shape (n, K)."""
    out = np.empty(negatives.shape, dtype=np.float64)
    for row, (target, history, neg) in enumerate(zip(targets, histories, negatives)):
        s = oracle.scores(history, np.concatenate([[target], neg]))
        out[row] = s[1:] - s[0]
    return out


def smoothing_from_margins(margins: np.ndarray, eps_max: float = 0.5,
                           temperature: float | None = None) -> tuple[np.ndarray, float]:
    """eps = eps_max * sigmoid(d / T), T = `temperature` or the std of d (1.0 if that is 0); returns (eps, T)."""
    if temperature is None:
        std = float(np.std(margins)) if margins.size else 0.0
        temperature = std if std > 0 and np.isfinite(std) else 1.0
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return eps_max * expit(margins / temperature), float(temperature)


# --- the method ----------------------------------------------------------------------------------------------------

@register
class RosePO(PreferenceMethod):
    name = "rosepo"
    paper = Paper("RosePO: Aligning LLM-based Recommenders with Human Values", "2410.12519",
                  "no public code; eps mapping and sampling rules are our reading, see the module docstring")
    Config = RosePOConfig
    loss = "rosepo"

    def __init__(self, config=None):
        super().__init__(config)
        c = self.config  # oracle and negative_strategy: their `choices`, checked by Method.__init__
        for key in ("epsilon", "eps_max", "self_hard_fraction"):
            if not 0.0 <= getattr(c, key) <= 1.0:
                raise ValueError(f"rosepo {key} must lie in [0, 1], got {getattr(c, key)}")
        self._stats: dict = {}
        self._slots: np.ndarray | None = None

    def negatives(self, ctx: MethodContext, rows: np.ndarray) -> np.ndarray:
        cfg, k = self.config, self.n_negatives(ctx)
        rng = np.random.default_rng([ctx.seed, 2410, 12519])
        targets = np.asarray(ctx.train.targets)[rows]
        histories = [ctx.train.histories[i] for i in rows]
        slots = strategy_slots(cfg.negative_strategy, len(rows), k, cfg.self_hard_fraction, rng)
        out = np.full((len(rows), k), -1, dtype=np.int64)
        stats: dict = {}

        hard = np.flatnonzero(slots[:, 0] == "self_hard")
        if len(hard):
            model = ctx.load_sft_model()
            predicted = np.asarray(ctx.predict_top1(model, [ctx.train.prompts[rows[i]] for i in hard]))
            del model
            picked, reasons = self_hard_negatives(predicted, targets[hard], [histories[i] for i in hard], ctx.items)
            out[hard, 0] = picked
            fallback = hard[picked < 0]
            slots[fallback, 0] = "self_hard_fallback"
            stats.update(rosepo_self_hard_fallbacks=int(len(fallback)),
                         **{f"rosepo_self_hard_fallback_{r}": int(m.sum()) for r, m in reasons.items()})
        counts_pop = (slots == "popularity").sum(1)
        if counts_pop.any():
            weights = np.asarray(ctx.train_counts, dtype=np.float64) ** cfg.popularity_power * (
                np.asarray(ctx.train_counts) > 0)
            drawn = weighted_negatives(targets, histories, ctx.items, weights, counts_pop, rng, taken=out)
            for row in np.flatnonzero(counts_pop):
                out[row, slots[row] == "popularity"] = drawn[row, :counts_pop[row]]
        is_random = np.isin(slots, ["random", "self_hard_fallback"])
        counts_rnd = is_random.sum(1)
        if counts_rnd.any():
            drawn = weighted_negatives(targets, histories, ctx.items, np.ones(len(ctx.items)), counts_rnd, rng,
                                       taken=out)
            for row in np.flatnonzero(counts_rnd):
                out[row, is_random[row]] = drawn[row, :counts_rnd[row]]
        assert (out >= 0).all()
        stats.update({f"rosepo_negatives_{s}": int((slots == s).sum())
                      for s in ("self_hard", "self_hard_fallback", "popularity", "random")})
        stats["rosepo_negative_strategy"] = cfg.negative_strategy
        self._slots, self._stats = slots, stats
        ctx.log(f"rosepo negatives ({cfg.negative_strategy}): " + ", ".join(
            f"{key.removeprefix('rosepo_negatives_')} {value}" for key, value in stats.items()
            if key.startswith("rosepo_negatives_")))
        return out

    def smoothing(self, ctx: MethodContext, rows: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        cfg = self.config
        stats = {"rosepo_oracle": cfg.oracle}
        if cfg.oracle == "constant":
            eps = np.full(negatives.shape, cfg.epsilon, dtype=np.float32)
        else:
            start = time.perf_counter()
            oracle = fit_mf_oracle(ctx.split["train"], ctx.items, np.random.default_rng([ctx.seed, 12519]),
                                   cfg.oracle_rank, cfg.oracle_reg, cfg.oracle_epochs, cfg.oracle_negatives)
            oracle.use_item_bias = cfg.oracle_item_bias
            margins = oracle_margins(oracle, np.asarray(ctx.train.targets)[rows],
                                     [ctx.train.histories[i] for i in rows], negatives)
            eps, temperature = smoothing_from_margins(margins, cfg.eps_max, cfg.eps_temperature)
            eps = eps.astype(np.float32)
            stats.update(rosepo_temperature=temperature, rosepo_oracle_train_rmse=float(oracle.train_rmse),
                         rosepo_oracle_agrees=float(np.mean(margins < 0)),
                         rosepo_oracle_seconds=time.perf_counter() - start)
        stats.update(rosepo_eps_mean=float(eps.mean()), rosepo_eps_min=float(eps.min()),
                     rosepo_eps_max=float(eps.max()))
        if self._slots is not None and self._slots.shape == eps.shape:
            stats.update({f"rosepo_eps_mean_{s}": float(eps[self._slots == s].mean()) for s in np.unique(self._slots)})
        self._stats.update(stats)
        ctx.log(f"rosepo eps ({cfg.oracle} oracle): mean {eps.mean():.3f}, range [{eps.min():.3f}, {eps.max():.3f}]")
        return eps

    def method_stats(self, ctx: MethodContext) -> dict:
        return dict(self._stats)
