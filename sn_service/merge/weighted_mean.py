"""Weighted mean (FedAvg): each model counts by its weight."""

from __future__ import annotations

import numpy as np

_BLOCK = 1 << 16  # columns at a time: the float64 accumulator stays in cache


def normalised(weights: np.ndarray) -> np.ndarray:
    """Weights scaled to sum to 1; all-zero weights count equally."""
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        return np.full(weights.shape, 1.0 / len(weights))
    return weights / total


def summed_weights(weights: np.ndarray) -> tuple[np.ndarray, float]:
    """The weights a mean multiplies by, and their sum it divides by; all-zero weights count equally."""
    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    if total <= 0:
        return np.ones(weights.shape), float(len(weights))
    return weights, total


def weighted_mean(stacked: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(sum_i w_i x_i) / (sum_i w_i), accumulated in float64 row after row, in the models' dtype.

    Each parameter's value depends on its own column only, always added in the same order, so a
    merge of any slice of the columns gives bit for bit the values of the whole merge: the leader can
    merge models of gigabytes a column chunk at a time (``sn_service.streamed_merge``) and get the
    model a merge in memory gives. (A BLAS matrix-vector product, used before, rounds differently
    depending on where a column falls in the matrix.) The sum is divided once, at the end, so that
    ``RunningMean`` (``sn_service.merge.running_mean``) gives the same bits summing the models as they
    arrive, before it knows which of them it will have.
    """
    w, total = summed_weights(weights)
    n, p = stacked.shape
    out = np.empty(p, dtype=stacked.dtype)
    acc = np.empty(min(p, _BLOCK), np.float64)
    term = np.empty_like(acc)
    for start in range(0, p, _BLOCK):
        stop = min(p, start + _BLOCK)
        a, t = acc[: stop - start], term[: stop - start]
        np.multiply(stacked[0, start:stop], w[0], out=a, dtype=np.float64)
        for i in range(1, n):
            np.multiply(stacked[i, start:stop], w[i], out=t, dtype=np.float64)
            a += t
        a /= total
        out[start:stop] = a
    return out
