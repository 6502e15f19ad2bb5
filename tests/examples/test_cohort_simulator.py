"""The cohort simulator: deterministic, the paper's sizes, real batch effects."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_examples.apportionment import largest_remainder
from swarm_examples.cohort_simulator import (
    make_disease_signature,
    simulate_a1,
    simulate_a1_a2_a3,
    simulate_a2,
    simulate_a3,
    simulate_cohorts,
    simulate_covid,
)


def study_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Return each study's per-gene mean, one row per study."""
    return np.stack([values[groups == g].mean(axis=0) for g in np.unique(groups)])


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = simulate_cohorts(400, n_studies=6, n_genes=200, seed=7)
    again = simulate_cohorts(400, n_studies=6, n_genes=200, seed=7)
    other = simulate_cohorts(400, n_studies=6, n_genes=200, seed=8)
    assert first.X.tobytes() == again.X.tobytes()
    np.testing.assert_array_equal(first.y, again.y)
    np.testing.assert_array_equal(first.groups, again.groups)
    assert not np.array_equal(first.X, other.X)
    # The seed moves samples, not the biology: the signature is the same.
    np.testing.assert_array_equal(first.gene_ids, other.gene_ids)


@pytest.mark.parametrize(
    ("simulate", "n_samples", "n_studies", "n_cases", "case_name"),
    [
        (simulate_a1, 2500, 23, 986, "AML"),
        (simulate_a2, 8348, 64, 2588, "AML"),
        (simulate_a3, 1181, 23, 508, "AML"),
        (simulate_covid, 2400, 8, 296, "COVID-19"),
    ],
)
def test_presets_have_the_papers_sizes(simulate, n_samples, n_studies, n_cases, case_name) -> None:
    data = simulate()
    assert data.X.shape == (n_samples, 2000)
    assert data.X.dtype == np.float32
    assert data.class_counts()[case_name] == n_cases
    assert data.groups is not None and len(np.unique(data.groups)) == n_studies
    assert data.source.startswith("SIMULATED")
    assert len(set(data.sample_ids.tolist())) == n_samples


def test_covid_d_and_bad_name() -> None:
    data = simulate_covid("D", n_genes=50)
    assert data.n_samples == 2143 and data.class_counts()["COVID-19"] == 134
    with pytest.raises(ValueError, match="dataset='F'"):
        simulate_covid("F")


def test_pooled_a1_a2_a3_groups_are_the_data_sets() -> None:
    pooled = simulate_a1_a2_a3(n_genes=100)
    assert pooled.source.startswith("SIMULATED")
    assert pooled.groups is not None
    names, counts = np.unique(pooled.groups, return_counts=True)
    assert dict(zip(names.tolist(), counts.tolist(), strict=True)) == {
        "A1": 2500,
        "A2": 8348,
        "A3": 1181,
    }
    # One biology: the case-control difference agrees between A1 and A3.
    signature = make_disease_signature(100).signature_genes
    differences = []
    for name in ("A1", "A3"):
        part = pooled.groups == name
        x, y = pooled.X[part][:, signature], pooled.y[part]
        differences.append(x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0))
    assert np.corrcoef(differences)[0, 1] > 0.8


def test_per_study_case_fractions_are_exact() -> None:
    data = simulate_cohorts(600, n_studies=3, case_fraction=[0.1, 0.5, 0.9], n_genes=20)
    assert data.groups is not None
    for study, fraction in zip(np.unique(data.groups), [0.1, 0.5, 0.9], strict=True):
        members = data.groups == study
        assert data.y[members].sum() == round(fraction * members.sum())


def test_study_case_shares_vary_around_the_overall_fraction() -> None:
    data = simulate_cohorts(3000, n_studies=30, case_fraction=0.3, n_genes=10)
    assert data.y.sum() == 900
    assert data.groups is not None
    shares = [data.y[data.groups == g].mean() for g in np.unique(data.groups)]
    assert np.std(shares) > 0.1  # studies differ, as real collections do


def test_signature_shifts_cases_and_nothing_else() -> None:
    data = simulate_cohorts(4000, n_studies=4, case_fraction=0.5, n_genes=300, batch_shift_sd=0, batch_scale_sd=0)
    signature = make_disease_signature(300)
    difference = data.X[data.y == 1].mean(axis=0) - data.X[data.y == 0].mean(axis=0)
    on = signature.signature_genes
    off = np.setdiff1d(np.arange(300), on)
    np.testing.assert_allclose(difference[on], signature.case_shift[on], atol=0.06)
    assert np.abs(difference[off]).max() < 0.1
    # The shift is effect_size gene SDs on average (strength ~ U(0.5, 1.5)).
    in_sds = np.abs(signature.case_shift[on]) / signature.baseline_sd[on]
    assert 0.6 < in_sds.mean() < 0.8


def test_batch_effects_make_study_means_and_spreads_differ() -> None:
    shared = dict(n_samples=2000, n_studies=10, case_fraction=0.0, n_genes=200, seed=3)
    with_batch = simulate_cohorts(**shared, batch_shift_sd=0.5, batch_scale_sd=0.3)
    without = simulate_cohorts(**shared, batch_shift_sd=0.0, batch_scale_sd=0.0)
    assert with_batch.groups is not None and without.groups is not None
    spread_with = study_means(with_batch.X, with_batch.groups).std(axis=0).mean()
    spread_without = study_means(without.X, without.groups).std(axis=0).mean()
    # Without batch effects study means differ only by sampling noise.
    assert spread_with > 4 * spread_without
    # Multiplicative effect: a gene's spread differs between studies.
    sds = np.stack([with_batch.X[with_batch.groups == g].std(axis=0) for g in np.unique(with_batch.groups)])
    sds_without = np.stack([without.X[without.groups == g].std(axis=0) for g in np.unique(without.groups)])
    ratio = (sds.max(axis=0) / sds.min(axis=0)).mean()
    ratio_without = (sds_without.max(axis=0) / sds_without.min(axis=0)).mean()
    assert ratio > ratio_without + 0.3


def test_platform_shift_moves_the_whole_cohort() -> None:
    base = simulate_cohorts(500, n_studies=5, n_genes=300, batch_shift_sd=0, name="X")
    shifted = simulate_cohorts(500, n_studies=5, n_genes=300, batch_shift_sd=0, platform_shift_sd=1.0, name="X")
    gap = np.abs(shifted.X.mean(axis=0) - base.X.mean(axis=0))
    assert gap.mean() > 0.2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(n_samples=10, n_studies=6), "too few for 6 studies"),
        (dict(n_samples=100, n_studies=0), "n_studies=0"),
        (dict(n_samples=100, n_studies=2, case_fraction=1.5), "between 0 and 1"),
        (dict(n_samples=100, n_studies=2, case_fraction=[0.1, 0.2, 0.3]), "one per study"),
        (dict(n_samples=100, n_studies=2, noise_sd=-1), "noise_sd=-1"),
        (dict(n_samples=100, n_studies=2, n_signature_genes=5000), "n_signature_genes=5000"),
    ],
)
def test_bad_arguments_say_what_to_pass(arguments, message) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_cohorts(**arguments)


def test_largest_remainder_adds_up() -> None:
    assert largest_remainder(np.array([0.1, 0.3, 0.6]), 11).tolist() == [1, 3, 7]
    assert largest_remainder(np.ones(3), 10).tolist() == [4, 3, 3]
    counts = largest_remainder(np.random.default_rng(0).random(17), 1234)
    assert counts.sum() == 1234 and (counts >= 0).all()
    with pytest.raises(ValueError, match="positive sum"):
        largest_remainder(np.zeros(3), 5)
