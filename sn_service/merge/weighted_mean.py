"""Weighted mean (FedAvg): each model counts by its weight."""

from __future__ import annotations

import numpy as np


def normalised(weights: np.ndarray) -> np.ndarray:
    """Weights scaled to sum to 1; all-zero weights count equally."""
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        return np.full(weights.shape, 1.0 / len(weights))
    return weights / total


def weighted_mean(stacked: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_i w_i x_i / sum_i w_i, as one matrix-vector product."""
    w = normalised(weights).astype(stacked.dtype)
    return w @ stacked
