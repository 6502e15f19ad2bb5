"""Input scaling: per sample, per gene, and against a node's own controls, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_examples.scaling import ControlReferenceScaler, StandardScaler, zscore_per_sample


def test_zscore_per_sample_by_hand() -> None:
    z = zscore_per_sample(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 4.0]]))
    sd = np.sqrt(2 / 3)  # population SD of 1, 2, 3
    np.testing.assert_allclose(z[0], [-1 / sd, 0, 1 / sd], rtol=1e-6)
    np.testing.assert_array_equal(z[1], [0, 0, 0])  # a constant row is centred only
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-6)
    assert z.dtype == np.float32


def test_standard_scaler_uses_training_statistics_only() -> None:
    scaler = StandardScaler().fit(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]))
    np.testing.assert_allclose(scaler.mean_, [2.0, 1.0])
    out = scaler.transform(np.array([[2.0, 1.0], [6.0, 3.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.0], [4.0 / np.sqrt(8 / 3), 2.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="3 genes"):
        scaler.transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="before fit"):
        StandardScaler().transform(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        zscore_per_sample(np.array([[1.0, np.nan]]))


def test_control_reference_scaler_ignores_the_share_of_cases() -> None:
    rng = np.random.default_rng(0)
    controls = rng.normal(5.0, 2.0, (400, 3))
    cases = controls[:, :] + np.array([3.0, 0.0, -3.0])
    # Two nodes with the same controls but 1 % and 70 % cases.
    few = np.vstack([controls, cases[:4]])
    many = np.vstack([controls[:120], cases[:280]])
    y_few = np.r_[np.zeros(400), np.ones(4)]
    y_many = np.r_[np.zeros(120), np.ones(280)]
    probe = np.array([[5.0, 5.0, 5.0], [8.0, 5.0, 2.0]])  # a typical control, a typical case
    a = ControlReferenceScaler().fit(few, y_few).transform(probe)
    b = ControlReferenceScaler().fit(many, y_many).transform(probe)
    np.testing.assert_allclose(a, b, atol=0.35)  # the same inputs at both nodes, up to sampling noise
    plain_a = StandardScaler().fit(few).transform(probe)
    plain_b = StandardScaler().fit(many).transform(probe)
    assert np.abs(plain_a - plain_b).max() > 1.0  # a plain scaler moves the case gene by over 1 SD


def test_control_reference_scaler_by_hand_and_errors() -> None:
    x = np.array([[0.0, 10.0], [2.0, 10.0], [9.0, 50.0]])
    scaler = ControlReferenceScaler().fit(x, np.array([0, 0, 1]))
    np.testing.assert_allclose(scaler.mean_, [1.0, 10.0])
    np.testing.assert_allclose(scaler.scale_, [1.0, 1.0])  # SD 1 in gene 1; no spread in gene 2 -> 1
    np.testing.assert_allclose(scaler.transform(x), [[-1, 0], [1, 0], [8, 40]])
    with pytest.raises(ValueError, match="at least 2 control samples"):
        ControlReferenceScaler().fit(x, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="one label per sample"):
        ControlReferenceScaler().fit(x, np.array([0, 1]))
