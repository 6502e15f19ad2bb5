"""Whole-number shares: split a count in given proportions, exactly."""

from __future__ import annotations

import numpy as np


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Return integers proportional to `weights` that add up to `total`.

    Each share is rounded down, and the units left over go to the largest
    fractional parts (Hamilton's method); ties go to the earlier entries.

    Example:
        >>> largest_remainder(np.array([0.1, 0.3, 0.6]), 11).tolist()
        [1, 3, 7]
    """
    weights = np.asarray(weights, dtype=np.float64)
    if total < 0 or weights.size == 0 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"largest_remainder needs total >= 0 and non-negative weights with a "
            f"positive sum, got total={total}, weights={weights.tolist()[:5]}"
        )
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    left_over = int(total - counts.sum())
    if left_over:
        counts[np.argsort(counts - exact, kind="stable")[:left_over]] += 1
    return counts
