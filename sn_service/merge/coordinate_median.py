"""Coordinate-wise median: robust to fewer than half outliers per coordinate.

Weights are ignored: a median counts every contributor once.
"""

from __future__ import annotations

import numpy as np

from sn_service.merge.sorting_network import reduce_sorted


def coordinate_median(stacked: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The median of each parameter across contributors."""
    n = stacked.shape[0]
    k = n // 2
    if n % 2:
        return reduce_sorted(stacked, lambda rows: rows[k])
    return reduce_sorted(stacked, lambda rows: (rows[k - 1] + rows[k]) / 2)
