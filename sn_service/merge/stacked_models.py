"""Whole models (lists of tensors) as one stacked matrix, merged with a merge method. No I/O here."""

from __future__ import annotations

import threading

import numpy as np

from sn_service.merge import merge

__all__ = ["StackBuffers", "StackedModels", "float_columns", "merge_models", "unflatten"]


def float_columns(tensors: list[tuple[np.dtype, tuple[int, ...]]]) -> tuple[list[int], list[int], np.dtype]:
    """Of a layout's tensors: which are merged (the float ones), their value counts, and the dtype of a
    merged row (the float tensors' common type; every float tensor is cast to it, the merge is cast to it)."""
    float_idx = [i for i, (dt, _) in enumerate(tensors) if dt.kind == "f"]
    sizes = [int(np.prod(tensors[i][1])) for i in float_idx]
    dtype = np.result_type(*[tensors[i][0] for i in float_idx]) if float_idx else np.dtype(np.float32)
    return float_idx, sizes, dtype


def unflatten(
    tensors: list[tuple[np.dtype, tuple[int, ...]]],
    sizes: list[int],
    flat: np.ndarray | None,
    others: list[np.ndarray | None],
) -> list[np.ndarray]:
    """A merged model's tensors: the float ones cut from ``flat`` (of ``sizes``), the others from ``others``."""
    out: list[np.ndarray] = []
    offset, k = 0, 0
    for i, (dt, shape) in enumerate(tensors):
        if dt.kind == "f":
            size = sizes[k]
            out.append(flat[offset : offset + size].reshape(shape).astype(dt, copy=False))  # type: ignore[index]
            offset += size
            k += 1
        else:
            out.append(others[i])  # type: ignore[arg-type]
    return out


class StackBuffers:
    """Matrices of merges gone by, kept for the next merge of the same shape.

    A new matrix of n models is memory the process has not touched before: on a virtual machine every
    page of it faults to the host the first time (measured: the 600 MB matrix of three 50 M-parameter
    models took 1.3 s more to fill than one filled before). A leader merges models of the same shape
    every round, so it keeps the last matrix of each shape, ``max_bytes`` in all; a merge takes one
    (``take``), and gives it back when done (``give``); two merges at once never share one.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._free: dict[tuple[tuple[int, int], str], np.ndarray] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """A matrix of ``shape`` and ``dtype`` (its values are whatever was left in it)."""
        with self._lock:
            kept = self._free.pop((shape, np.dtype(dtype).str), None)
        return kept if kept is not None else np.empty(shape, dtype=dtype)

    def give(self, rows: np.ndarray) -> None:
        """Keeps ``rows`` for a later ``take`` (the oldest kept ones go past ``max_bytes``)."""
        if rows.nbytes > self.max_bytes:
            return
        with self._lock:
            self._free[(rows.shape, rows.dtype.str)] = rows
            while sum(a.nbytes for a in self._free.values()) > self.max_bytes:
                del self._free[next(iter(self._free))]


class StackedModels:
    """Models of one layout, flattened into the rows of one (n, P) matrix as they arrive.

    Each contribution is copied into its row and dropped, so merging n
    models holds about n + 2 models in memory, not 2n. Float tensors are
    merged; other tensors (integer counters) are taken from the first model.
    """

    def __init__(
        self,
        tensors: list[tuple[np.dtype, tuple[int, ...]]],
        capacity: int,
        buffers: StackBuffers | None = None,
    ) -> None:
        self.tensors = tensors
        self.float_idx, self.sizes, dtype = float_columns(tensors)
        shape = (capacity, sum(self.sizes))
        self.rows = buffers.take(shape, dtype) if buffers is not None else np.empty(shape, dtype=dtype)
        self.count = 0
        self.others: list[np.ndarray] | None = None

    def add(self, model: list[np.ndarray]) -> None:
        """Copies a model into the next row."""
        offset = 0
        for i, size in zip(self.float_idx, self.sizes, strict=True):
            self.rows[self.count, offset : offset + size] = model[i].ravel()
            offset += size
        if self.others is None:
            self.others = [a.copy() if a.dtype.kind != "f" else None for a in model]  # type: ignore[misc]
        self.count += 1

    def merge(self, method: str, weights: np.ndarray) -> list[np.ndarray]:
        """Merges the rows added so far with ``method``; returns the model's tensors."""
        if self.count == 0:
            raise ValueError("no models to merge")
        rows = self.rows[: self.count]
        weights = np.asarray(weights, dtype=np.float64)
        if (weights > 0).any() and not (weights > 0).all():
            # A weight of 0 is a site that takes part without contributing (checkinModelOnTrainEnd
            # "inactive"): it counts towards min_peers but no merge method, median or mean, sees it.
            rows, weights = rows[weights > 0], weights[weights > 0]
        flat = merge(method, rows, weights) if self.float_idx else None
        return unflatten(self.tensors, self.sizes, flat, self.others)  # type: ignore[arg-type]


def merge_models(method: str, models: list[list[np.ndarray]], weights: np.ndarray) -> list[np.ndarray]:
    """Merges whole models (lists of tensors) with a merge method."""
    stack = StackedModels([(a.dtype, a.shape) for a in models[0]], len(models))
    for model in models:
        stack.add(model)
    return stack.merge(method, weights)
