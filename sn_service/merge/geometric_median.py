"""Geometric median by Weiszfeld's algorithm: the point minimising the
weighted sum of Euclidean distances to the models. Robust to fewer than
half of the (weighted) models being arbitrary."""

from __future__ import annotations

import numpy as np

from sn_service.merge.weighted_mean import normalised


def geometric_median(
    stacked: np.ndarray,
    weights: np.ndarray,
    max_iter: int = 100,
    tol: float = 1e-7,
    eps: float = 1e-12,
) -> np.ndarray:
    """Weiszfeld iterations from the weighted mean until the step is below tol."""
    a = normalised(weights)
    z = (a.astype(stacked.dtype) @ stacked).astype(np.float64)
    scale = max(float(np.abs(stacked).max()), 1.0)
    for _ in range(max_iter):
        dist = np.sqrt(((stacked - z.astype(stacked.dtype)) ** 2).sum(axis=1, dtype=np.float64))
        beta = a / np.maximum(dist, eps * scale)
        z_new = (beta / beta.sum()).astype(stacked.dtype) @ stacked
        step = float(np.linalg.norm(z_new - z)) / (float(np.linalg.norm(z)) + eps)
        z = z_new.astype(np.float64)
        if step < tol:
            break
    return z.astype(stacked.dtype)
