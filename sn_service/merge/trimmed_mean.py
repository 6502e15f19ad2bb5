"""Trimmed mean: drop the k largest and k smallest values of each parameter.

k = max(1, floor(0.2 n)) for n >= 3 contributors (so one outlier among
three is dropped), 0 below that. Weights are ignored.
"""

from __future__ import annotations

import numpy as np

from sn_service.merge.sorting_network import reduce_sorted


def trim_count(n: int) -> int:
    """How many values are dropped at each end for n contributors."""
    if n < 3:
        return 0
    return max(1, int(0.2 * n))


def trimmed_mean(stacked: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of each parameter after dropping trim_count(n) values at each end."""
    n = stacked.shape[0]
    k = trim_count(n)
    if k == 0:
        return stacked.mean(axis=0)
    return reduce_sorted(stacked, lambda rows: np.mean(rows[k : n - k], axis=0))
