"""How the examples scale expression values before the paper's classifier.

The paper standard-scaled every gene. A swarm cannot fit one scaler on the
pooled data (nobody sees the pooled data), so each node scales with
statistics of its own training data, and those differ where nodes differ:
a plain per-gene `StandardScaler` at a node with 70 % cases centres every
disease gene on a case-heavy mean, at a node with 1 % cases on a control
mean, so one sample gets different inputs at different nodes.

- `ControlReferenceScaler` z-scores every gene against the node's training
  *controls*; it does not depend on the node's share of cases. The
  examples use it by default.
- `StandardScaler`: the plain per-gene scaler, for comparison.
- `zscore_per_sample`: z-scores each profile across its own genes; it needs
  no statistic of anybody's data set, but leaves every gene's own offset in.
"""

from __future__ import annotations

import numpy as np

# Below this spread a sample (or gene) is treated as constant: centred, not divided.
_TINY = 1e-8


def zscore_per_sample(X: np.ndarray) -> np.ndarray:
    """Centre each row (sample) on its mean over genes and divide by its SD.

    Rows with (almost) no spread are centred only. Returns float32.

    Raises:
        ValueError: ``X`` is not 2-D or holds NaN or infinite values.

    Example:
        >>> zscore_per_sample(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
        array([[-1.2247449,  0.       ,  1.2247449],
               [ 0.       ,  0.       ,  0.       ]], dtype=float32)
    """
    values = _matrix(X)
    mean = values.mean(axis=1, keepdims=True, dtype=np.float64)
    sd = values.std(axis=1, keepdims=True, dtype=np.float64)
    sd[sd < _TINY] = 1.0
    return ((values - mean) / sd).astype(np.float32)


class ControlReferenceScaler:
    """Per-gene z-scores against the control samples of the training data.

    Each gene is centred on its mean in the training *controls* (label 0)
    and divided by its SD there. Unlike a plain standard scaler, the result
    does not depend on how many cases a node has: a node with 70 % cases and
    a node with 1 % cases map a control to the same inputs (up to their
    batch effects), as if each expressed every gene as a change against its
    own reference group. It needs the training labels, which every node
    has; test samples are scaled with the training controls' statistics.

    Example:
        >>> scaler = ControlReferenceScaler().fit(np.array([[0.0], [2.0], [9.0]]), np.array([0, 0, 1]))
        >>> scaler.transform(np.array([[1.0], [9.0]]))
        array([[0.],
               [8.]], dtype=float32)
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> ControlReferenceScaler:
        """Learn each gene's mean and SD over the controls (``y == 0``)."""
        labels = np.asarray(y).reshape(-1)
        values = _matrix(X)
        if labels.shape != (values.shape[0],):
            raise ValueError(f"y has {labels.size} labels for {values.shape[0]} samples; pass one label per sample")
        controls = values[labels == 0]
        if controls.shape[0] < 2:
            raise ValueError(
                f"ControlReferenceScaler needs at least 2 control samples (y == 0) to estimate a spread, "
                f"got {controls.shape[0]}"
            )
        inner = StandardScaler().fit(controls)
        self.mean_, self.scale_ = inner.mean_, inner.scale_
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scale `X` with the controls' statistics; returns float32."""
        if self.mean_ is None or self.scale_ is None:
            raise ValueError("ControlReferenceScaler.transform before fit: call fit(X_train, y_train) first")
        values = _matrix(X)
        if values.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"X has {values.shape[1]} genes; the scaler was fitted on {self.mean_.shape[0]}")
        return ((values - self.mean_) / self.scale_).astype(np.float32)


class StandardScaler:
    """Per-gene standardisation fitted on training data (numpy only).

    Example:
        >>> scaler = StandardScaler().fit(np.array([[0.0, 1.0], [2.0, 1.0]]))
        >>> scaler.transform(np.array([[1.0, 3.0]]))
        array([[0., 2.]], dtype=float32)
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> StandardScaler:
        """Learn each gene's mean and SD (genes without spread keep SD 1)."""
        values = _matrix(X)
        if values.shape[0] < 1:
            raise ValueError("StandardScaler.fit needs at least one sample, got none")
        self.mean_ = values.mean(axis=0, dtype=np.float64)
        scale = values.std(axis=0, dtype=np.float64)
        scale[scale < _TINY] = 1.0
        self.scale_ = scale
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scale `X` with the fitted statistics; returns float32."""
        if self.mean_ is None or self.scale_ is None:
            raise ValueError("StandardScaler.transform before fit: call fit(X_train) first")
        values = _matrix(X)
        if values.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"X has {values.shape[1]} genes; the scaler was fitted on {self.mean_.shape[0]}")
        return ((values - self.mean_) / self.scale_).astype(np.float32)


def _matrix(X: np.ndarray) -> np.ndarray:
    """Check that `X` is a finite 2-D array."""
    values = np.asarray(X)
    if values.ndim != 2:
        raise ValueError(f"X must be 2-D (samples x genes), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("X holds NaN or infinite values; impute or drop them before scaling")
    return values
