"""Secure aggregation's core: Shamir, the fixed-point ring, masking, unmasking, the Bonawitz rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sn_service.secagg import shamir
from sn_service.secagg.crypto import MAX_ABS, RING_BITS, SecAggError, dequantise, frac_bits, prg, quantise
from sn_service.secagg.protocol import SiteRound, decode_masked, threshold, unmask

# ---------------------------------------------------------------- Shamir


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), n=st.integers(1, 12), data=st.data())
def test_any_t_shares_recover_the_secret(secret, n, data):
    t = data.draw(st.integers(1, n))
    shares = shamir.split(secret, t, list(range(1, n + 1)))
    subset = data.draw(st.lists(st.sampled_from(sorted(shares)), min_size=t, max_size=n, unique=True))
    assert shamir.combine({x: shares[x] for x in subset}, t) == secret


def test_fewer_than_t_shares_are_refused_and_t_minus_one_say_nothing_fixed():
    shares = shamir.split(b"\x07" * 32, 3, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="2 shares cannot recover"):
        shamir.combine({1: shares[1], 2: shares[2]}, 3)
    # Two different secrets, same two share points: the shares are fresh random field elements each time.
    again = shamir.split(b"\x07" * 32, 3, [1, 2, 3, 4])
    assert (shares[1], shares[2]) != (again[1], again[2])


def test_a_corrupted_share_is_detected():
    shares = shamir.split(b"\x01" * 32, 2, [1, 2, 3])
    with pytest.raises(ValueError, match="do not belong to one secret"):
        # A random error (a small one just shifts the secret: detection is probabilistic, 2^-265 to miss).
        shamir.combine({1: shares[1], 2: (shares[2] + 2**300 + 12345) % shamir.PRIME}, 2)


def test_share_encoding_round_trips_and_checks_length():
    y = shamir.split(b"\x02" * 32, 1, [5])[5]
    assert shamir.decode(shamir.encode(y)) == y
    with pytest.raises(ValueError, match="66 bytes"):
        shamir.decode(b"\x00" * 10)


# ---------------------------------------------------------------- fixed point


@settings(max_examples=50, deadline=None)
@given(
    weights=st.lists(st.integers(1, 10_000), min_size=1, max_size=16),
    seed=st.integers(0, 2**32 - 1),
)
def test_quantised_weighted_sum_does_not_wrap_even_at_the_bound(weights, seed):
    rng = np.random.default_rng(seed)
    bits = frac_bits(sum(weights))
    models = [rng.choice([-MAX_ABS, MAX_ABS], size=8) * rng.uniform(0.5, 1.0, size=8) for _ in weights]
    models[0][0] = MAX_ABS  # every model at the bound in one coordinate
    for m in models:
        m[0] = MAX_ABS
    total = sum(quantise(m, w, bits) for m, w in zip(models, weights, strict=True))
    mean = dequantise(total, bits, sum(weights))
    expected = sum(w * m for m, w in zip(models, weights, strict=True)) / sum(weights)
    np.testing.assert_allclose(mean, expected, rtol=0, atol=len(weights) * 2.0**-bits)


def test_values_beyond_the_bound_or_not_finite_are_refused():
    with pytest.raises(SecAggError, match="exceeds the secure aggregation bound"):
        quantise(np.array([MAX_ABS * 2]), 1, 20)
    with pytest.raises(SecAggError, match="NaN or infinite"):
        quantise(np.array([np.nan]), 1, 20)
    with pytest.raises(SecAggError, match="too large"):
        frac_bits(2**40)


# ---------------------------------------------------------------- rounds in process


def _round(n: int, count: int = 257, seed: int = 0, task: str = "t", round_no: int = 3):
    rng = np.random.default_rng(seed)
    names = [f"site-{i:02d}" for i in range(n)]
    models = {s: rng.standard_normal(count) * 0.1 for s in names}
    weights = {s: int(rng.integers(1, 50)) for s in names}
    sites = {s: SiteRound(task, round_no, s, models[s].copy(), weights[s]) for s in names}
    keys = {s: r.public_hex for s, r in sites.items()}
    return names, models, weights, sites, keys


def _leader_view(sites, keys, weights, survivors, alive, leader):
    blobs = {u: sites[u].mask(keys, weights) for u in survivors}
    masked = {u: blobs[u][0] for u in survivors}
    envelopes = {u: json.loads(blobs[u][1])["envelopes"] for u in survivors}
    answers = {w: sites[w].reveal(keys, survivors, {u: envelopes[u][w] for u in survivors}, leader) for w in alive}
    return masked, answers


@pytest.mark.parametrize("n", [2, 3, 7])
def test_no_dropout_gives_the_weighted_mean(n):
    names, models, weights, sites, keys = _round(n)
    masked, answers = _leader_view(sites, keys, weights, names, names, names[0])
    mean = unmask("t", 3, keys, weights, names, masked, answers)
    expected = sum(weights[s] * models[s] for s in names) / sum(weights.values())
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-9)


def test_a_site_dead_after_masking_is_unmasked_from_the_others_shares():
    names, models, weights, sites, keys = _round(5, seed=1)
    dead = names[2]
    masked, answers = _leader_view(sites, keys, weights, names, [s for s in names if s != dead], names[0])
    assert dead not in answers
    mean = unmask("t", 3, keys, weights, names, masked, answers)
    expected = sum(weights[s] * models[s] for s in names) / sum(weights.values())
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-9)


def test_a_site_dropped_before_masking_is_left_out_by_the_pairwise_seeds_of_the_survivors():
    names, models, weights, sites, keys = _round(5, seed=2)
    survivors = [s for s in names if s != names[4]]
    masked, answers = _leader_view(sites, keys, weights, survivors, survivors, names[0])
    mean = unmask("t", 3, keys, weights, survivors, masked, answers)
    expected = sum(weights[s] * models[s] for s in survivors) / sum(weights[s] for s in survivors)
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-9)


def test_too_few_answers_fail_with_a_clear_error():
    names, _models, weights, sites, keys = _round(5, seed=3)
    masked, answers = _leader_view(sites, keys, weights, names, names[:2], names[0])
    with pytest.raises(SecAggError, match=r"only 2 shares of .* 3 are needed"):
        unmask("t", 3, keys, weights, names, masked, answers)


def test_the_bonawitz_rule_never_reveals_both_kinds_for_one_site():
    names, _models, weights, sites, keys = _round(3, seed=4)
    a, b, c = names
    blobs = {u: sites[u].mask(keys, weights) for u in names}
    env = {u: json.loads(blobs[u][1])["envelopes"] for u in names}
    # A first leader seals everyone: a reveals its share of c's self mask.
    first = sites[a].reveal(keys, names, {u: env[u][a] for u in names}, recipient=b)
    assert c in first["b_shares"] and not first["seeds"]
    # A second leader claims c dropped: a must not reveal its pairwise seed with c now.
    second = sites[a].reveal(keys, [a, b], {u: env[u][a] for u in (a, b)}, recipient=b)
    assert c not in second["seeds"] and c in second["refused"]
    # And the other way round: after revealing a seed of dropped c, no share of c's self mask.
    site = sites[b]
    dropped_first = site.reveal(keys, [a, b], {u: env[u][b] for u in (a, b)}, recipient=a)
    assert c in dropped_first["seeds"]
    then = site.reveal(keys, names, {u: env[u][b] for u in names}, recipient=a)
    assert c not in then["b_shares"] and c in then["refused"]


def test_a_share_given_back_to_its_own_site_does_not_block_dropping_that_site():
    """A leader that dies after sealing itself a survivor: the next leader drops it; that is allowed."""
    names, _models, weights, sites, keys = _round(3, seed=5)
    a, b, c = names
    blobs = {u: sites[u].mask(keys, weights) for u in names}
    env = {u: json.loads(blobs[u][1])["envelopes"] for u in names}
    sites[b].reveal(keys, names, {u: env[u][b] for u in names}, recipient=a)  # to leader a
    after = sites[b].reveal(keys, [b, c], {u: env[u][b] for u in (b, c)}, recipient=c)  # c leads, a dropped
    assert a in after["seeds"] and not after["refused"]


def test_an_envelope_opens_only_for_its_recipient():
    names, _models, weights, sites, keys = _round(3, seed=6)
    a, b, c = names
    blobs = {u: sites[u].mask(keys, weights) for u in names}
    env = {u: json.loads(blobs[u][1])["envelopes"] for u in names}
    with pytest.raises(SecAggError, match="does not open"):
        sites[b].reveal(keys, names, {a: env[a][c]}, recipient=c)


def test_a_masked_contribution_is_indistinguishable_from_uniform_noise():
    """What the leader holds of one site: 64-bit ring values; KS and chi-square against uniform."""
    names, models, weights, sites, keys = _round(3, count=20_000, seed=7)
    models[names[1]][:] = 0.0  # even an all-zero model
    sites[names[1]].values = np.zeros(20_000)
    _, y = decode_masked(sites[names[1]].mask(keys, weights)[0])
    assert int(y.max()) < 2**RING_BITS
    unit = y.astype(np.float64) / 2.0**RING_BITS
    assert stats.kstest(unit, "uniform").pvalue > 1e-4
    counts = np.bincount((y >> np.uint64(RING_BITS - 8)).astype(np.int64), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4
    # The plain quantised model is far from uniform: the test can tell.
    plain = quantise(np.random.default_rng(0).standard_normal(20_000) * 0.1, 3, 30)
    assert stats.kstest(plain.astype(np.float64) / 2.0**RING_BITS, "uniform").pvalue < 1e-10


def test_negative_values_quantise_to_ring_elements_and_their_sums_come_back():
    values = quantise(np.array([-1.5, 0.0, 2.25, -MAX_ABS]), 2, 20)
    assert values.max() < 2**RING_BITS
    into = np.full(4, 7, dtype=np.uint64)
    assert quantise(np.array([-1.5, 0.0, 2.25, -MAX_ABS]), 2, 20, out=into) is into
    assert np.array_equal(into, values)
    np.testing.assert_array_equal(dequantise(values + values, 20, 4), [-1.5, 0.0, 2.25, -MAX_ABS])
    with pytest.raises(ValueError, match="uint64 array of 4 values"):
        quantise(np.zeros(4), 2, 20, out=np.zeros(3, dtype=np.uint64))


def test_the_prg_is_deterministic_and_seed_dependent():
    assert np.array_equal(prg(b"\x01" * 32, 10), prg(b"\x01" * 32, 10))
    assert not np.array_equal(prg(b"\x01" * 32, 10), prg(b"\x02" * 32, 10))


def test_threshold_is_a_majority():
    assert [threshold(n) for n in (1, 2, 3, 4, 16)] == [1, 2, 2, 3, 9]
