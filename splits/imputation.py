"""Biased matrix factorisation that imputes ratings for the exposure shift (Appendix B.1; Saito 2020; Wei et al. 2021).

Model: r_hat(u, i) = mu + b_u + b_i + p_u . q_i, fitted to observed ratings by alternating least squares (ALS-WR,
Zhou et al. 2008): each half-step solves, for every user (item) at once, the ridge problem for [p_u, b_u]
([q_i, b_i]) with penalty ``reg * n_u`` (``n_i``), the number of that user's (item's) ratings. Factors start from
N(0, 0.1^2) drawn from the caller's numpy generator, so a fit is a deterministic function of (data, rng state).
Predictions are clipped to the observed rating range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class MatrixFactorization:
    users: np.ndarray  # sorted user ids; row r of user_factors belongs to users[r]
    items: np.ndarray  # sorted item ids
    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    rating_range: tuple[float, float]
    train_rmse: float

    def predict_rows(self, rows: np.ndarray, clip: bool = True) -> np.ndarray:
        """Imputed ratings of every item for the users at `rows` (indices into `users`): shape (len(rows), items);
        `clip=False` leaves them unclipped (no ties at the top of the rating scale, for ranking)."""
        scores = (self.mean + self.user_bias[rows, None] + self.item_bias[None, :]
                  + self.user_factors[rows] @ self.item_factors.T)
        return np.clip(scores, *self.rating_range) if clip else scores

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Imputed ratings of (user, item) pairs; every user and item must have been in the fit."""
        u = np.searchsorted(self.users, users)
        i = np.searchsorted(self.items, items)
        if not (np.array_equal(self.users[u], users) and np.array_equal(self.items[i], items)):
            raise KeyError("predict: a user or item was not in the fit")
        scores = self.mean + self.user_bias[u] + self.item_bias[i] + np.einsum("nk,nk->n", self.user_factors[u],
                                                                              self.item_factors[i])
        return np.clip(scores, *self.rating_range)


def _solve(counts: sp.csr_matrix, targets: sp.csr_matrix, other: np.ndarray, reg: float) -> np.ndarray:
    """Ridge solution of [factors, bias] for every row of ``counts`` given the other side's factors ``other``."""
    features = np.hstack([other, np.ones((len(other), 1))])  # (m, k+1): the bias rides on a constant feature
    k1 = features.shape[1]
    outer = (features[:, :, None] * features[:, None, :]).reshape(len(features), k1 * k1)
    gram = np.asarray(counts @ outer).reshape(-1, k1, k1)
    n = np.asarray(counts.sum(axis=1)).ravel()
    gram += reg * n[:, None, None] * np.eye(k1)
    rhs = np.asarray(targets @ features)
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]


def fit_biased_mf(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    rng: np.random.Generator,
    rank: int = 16,
    reg: float = 0.1,
    epochs: int = 10,
) -> MatrixFactorization:
    """Fit r_hat = mu + b_u + b_i + p_u.q_i to one rating per (user, item) pair by ALS."""
    user_ids, u = np.unique(np.asarray(users, dtype="int64"), return_inverse=True)
    item_ids, i = np.unique(np.asarray(items, dtype="int64"), return_inverse=True)
    r = np.asarray(ratings, dtype="float64")
    shape = (len(user_ids), len(item_ids))
    counts = sp.csr_matrix((np.ones_like(r), (u, i)), shape=shape)
    counts_t = counts.T.tocsr()
    mean = float(r.mean())
    p = rng.normal(0.0, 0.1, (shape[0], rank))
    q = rng.normal(0.0, 0.1, (shape[1], rank))
    bu = np.zeros(shape[0])
    bi = np.zeros(shape[1])
    for _ in range(epochs):
        x = _solve(counts, sp.csr_matrix((r - mean - bi[i], (u, i)), shape=shape), q, reg)
        p, bu = x[:, :rank], x[:, rank]
        y = _solve(counts_t, sp.csr_matrix((r - mean - bu[u], (i, u)), shape=shape[::-1]), p, reg)
        q, bi = y[:, :rank], y[:, rank]
    fitted = np.clip(mean + bu[u] + bi[i] + np.einsum("nk,nk->n", p[u], q[i]), r.min(), r.max())
    return MatrixFactorization(
        users=user_ids, items=item_ids, mean=mean, user_bias=bu, item_bias=bi, user_factors=p, item_factors=q,
        rating_range=(float(r.min()), float(r.max())),
        train_rmse=float(np.sqrt(np.mean((fitted - r) ** 2))),
    )
