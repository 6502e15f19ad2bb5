"""The paper's classifier: its size, its layers, its output."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_examples.paper_model import (
    HIDDEN_UNITS,
    build_paper_model,
    count_parameters,
    layer_widths,
)


def test_parameter_count_by_hand() -> None:
    # 2000*256+256, 256*1024+1024, 1024*512+512, ..., 128*64+64, 64*1+1.
    by_hand = 512_256 + 263_168 + 524_800 + 262_656 + 131_328 + 65_792 + 32_896 + 16_512 + 8_256 + 65
    assert count_parameters(2000) == by_hand == 1_817_729


def test_paper_model_has_1_8_million_weights_and_one_probability_per_sample() -> None:
    keras = pytest.importorskip("keras")
    model = build_paper_model(2000, seed=0)
    assert model.count_params() == count_parameters(2000) == 1_817_729
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [256, *HIDDEN_UNITS, 1]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.4] + [0.3] * 8
    # L2 0.005 on the eight hidden layers, as in the paper's methods.
    assert [layer.kernel_regularizer is not None for layer in dense] == [False] + [True] * 8 + [False]
    assert dense[1].kernel_regularizer.l2 == pytest.approx(0.005)
    assert dense[-1].activation.__name__ == "sigmoid"
    assert model.loss == "binary_crossentropy"
    out = model.predict(np.random.default_rng(0).standard_normal((5, 2000)).astype("float32"), verbose=0)
    assert out.shape == (5, 1)
    assert ((out > 0) & (out < 1)).all()


def test_width_multiplier_shrinks_every_layer() -> None:
    pytest.importorskip("keras")
    assert layer_widths(0.25) == [64, 256, 128, 128, 64, 64, 32, 32, 16]
    model = build_paper_model(50, width=0.25, seed=0)
    assert model.count_params() == count_parameters(50, 0.25)
    assert count_parameters(50, 0.25) < count_parameters(50) / 10


@pytest.mark.parametrize("width", [0, -1.0, "wide", True])
def test_bad_width_is_refused(width: object) -> None:
    with pytest.raises(ValueError, match="width="):
        layer_widths(width)  # type: ignore[arg-type]


def test_bad_inputs_are_refused_before_keras_is_touched() -> None:
    with pytest.raises(ValueError, match="n_inputs=0"):
        build_paper_model(0)
    with pytest.raises(ValueError, match="learning_rate"):
        build_paper_model(10, learning_rate=0.0)
