"""Krum and multi-Krum (Blanchard et al., 2017): keep the model(s) closest to
their n - f - 2 nearest neighbours, f the number of Byzantine models
tolerated (default floor((n - 3) / 2), the most Krum allows)."""

from __future__ import annotations

import hashlib

import numpy as np

from sn_service.merge.weighted_mean import weighted_mean

_CHUNK = 1 << 20


def pairwise_sq_distances(stacked: np.ndarray) -> np.ndarray:
    """(n, n) squared Euclidean distances, accumulated in float64 by chunks."""
    n, p = stacked.shape
    gram = np.zeros((n, n), dtype=np.float64)
    for start in range(0, p, _CHUNK):
        block = stacked[:, start : start + _CHUNK].astype(np.float64)
        gram += block @ block.T
    sq = np.diag(gram)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0.0)


def krum_scores(stacked: np.ndarray, f: int | None = None) -> np.ndarray:
    """Each model's sum of squared distances to its n - f - 2 nearest others."""
    n = stacked.shape[0]
    if f is None:
        f = max(0, (n - 3) // 2)
    m = max(1, n - f - 2)
    d = pairwise_sq_distances(stacked)
    np.fill_diagonal(d, np.inf)
    nearest = np.sort(d, axis=1)[:, : min(m, n - 1)] if n > 1 else np.zeros((1, 1))
    return nearest.sum(axis=1)


def ranked(stacked: np.ndarray, f: int | None = None) -> list[int]:
    """Model indices by Krum score; equal scores by the model's bytes, so input order never matters."""
    scores = krum_scores(stacked, f)
    return sorted(range(len(scores)), key=lambda i: (scores[i], hashlib.sha256(stacked[i].tobytes()).digest()))


def krum(stacked: np.ndarray, weights: np.ndarray, f: int | None = None) -> np.ndarray:
    """The single model with the lowest Krum score."""
    return stacked[ranked(stacked, f)[0]].copy()


def multi_krum(stacked: np.ndarray, weights: np.ndarray, f: int | None = None, m: int | None = None) -> np.ndarray:
    """Weighted mean of the m best-scoring models (default m = n - f)."""
    n = stacked.shape[0]
    if f is None:
        f = max(0, (n - 3) // 2)
    if m is None:
        m = max(1, n - f)
    chosen = ranked(stacked, f)[:m]
    return weighted_mean(stacked[chosen], np.asarray(weights)[chosen])
