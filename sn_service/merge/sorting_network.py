"""Sorting each parameter across a few contributors, fast.

``np.sort(stacked, axis=0)`` on (n, P) walks memory with stride P and is
slow for large P. For small n an odd-even transposition network (n rounds
of element-wise min/max between neighbouring rows), run on cache-sized
column chunks, is about 3x faster (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NETWORK_MAX_ROWS = 24
_CHUNK = 65536


def reduce_sorted(stacked: np.ndarray, reduce: Callable[[list[np.ndarray]], np.ndarray]) -> np.ndarray:
    """Applies ``reduce`` to the per-parameter sorted rows, chunk by chunk.

    ``reduce`` gets the n rows of a chunk in ascending order (row i holds
    the i-th smallest value of every parameter) and returns one row.
    """
    n, p = stacked.shape
    if n > NETWORK_MAX_ROWS:
        return reduce(list(np.sort(stacked, axis=0)))
    out = np.empty(p, dtype=stacked.dtype)
    for start in range(0, p, _CHUNK):
        rows = [stacked[i, start : start + _CHUNK].copy() for i in range(n)]
        for r in range(n):
            for i in range(r % 2, n - 1, 2):
                low = np.minimum(rows[i], rows[i + 1])
                np.maximum(rows[i], rows[i + 1], out=rows[i + 1])
                rows[i] = low
        out[start : start + _CHUNK] = reduce(rows)
    return out
