"""Merge methods: agreement with numpy on small cases, invariances, robustness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sn_service.merge import MERGE_METHODS, merge
from sn_service.merge.krum import krum_scores
from sn_service.merge.trimmed_mean import trim_count
from sn_service.round_protocol import merge_models
from swarm_wire import options


def test_every_method_the_callback_and_contract_accept_is_implemented():
    assert set(MERGE_METHODS) == set(options.MERGE_METHODS)


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def stacks(draw, min_rows=1, max_rows=9):
    n = draw(st.integers(min_rows, max_rows))
    p = draw(st.integers(1, 40))
    x = draw(arrays(np.float32, (n, p), elements=finite))
    w = draw(arrays(np.float64, (n,), elements=st.floats(0.1, 100)))
    return x, w


@given(stacks())
def test_weighted_mean_matches_np_average(case):
    x, w = case
    np.testing.assert_allclose(
        merge("mean", x, w), np.average(x.astype(np.float64), axis=0, weights=w), rtol=1e-4, atol=1e-3
    )


@given(stacks())
def test_coordinate_median_matches_np_median(case):
    x, w = case
    np.testing.assert_allclose(merge("coordmedian", x, w), np.median(x, axis=0), rtol=1e-6, atol=1e-6)


@given(stacks(min_rows=3))
def test_trimmed_mean_matches_sorted_slice(case):
    x, w = case
    n, k = x.shape[0], trim_count(x.shape[0])
    expected = np.sort(x, axis=0)[k : n - k].mean(axis=0)
    np.testing.assert_allclose(merge("trimmedmean", x, w), expected, rtol=1e-5, atol=1e-4)


def test_sorting_network_used_and_numpy_fallback_agree():
    rng = np.random.default_rng(0)
    for n in (3, 8, 24, 25, 40):  # 25 and 40 take np.sort
        x = rng.standard_normal((n, 70_000)).astype(np.float32)
        np.testing.assert_allclose(merge("coordmedian", x, np.ones(n)), np.median(x, axis=0), rtol=1e-6)


@settings(max_examples=60)
@given(stacks(), st.randoms(use_true_random=False))
@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_permutation_invariance(method, case, rnd):
    x, w = case
    perm = list(range(x.shape[0]))
    rnd.shuffle(perm)
    a = merge(method, x, w)
    b = merge(method, x[perm], w[perm])
    if method == "geomedian":
        # Iterative: the order of the rows changes float rounding, so two runs agree up to the
        # algorithm's own stopping rule (relative step 1e-6 of the whole vector), not per element.
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a) + 1e-3
    else:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_identical_models_merge_to_themselves(method):
    x = np.tile(np.linspace(-1, 1, 50, dtype=np.float32), (5, 1))
    np.testing.assert_allclose(merge(method, x, np.arange(1, 6)), x[0], rtol=1e-6, atol=1e-6)


@settings(max_examples=40)
@given(
    n_honest=st.integers(3, 7),
    n_bad=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([100.0, -100.0, 1e4]),
)
@pytest.mark.parametrize("method", ["coordmedian", "geomedian", "krum", "multikrum"])
def test_robust_methods_resist_a_minority_of_outliers(method, n_honest, n_bad, seed, scale):
    def tolerated(bad: int) -> bool:
        n = n_honest + bad
        if method in ("krum", "multikrum"):
            return bad <= (n - 3) // 2  # the default f: Krum needs n >= 2f + 3
        return 2 * bad < n  # a strict minority

    while n_bad and not tolerated(n_bad):
        n_bad -= 1
    if n_bad == 0:
        return
    rng = np.random.default_rng(seed)
    center = rng.standard_normal(30).astype(np.float32)
    honest = center + 0.01 * rng.standard_normal((n_honest, 30)).astype(np.float32)
    bad = scale * (center + rng.standard_normal((n_bad, 30)).astype(np.float32))
    x = np.vstack([honest, bad])
    merged = merge(method, x, np.ones(len(x)))
    assert np.abs(merged - center).max() < 0.5, f"{method} was pulled away by {n_bad} outliers"
    plain = merge("mean", x, np.ones(len(x)))
    assert np.abs(plain - center).max() > 1.0, "the plain mean should break (the test's control)"


def test_trimmed_mean_drops_one_outlier_of_three():
    x = np.array([[1.0, 2.0], [1.1, 2.1], [500.0, -500.0]], dtype=np.float32)
    np.testing.assert_allclose(merge("trimmedmean", x, np.ones(3)), [1.1, 2.0], rtol=1e-6)


def test_krum_picks_the_model_closest_to_its_neighbours():
    x = np.array([[0.0], [0.1], [0.2], [10.0], [11.0]], dtype=np.float32)
    assert int(np.argmin(krum_scores(x, f=1))) == 1


def test_zero_weights_count_equally():
    x = np.array([[0.0], [2.0]], dtype=np.float32)
    assert merge("mean", x, np.zeros(2))[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (("nope", np.ones((2, 2)), np.ones(2)), "unknown merge method"),
        (("mean", np.ones((2, 2)), np.ones(3)), "weights must be 2"),
        (("mean", np.ones((2, 2)), np.array([1.0, -1.0])), "non-negative"),
        (("mean", np.ones(4), np.ones(1)), "stacked must be"),
    ],
)
def test_bad_merge_input_is_named(args, message):
    with pytest.raises(ValueError, match=message):
        merge(*args)


def test_merge_models_keeps_shapes_dtypes_and_non_float_tensors():
    a = [np.ones((2, 3), np.float32), np.array([1, 2], np.int64), np.zeros(4, np.float32)]
    b = [3 * np.ones((2, 3), np.float32), np.array([7, 7], np.int64), np.ones(4, np.float32)]
    out = merge_models("mean", [a, b], np.array([1.0, 1.0]))
    assert [o.shape for o in out] == [(2, 3), (2,), (4,)]
    assert [o.dtype for o in out] == [np.float32, np.int64, np.float32]
    np.testing.assert_array_equal(out[0], 2 * np.ones((2, 3)))
    np.testing.assert_array_equal(out[1], [1, 2])  # integers are taken from the first model
    np.testing.assert_array_equal(out[2], 0.5 * np.ones(4))


@pytest.mark.parametrize("method", sorted(MERGE_METHODS))
def test_a_zero_weight_model_is_left_out_of_every_merge_method(method):
    # checkinModelOnTrainEnd="inactive": the site takes part with weight 0 and no method may see its model.
    rng = np.random.default_rng(3)
    honest = [[rng.standard_normal(6).astype(np.float32)] for _ in range(4)]
    outlier = [np.full(6, 1e6, np.float32)]
    with_idle = merge_models(method, [*honest, outlier], np.array([1.0, 2.0, 1.0, 3.0, 0.0]))
    without = merge_models(method, honest, np.array([1.0, 2.0, 1.0, 3.0]))
    np.testing.assert_allclose(with_idle[0], without[0], rtol=1e-6)


def test_stack_buffers_give_a_kept_matrix_back_never_to_two_merges_at_once_and_stay_under_max_bytes():
    from sn_service.merge.stacked_models import StackBuffers, StackedModels

    buffers = StackBuffers(max_bytes=3 * 8 * 4)
    first = buffers.take((3, 8), np.float32)
    second = buffers.take((3, 8), np.float32)  # the first is in use: a new one
    assert first is not second
    buffers.give(first)
    assert buffers.take((3, 8), np.float32) is first
    assert buffers.take((3, 8), np.float64) is not first  # another dtype, another matrix
    buffers.give(first)
    buffers.give(np.empty((2, 8), np.float32))  # over max_bytes with the first: the first goes
    assert buffers.take((3, 8), np.float32) is not first
    buffers.give(np.empty((100, 100), np.float32))  # larger than max_bytes alone: not kept

    # A merge over a reused matrix full of another round's values gives the same model as over a new one.
    rng = np.random.default_rng(0)
    tensors = [(np.dtype(np.float32), (2, 3)), (np.dtype(np.float32), (2,))]
    models = [[rng.standard_normal(s).astype(np.float32) for _, s in tensors] for _ in range(3)]
    weights = np.array([1.0, 2.0, 3.0])
    reused = StackBuffers()
    stale = reused.take((3, 8), np.float32)
    stale[:] = np.nan
    reused.give(stale)
    stack = StackedModels(tensors, 3, reused)
    assert stack.rows is stale
    for m in models[:2]:  # a contribution that failed: the third row keeps its NaNs, and is not merged
        stack.add(m)
    expected = StackedModels(tensors, 3)
    for m in models[:2]:
        expected.add(m)
    for got, want in zip(stack.merge("mean", weights[:2]), expected.merge("mean", weights[:2]), strict=True):
        assert np.array_equal(got, want) and np.isfinite(got).all()


def test_a_running_mean_gives_the_stacked_mean_bit_for_bit():
    # The leader sums a mean's contributions as they arrive (RunningMean) instead of stacking them all: the
    # merged model must be the one a stack (and so the streamed, column-chunk merge) gives, to the bit.
    from sn_service.merge.running_mean import RunningMean
    from sn_service.merge.stacked_models import StackedModels

    rng = np.random.default_rng(7)
    tensors = [
        (np.dtype(np.float32), (300, 70)),
        (np.dtype(np.float16), (70,)),
        (np.dtype(np.int64), (3,)),
        (np.dtype(np.float32), (70_001,)),  # more than one accumulation block
    ]
    models = [
        [
            (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3)).astype(dt)
            if dt.kind == "f"
            else rng.integers(0, 9, shape).astype(dt)
            for dt, shape in tensors
        ]
        for _ in range(5)
    ]
    weights = np.array([3, 1, 250, 7, 2**40], dtype=np.int64)
    stack = StackedModels(tensors, len(models))
    running = RunningMean(tensors)
    for model, weight in zip(models, weights, strict=True):
        stack.add(model)
        running.add(model, int(weight))
    expected, got = stack.merge("mean", weights), running.merge("mean", weights)
    for e, g in zip(expected, got, strict=True):
        assert e.dtype == g.dtype and e.shape == g.shape
        assert e.tobytes() == g.tobytes()
    np.testing.assert_allclose(got[0], np.average([m[0] for m in models], axis=0, weights=weights), rtol=1e-6)
    assert (got[2] == models[0][2]).all()  # a non-float tensor: the first model's


def test_a_running_mean_refuses_what_it_cannot_merge():
    from sn_service.merge.running_mean import RunningMean

    running = RunningMean([(np.dtype(np.float32), (2,))])
    with pytest.raises(ValueError, match="positive weights"):
        running.add([np.ones(2, np.float32)], 0)
    with pytest.raises(ValueError, match="no models"):
        running.merge("mean", np.array([]))
    running.add([np.ones(2, np.float32)], 2)
    with pytest.raises(ValueError, match="'mean' only"):
        running.merge("coordmedian", np.array([2]))
    with pytest.raises(ValueError, match="not those"):
        running.merge("mean", np.array([3]))
    assert running.merge("mean", np.array([2]))[0].tolist() == [1.0, 1.0]
