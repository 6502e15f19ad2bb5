"""The paper's scores of a binary classifier, in plain numpy.

`score_predictions` turns labels and predicted case probabilities into the
numbers the paper reports: AUC, accuracy, sensitivity, specificity (and F1).
AUC is rank-based (the Mann-Whitney statistic, ties given their average
rank), so it needs no threshold; the others count predictions at or above
``threshold`` as cases. A score that divides by zero (e.g. sensitivity
without any case) is NaN, never a made-up 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")


@dataclass(frozen=True)
class ConfusionCounts:
    """True/false positives and negatives at one threshold."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        """All samples."""
        return self.tp + self.fp + self.tn + self.fn


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or NaN when the denominator is 0."""
    return float(numerator) / denominator if denominator else float("nan")


def _labels_and_scores(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check and flatten labels (0/1) and scores of equal length."""
    labels = np.asarray(y_true).reshape(-1)
    scores = np.asarray(y_score, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"y_true has {labels.size} values but y_score has {scores.size}; pass one score per label")
    if labels.size == 0:
        raise ValueError("y_true is empty; pass at least one labelled sample")
    if not np.isin(labels, [0, 1]).all():
        raise ValueError(f"y_true holds {np.unique(labels)[:5].tolist()}; pass 0 (control) / 1 (case) labels")
    if not np.isfinite(scores).all():
        raise ValueError("y_score holds NaN or infinite values; the model's predictions are not usable")
    return labels.astype(np.int64), scores


def confusion_counts(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> ConfusionCounts:
    """Count outcomes, calling a sample a case when its score is >= ``threshold``."""
    labels, scores = _labels_and_scores(y_true, y_score)
    predicted = scores >= threshold
    positive = labels == 1
    return ConfusionCounts(
        tp=int(np.sum(predicted & positive)),
        fp=int(np.sum(predicted & ~positive)),
        tn=int(np.sum(~predicted & ~positive)),
        fn=int(np.sum(~predicted & positive)),
    )


def accuracy(counts: ConfusionCounts) -> float:
    """(TP + TN) / all."""
    return _ratio(counts.tp + counts.tn, counts.n)


def sensitivity(counts: ConfusionCounts) -> float:
    """TP / (TP + FN): the share of cases called cases (recall)."""
    return _ratio(counts.tp, counts.tp + counts.fn)


def specificity(counts: ConfusionCounts) -> float:
    """TN / (TN + FP): the share of controls called controls."""
    return _ratio(counts.tn, counts.tn + counts.fp)


def f1_score(counts: ConfusionCounts) -> float:
    """2 TP / (2 TP + FP + FN): the harmonic mean of precision and recall."""
    return _ratio(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn)


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve from ranks; tied scores share their average rank.

    Equal to the probability that a random case scores above a random
    control (ties count one half). NaN when only one class is present.

    Example:
        >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        0.75
    """
    labels, scores = _labels_and_scores(y_true, y_score)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # Runs of equal scores: each member gets the mean of the run's 1-based ranks.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    average_rank = (starts + 1 + ends) / 2.0
    ranks[order] = np.repeat(average_rank, ends - starts)
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def score_predictions(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """All of `METRICS` for one model's predicted case probabilities.

    Example:
        >>> scores = score_predictions(np.array([0, 0, 1, 1]), np.array([0.2, 0.6, 0.7, 0.9]))
        >>> scores["accuracy"], scores["sensitivity"], scores["specificity"]
        (0.75, 1.0, 0.5)
    """
    counts = confusion_counts(y_true, y_score, threshold)
    return {
        "auc": roc_auc(y_true, y_score),
        "accuracy": accuracy(counts),
        "sensitivity": sensitivity(counts),
        "specificity": specificity(counts),
        "f1": f1_score(counts),
    }
