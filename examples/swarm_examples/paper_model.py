"""The paper's classifier: a deep dense network over standard-scaled genes.

Warnat-Herresthal et al. (Nature 2021) trained one Keras network for every
use case, at every node, centrally and in the swarm:

- an input layer of 256 ReLU units, dropout 40 %;
- eight hidden layers of 1,024, 512, 512, 256, 256, 128, 128 and 64 ReLU
  units, each with an L2 kernel penalty of 0.005 and dropout 30 %;
- one sigmoid output unit; Adam, binary cross-entropy, batch size 512.

With 2,000 genes that is 1,817,729 weights (about 1.8 M). `build_paper_model`
builds it; ``width`` scales every layer for small data or fast tests.

Keras is imported when a model is built, not when this module is imported.
"""

from __future__ import annotations

import itertools
from typing import Any

# The paper's layer widths: the input layer, then the eight hidden layers.
INPUT_UNITS = 256
HIDDEN_UNITS = (1024, 512, 512, 256, 256, 128, 128, 64)
INPUT_DROPOUT = 0.4
HIDDEN_DROPOUT = 0.3
L2_FACTOR = 0.005
BATCH_SIZE = 512
LEARNING_RATE = 1e-3  # Adam's default, which the paper kept


def layer_widths(width: float = 1.0) -> list[int]:
    """The widths of the input layer and the eight hidden layers, times ``width``.

    Every layer keeps at least one unit.

    Raises:
        ValueError: ``width`` is not a positive number.

    Example:
        >>> layer_widths(0.25)
        [64, 256, 128, 128, 64, 64, 32, 32, 16]
    """
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ValueError(f"width={width!r}: pass a number > 0 (1.0 is the paper's network)")
    return [max(1, round(units * width)) for units in (INPUT_UNITS, *HIDDEN_UNITS)]


def count_parameters(n_inputs: int, width: float = 1.0) -> int:
    """The number of weights of `build_paper_model` (no Keras needed).

    Example:
        >>> count_parameters(2000)
        1817729
    """
    if n_inputs < 1:
        raise ValueError(f"n_inputs={n_inputs}: pass at least one input gene")
    sizes = [n_inputs, *layer_widths(width), 1]
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(sizes))


def build_paper_model(
    n_inputs: int,
    width: float = 1.0,
    learning_rate: float = LEARNING_RATE,
    seed: int | None = None,
    compile_model: bool = True,
) -> Any:
    """Build (and compile) the paper's dense classifier.

    Inputs must be scaled beforehand (see `swarm_examples.scaling`); the
    model itself holds no scaler, so every site can feed it its own scaled
    data.

    Args:
        n_inputs: number of genes.
        width: multiplies every layer's units (1.0: the paper's network;
            e.g. 0.25 for a quick test).
        learning_rate: Adam's learning rate.
        seed: seeds the initial weights and dropout; None leaves Keras'
            global state alone.
        compile_model: compile with Adam, binary cross-entropy and an
            accuracy metric.

    Returns:
        A ``keras.Sequential`` with one sigmoid output per sample.

    Raises:
        ValueError: ``n_inputs`` < 1, ``width`` <= 0 or ``learning_rate`` <= 0.

    Example:
        >>> model = build_paper_model(2000)  # doctest: +SKIP
        >>> model.count_params()  # doctest: +SKIP
        1817729
    """
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, int) or n_inputs < 1:
        raise ValueError(f"n_inputs={n_inputs!r}: pass the number of genes, an integer >= 1")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate={learning_rate!r}: pass a number > 0")
    widths = layer_widths(width)

    import keras

    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers: list[Any] = [
        keras.Input((n_inputs,), name="genes"),
        keras.layers.Dense(widths[0], activation="relu", name="input_dense"),
        keras.layers.Dropout(INPUT_DROPOUT, name="input_dropout"),
    ]
    for i, units in enumerate(widths[1:], start=1):
        layers += [
            keras.layers.Dense(
                units,
                activation="relu",
                kernel_regularizer=keras.regularizers.L2(L2_FACTOR),
                name=f"hidden{i}",
            ),
            keras.layers.Dropout(HIDDEN_DROPOUT, name=f"hidden{i}_dropout"),
        ]
    layers.append(keras.layers.Dense(1, activation="sigmoid", name="case_probability"))
    model = keras.Sequential(layers, name="paper_classifier")
    if compile_model:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
    return model
