"""Merge methods: pure functions over stacked, flattened parameters.

Each takes ``stacked`` (n contributors x P parameters, one row a model) and
``weights`` (n non-negative numbers: samples since the last sync x node
weightage) and returns the merged parameters (P,). No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sn_service.merge.coordinate_median import coordinate_median
from sn_service.merge.geometric_median import geometric_median
from sn_service.merge.krum import krum, multi_krum
from sn_service.merge.trimmed_mean import trimmed_mean
from sn_service.merge.weighted_mean import weighted_mean

MergeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

MERGE_METHODS: dict[str, MergeFn] = {
    "mean": weighted_mean,
    "coordmedian": coordinate_median,
    "geomedian": geometric_median,
    "trimmedmean": trimmed_mean,
    "krum": krum,
    "multikrum": multi_krum,
}

__all__ = [
    "MERGE_METHODS",
    "coordinate_median",
    "geometric_median",
    "krum",
    "merge",
    "multi_krum",
    "trimmed_mean",
    "weighted_mean",
]


def merge(method: str, stacked: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Merges with the named method; checks the inputs' shapes."""
    if method not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {method!r}: use one of {sorted(MERGE_METHODS)}")
    stacked = np.asarray(stacked)
    weights = np.asarray(weights, dtype=np.float64)
    if stacked.ndim != 2 or stacked.shape[0] == 0:
        raise ValueError(f"stacked must be (contributors, parameters) with >= 1 row, got {stacked.shape}")
    if weights.shape != (stacked.shape[0],) or (weights < 0).any() or not np.isfinite(weights).all():
        raise ValueError(f"weights must be {stacked.shape[0]} finite non-negative numbers, got {weights}")
    return MERGE_METHODS[method](stacked, weights)
