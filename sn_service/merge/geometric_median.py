"""Geometric median by Weiszfeld's algorithm: the point minimising the
weighted sum of Euclidean distances to the models. Robust to fewer than
half of the (weighted) models being arbitrary."""

from __future__ import annotations

import numpy as np

from sn_service.merge.weighted_mean import normalised

_CHUNK = 1 << 16


def distances(stacked: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row to z, by cache-sized chunks (no (n, P) temporary)."""
    n, p = stacked.shape
    acc = np.zeros(n, dtype=np.float64)
    buffer = np.empty((n, min(_CHUNK, p)), dtype=stacked.dtype)
    for start in range(0, p, _CHUNK):
        stop = min(p, start + _CHUNK)
        diff = buffer[:, : stop - start]
        np.subtract(stacked[:, start:stop], z[start:stop], out=diff)
        np.multiply(diff, diff, out=diff)
        acc += diff.sum(axis=1, dtype=np.float64)  # per-chunk float32 squares, float64 totals
    return np.sqrt(acc)


def geometric_median(
    stacked: np.ndarray,
    weights: np.ndarray,
    max_iter: int = 100,
    tol: float = 1e-6,
    eps: float = 1e-12,
) -> np.ndarray:
    """Weiszfeld iterations from the weighted mean until the relative step is below tol."""
    a = normalised(weights)
    z = (a.astype(stacked.dtype) @ stacked).astype(stacked.dtype)
    scale = max(float(np.abs(stacked).max()), 1.0)
    for _ in range(max_iter):
        beta = a / np.maximum(distances(stacked, z), eps * scale)
        z_new = (beta / beta.sum()).astype(stacked.dtype) @ stacked
        step = float(np.linalg.norm(z_new - z)) / (float(np.linalg.norm(z)) + eps)
        z = z_new
        if step < tol:
            break
    return z
