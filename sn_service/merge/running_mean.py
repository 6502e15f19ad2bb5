"""The weighted mean of whole models, summed as they arrive: memory of one model, not of all of them."""

from __future__ import annotations

import numpy as np

from sn_service.merge.stacked_models import float_columns, unflatten
from sn_service.merge.weighted_mean import _BLOCK
from swarm_wire.serialization import new_buffer

__all__ = ["RunningMean"]


class RunningMean:
    """Models of one layout summed into one float64 vector as they arrive, for the merge method ``mean``.

    Gives bit for bit what ``StackedModels(...).merge("mean", weights)`` gives for the same models added
    in the same order: each value is x * w in float64, added in arrival order, divided by the sum of the
    weights at the end (``weighted_mean``). But where the stack holds a matrix of every contribution
    (16 sites, the paper's classifier: 117 MB; 64 sites: 467 MB, fresh memory for each new leader, each
    page of it a fault to the host on a virtual machine), this holds one model in float64, and each
    contribution can be dropped once added. Weights must be positive: a weight-0 contribution
    (``checkinModelOnTrainEnd`` "inactive") is left out of a merge only when another weighs more, which
    only the stack can tell once it has them all.
    """

    def __init__(self, tensors: list[tuple[np.dtype, tuple[int, ...]]]) -> None:
        self.tensors = tensors
        # As a stacked row: each float tensor cast to self.dtype, and the mean cast to it.
        self.float_idx, self.sizes, self.dtype = float_columns(tensors)
        total = sum(self.sizes)
        # Pooled buffers (``serialization.new_buffer``): a leader's sums of rounds gone by, not fresh pages.
        self.acc = np.frombuffer(new_buffer(total * 8), np.float64)
        self._term = np.empty(min(total, _BLOCK), np.float64)
        self.total = 0.0
        self.count = 0
        self.others: list[np.ndarray | None] | None = None

    def add(self, model: list[np.ndarray], weight: float) -> None:
        """Adds ``weight`` x ``model`` to the sum."""
        w = float(weight)
        if not w > 0:
            raise ValueError(f"a running mean takes positive weights only, got {weight!r}")
        offset = 0
        for i, size in zip(self.float_idx, self.sizes, strict=True):
            x = model[i].ravel()
            if x.dtype != self.dtype:
                x = x.astype(self.dtype)  # as a stacked row holds it
            for start in range(0, size, _BLOCK):
                stop = min(size, start + _BLOCK)
                seg = self.acc[offset + start : offset + stop]
                if self.count == 0:
                    np.multiply(x[start:stop], w, out=seg, dtype=np.float64)
                else:
                    term = self._term[: stop - start]
                    np.multiply(x[start:stop], w, out=term, dtype=np.float64)
                    seg += term
            offset += size
        if self.others is None:
            self.others = [a.copy() if a.dtype.kind != "f" else None for a in model]
        self.total += w
        self.count += 1

    def merge(self, method: str, weights: np.ndarray) -> list[np.ndarray]:
        """The mean of the models added (``method`` must be ``mean``; ``weights``, theirs, must sum as added)."""
        if method != "mean":
            raise ValueError(f"a running mean merges by 'mean' only, not {method!r}")
        if self.count == 0:
            raise ValueError("no models to merge")
        if float(np.asarray(weights, dtype=np.float64).sum()) != self.total:
            raise ValueError(f"weights {list(weights)} are not those of the {self.count} models added")
        self.acc /= self.total
        flat = np.frombuffer(new_buffer(self.acc.size * self.dtype.itemsize), self.dtype)
        np.copyto(flat, self.acc, casting="unsafe")  # what ``astype`` does, into a pooled buffer
        return unflatten(self.tensors, self.sizes, flat, self.others)  # type: ignore[arg-type]
