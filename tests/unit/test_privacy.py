"""Differential privacy: clipping, the noise's scale, the accountant, option checks (swarm_keras.privacy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from swarm_keras.privacy import (
    DEFAULT_DELTA,
    PrivacySettings,
    SitePrivacy,
    clip_update,
    epsilon_after,
    noise_multiplier_for,
    secure_generator,
)

dp_accounting = pytest.importorskip("dp_accounting")
from dp_accounting import rdp  # noqa: E402

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


def _norm(tensors: list[np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in tensors))


@given(
    st.lists(arrays(np.float32, st.integers(1, 40), elements=finite), min_size=1, max_size=4),
    st.floats(min_value=1e-3, max_value=1e3),
)
def test_clipping_bounds_the_whole_update_and_keeps_its_direction(update, clip):
    clipped, norm = clip_update(update, clip)
    assert norm == pytest.approx(_norm(update), rel=1e-9)
    assert _norm(clipped) <= clip * (1 + 1e-9)
    if norm <= clip:  # within the bound: untouched
        for a, b in zip(update, clipped, strict=True):
            np.testing.assert_array_equal(a.astype(np.float64), b)
    else:  # scaled as one vector: every tensor by the same factor, the norm lands on the bound
        assert _norm(clipped) == pytest.approx(clip, rel=1e-9)
        factor = clip / norm
        for a, b in zip(update, clipped, strict=True):
            np.testing.assert_allclose(b, a.astype(np.float64) * factor, rtol=1e-12, atol=0)


def _private(clip=0.5, z=2.0, seed=1, **kw) -> SitePrivacy:
    settings = PrivacySettings.from_options(clip_norm=clip, noise_multiplier=z, **kw)
    site = SitePrivacy(settings, rng=np.random.default_rng(seed))
    site.plan(None)
    return site


def test_the_noise_has_standard_deviation_z_times_c_around_the_clipped_update():
    site = _private(clip=0.5, z=2.0)
    reference = [np.zeros((200, 250), np.float32), np.ones(1000, np.float32)]
    site.set_reference(reference)
    trained = [np.full((200, 250), 0.01, np.float32), np.ones(1000, np.float32)]  # norm 0.01 x sqrt(50000) = 2.24
    sent = site.privatize(trained)
    noise = np.concatenate([(s.astype(np.float64) - r).ravel() for s, r in zip(sent, reference, strict=True)])
    clipped = np.concatenate([np.full(50000, 0.01 * 0.5 / (0.01 * math.sqrt(50000))), np.zeros(1000)])
    noise -= clipped
    # 51,000 draws: the sample SD is within 1.5 % of z C = 1.0 and the mean within 0.02 (both > 3 sigma).
    assert np.std(noise) == pytest.approx(1.0, rel=0.015)
    assert abs(np.mean(noise)) < 0.02
    assert sent[0].dtype == np.float32 and site.releases == 1
    assert site.last_update_norm == pytest.approx(0.01 * math.sqrt(50000), rel=1e-4)


def test_integer_tensors_are_sent_as_the_reference_has_them():
    site = _private()
    site.set_reference([np.zeros(3, np.float32), np.array([5, 6], np.int64)])
    sent = site.privatize([np.ones(3, np.float32), np.array([7, 9], np.int64)])
    np.testing.assert_array_equal(sent[1], [5, 6])
    assert sent[1].dtype == np.int64
    assert not np.allclose(sent[0], 1.0)  # the float tensor is clipped and noised


def test_fresh_generators_draw_different_noise():
    a, b = secure_generator().normal(size=8), secure_generator().normal(size=8)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("z, syncs, delta", [(1.0, 1, 1e-5), (2.0, 10, 1e-5), (8.0, 100, 1e-6), (0.7, 3, 1e-3)])
def test_epsilon_is_dp_accountings_rdp_value_for_a_gaussian_of_sensitivity_2c(z, syncs, delta):
    accountant = rdp.RdpAccountant()
    # Any two data sets of the site move the clipped update by at most 2 C: noise z C is z / 2 sensitivities.
    accountant.compose(dp_accounting.GaussianDpEvent(z / 2), syncs)
    assert epsilon_after(z, syncs, delta) == pytest.approx(accountant.get_epsilon(delta), rel=1e-12)


def test_epsilon_by_hand_for_one_sync():
    # z = 100 with sensitivity 2 C: sigma / sensitivity s = 50, a zCDP of rho = 1 / (2 s^2) = 2e-4, which
    # converts to epsilon <= rho + 2 sqrt(rho ln(1 / delta)) = 0.0962 at delta 1e-5 (Bun & Steinke 2016);
    # the RDP accountant's conversion is tighter, and not by more than half.
    rho = 1 / (2 * 50**2)
    bound = rho + 2 * math.sqrt(rho * math.log(1e5))
    assert bound == pytest.approx(0.0962, abs=1e-4)
    assert bound / 2 < epsilon_after(100.0, 1, 1e-5) <= bound
    assert epsilon_after(100.0, 0, 1e-5) == 0.0


def test_epsilon_grows_with_syncs_and_falls_with_noise():
    by_syncs = [epsilon_after(3.0, n, 1e-5) for n in (1, 2, 5, 20, 100)]
    assert by_syncs == sorted(by_syncs) and len(set(by_syncs)) == 5
    by_noise = [epsilon_after(z, 20, 1e-5) for z in (0.8, 1.5, 3.0, 10.0)]
    assert by_noise == sorted(by_noise, reverse=True) and len(set(by_noise)) == 4
    assert epsilon_after(3.0, 20, 1e-3) < epsilon_after(3.0, 20, 1e-7)


@pytest.mark.parametrize("target, syncs", [(1.0, 121), (4.0, 30), (8.0, 5)])
def test_the_calibrated_noise_spends_the_target_and_no_more(target, syncs):
    z = noise_multiplier_for(target, syncs, 1e-5)
    assert epsilon_after(z, syncs, 1e-5) <= target
    assert epsilon_after(z * 0.999, syncs, 1e-5) > target  # the smallest such z, to 0.1 %


def test_the_budget_stops_the_release_that_would_pass_the_cap():
    z = noise_multiplier_for(2.0, 3, 1e-5)
    site = SitePrivacy(PrivacySettings.from_options(clip_norm=1.0, target_epsilon=2.0, planned_syncs=3))
    site.plan(None)
    assert site.noise_multiplier == pytest.approx(z)
    site.set_reference([np.zeros(4, np.float32)])
    spent = []
    while site.budget_allows_release():
        site.privatize([np.ones(4, np.float32)])
        spent.append(site.epsilon)
    assert len(spent) == 3 and spent == sorted(spent) and spent[-1] <= 2.0
    assert site.epsilon_if_released() > 2.0
    report = site.report()
    assert report["dp_epsilon"] == spent[-1] and report["dp_syncs"] == 3.0 and report["dp_delta"] == DEFAULT_DELTA
    # What the site may still hand out costs nothing: its last noisy update, again.
    np.testing.assert_array_equal(site.safe_to_share()[0], site.last_release[0])


def test_target_epsilon_needs_a_number_of_syncs():
    site = SitePrivacy(PrivacySettings.from_options(clip_norm=1.0, target_epsilon=2.0))
    with pytest.raises(ValueError, match="dpPlannedSyncs"):
        site.plan(None)
    site.plan(40)
    assert site.planned_syncs == 40


def test_every_option_left_unset_means_off():
    assert PrivacySettings.from_options() is None


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"noise_multiplier": 1.0}, ["dpNoiseMultiplier", "without dpClipNorm"]),
        ({"share_training_metrics": True}, ["dpShareTrainingMetrics", "without dpClipNorm"]),
        ({"clip_norm": 0, "noise_multiplier": 1.0}, ["dpClipNorm=0", "> 0"]),
        ({"clip_norm": float("inf"), "noise_multiplier": 1.0}, ["dpClipNorm=inf"]),
        ({"clip_norm": "1", "noise_multiplier": 1.0}, ["dpClipNorm='1'"]),
        ({"clip_norm": 1.0}, ["exactly one of dpNoiseMultiplier", "dpTargetEpsilon"]),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "target_epsilon": 2.0}, ["exactly one"]),
        ({"clip_norm": 1.0, "noise_multiplier": -1.0}, ["dpNoiseMultiplier=-1.0"]),
        ({"clip_norm": 1.0, "target_epsilon": 0}, ["dpTargetEpsilon=0"]),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": 1.0}, ["dpDelta=1.0", "between 0 and 1"]),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": True}, ["dpDelta=True"]),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "max_epsilon": float("nan")}, ["dpMaxEpsilon=nan"]),
        ({"clip_norm": 1.0, "target_epsilon": 4.0, "max_epsilon": 2.0}, ["dpMaxEpsilon=2", "below dpTargetEpsilon"]),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "planned_syncs": 10}, ["dpPlannedSyncs=10", "dpTargetEpsilon"]),
        ({"clip_norm": 1.0, "target_epsilon": 1.0, "planned_syncs": 0}, ["dpPlannedSyncs=0", ">= 1"]),
        ({"clip_norm": 1.0, "noise_multiplier": 1.0, "share_training_metrics": 1}, ["dpShareTrainingMetrics=1"]),
    ],
)
def test_bad_options_name_the_option_and_the_fix(kwargs, words):
    with pytest.raises(ValueError) as err:
        PrivacySettings.from_options(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_target_epsilon_is_the_default_cap():
    s = PrivacySettings.from_options(clip_norm=2.0, target_epsilon=3.0)
    assert s.max_epsilon == 3.0 and s.delta == DEFAULT_DELTA
    assert PrivacySettings.from_options(clip_norm=2.0, noise_multiplier=1.0).max_epsilon is None
