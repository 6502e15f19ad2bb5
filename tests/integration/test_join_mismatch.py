"""A site whose model differs from the task's is refused at join, with the difference named."""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from swarm_keras import SwarmCallback  # noqa: E402

pytestmark = pytest.mark.slow


def _model(hidden: int):
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def test_different_architecture_is_refused_at_join(services):
    url_a, url_b = services.start("site-a"), services.start("site-b")
    x, y = np.zeros((8, 6), np.float32), np.zeros(8, np.float32)
    # site-a creates the task with an 8-unit hidden layer (and waits for a peer in vain: min_peers 2).
    r = httpx.post(
        f"{url_a}/v1/local/join", json={"task": "mix", "spec": {**_spec_of(_model(8)), "min_peers": 2}}, timeout=30
    )
    assert r.status_code == 200, r.text
    cb = SwarmCallback(syncFrequency=2, minPeers=2, trainingContract="mix", serviceUrl=url_b)
    with pytest.raises(RuntimeError) as err:
        _model(16).fit(x, y, epochs=1, verbose=0, callbacks=[cb])
    message = str(err.value)
    assert "MODEL_MISMATCH" in message
    assert "weight tensor 0 is f32[6,16] here but f32[6,8] in the task's model" in message
    r = httpx.get(f"{url_a}/v1/status").json()
    assert sorted(r["tasks"]["mix"]["nodes"]) == ["site-a"], "the mismatched site must not be registered"


def _spec_of(model) -> dict:
    from swarm_wire import serialization

    layout = serialization.layout_of(model.get_weights())
    return {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": 2,
        "merge_method": "mean",
        "quorum_wait_ms": 1000,
        "leader_timeout_ms": 1000,
        "max_rounds": 0,
    }
