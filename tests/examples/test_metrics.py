"""The paper's scores against values worked out by hand, and AUC against pair counting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swarm_examples.metrics import (
    ConfusionCounts,
    accuracy,
    confusion_counts,
    f1_score,
    roc_auc,
    score_predictions,
    sensitivity,
    specificity,
)


def pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    """AUC by counting case/control pairs (ties count one half): slow but obviously right."""
    cases, controls = s[y == 1], s[y == 0]
    wins = (cases[:, None] > controls[None, :]).sum() + 0.5 * (cases[:, None] == controls[None, :]).sum()
    return float(wins / (len(cases) * len(controls)))


def test_auc_without_ties() -> None:
    # Case scores 0.35 and 0.8 have ranks 2 and 4: (6 - 3) / (2 * 2) = 0.75.
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


def test_auc_ties_share_their_average_rank() -> None:
    # Ranks: 0.2 -> 1, the two 0.5s -> 2.5 each, 0.9 -> 4; cases 2.5 + 4 = 6.5: (6.5 - 3) / 4.
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == 0.875
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == 0.5


def test_auc_extremes_and_one_class() -> None:
    y = np.array([0, 0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4, 0.5])) == 1.0
    assert roc_auc(y, np.array([0.5, 0.4, 0.3, 0.2, 0.1])) == 0.0
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.9])))


def test_auc_matches_pair_counting_on_coarse_scores() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        y[:2] = [0, 1]
        s = rng.integers(0, 6, 60) / 5.0  # few distinct values: many ties
        assert roc_auc(y, s) == pytest.approx(pairwise_auc(y, s), abs=1e-12)


def test_counts_and_rates_by_hand() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.5, 0.5])
    # Called cases (>= 0.5): samples 0, 1, 4, 6, 7 -> TP 0, 1, 7; FP 4, 6; FN 2; TN 3, 5.
    counts = confusion_counts(y, s)
    assert counts == ConfusionCounts(tp=3, fp=2, tn=2, fn=1)
    assert accuracy(counts) == 5 / 8
    assert sensitivity(counts) == 3 / 4
    assert specificity(counts) == 2 / 4
    assert f1_score(counts) == pytest.approx(6 / 9)
    scores = score_predictions(y, s)
    assert scores == pytest.approx(
        {"auc": pairwise_auc(y, s), "accuracy": 0.625, "sensitivity": 0.75, "specificity": 0.5, "f1": 2 / 3}
    )


def test_threshold_moves_the_calls() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    s = np.array([0.9, 0.6, 0.3, 0.2, 0.7, 0.1, 0.5, 0.5])
    assert confusion_counts(y, s, threshold=0.8) == ConfusionCounts(tp=1, fp=0, tn=4, fn=3)


def test_undefined_rates_are_nan_not_zero() -> None:
    # No case at all: sensitivity divides by zero; a model that calls nobody a case has no F1.
    scores = score_predictions(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.9]))
    assert math.isnan(scores["sensitivity"]) and math.isnan(scores["auc"])
    assert scores["specificity"] == 2 / 3
    assert scores["f1"] == 0.0  # one false positive, no true positive: 0 / (0 + 1 + 0)
    assert math.isnan(f1_score(ConfusionCounts(tp=0, fp=0, tn=3, fn=0)))


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        (np.array([0, 1]), np.array([0.5]), "one score per label"),
        (np.array([0, 2]), np.array([0.5, 0.5]), "0 \\(control\\) / 1 \\(case\\)"),
        (np.array([0, 1]), np.array([0.5, np.nan]), "NaN"),
        (np.array([], dtype=int), np.array([]), "empty"),
    ],
)
def test_bad_input_is_named(y: np.ndarray, s: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score_predictions(y, s)
