"""SwarmCallback on each Keras 3 backend: batches are counted right, also with steps_per_execution > 1.

Each backend runs in a subprocess (Keras picks its backend once per process).
A backend that is not installed is skipped, unless SWARM_REQUIRE_BACKENDS
(comma-separated, set by CI for tensorflow and jax) names it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

SCRIPT = """
import json
import numpy as np
import keras
from swarm_keras import SwarmCallback

out = {"backend": keras.backend.backend()}
for spe, freq in ((1, 2), (4, 2), (4, 8), (3, 4)):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=spe)
    cb = SwarmCallback(syncFrequency=freq, minPeers=1)
    syncs = []
    cb.on_train_begin = lambda logs=None: None  # no service: record the syncs instead of running them
    cb.on_train_end = lambda logs=None: None
    cb._client = object()

    def record(why, cb=cb, syncs=syncs):
        syncs.append([why, cb.merge_weight()])
        cb._steps_since_sync = 0

    cb._sync = record
    x = np.zeros((96, 3), "float32")  # 12 batches of 8 per epoch
    model.fit(x, np.zeros((96, 2), "float32"), batch_size=8, epochs=2, verbose=0, callbacks=[cb])
    out[f"{spe},{freq}"] = syncs
print("RESULT " + json.dumps(out))
"""


def _require(backend: str) -> None:
    if importlib.util.find_spec(MODULES[backend]) is None:
        required = os.environ.get("SWARM_REQUIRE_BACKENDS", "").split(",")
        if backend in required:
            pytest.fail(f"SWARM_REQUIRE_BACKENDS names {backend} but it is not installed (make venv installs it)")
        pytest.skip(f"Keras backend {backend} is not installed")


@pytest.mark.parametrize("backend", sorted(MODULES))
def test_syncs_keep_to_sync_frequency_with_steps_per_execution(backend):
    _require(backend)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    assert out["backend"] == backend
    # One batch a call: a sync every 2 batches, each weighing its 2 steps.
    assert out["1,2"] == [[f"batch {b}", 2] for b in (2, 4, 6, 8, 10, 12)] * 2
    # 4 batches a call, syncFrequency 2: as often as Keras allows, each weighing 4 steps.
    assert out["4,2"] == [[f"batch {b}", 4] for b in (4, 8, 12)] * 2
    # 4 batches a call, syncFrequency 8: every 8 batches across epochs (before: every 8 calls = 32 batches).
    assert out["4,8"] == [["batch 8", 8], ["batch 4", 8], ["batch 12", 8]]
    # 3 batches a call does not divide 4: every 6 batches.
    assert out["3,4"] == [["batch 6", 6], ["batch 12", 6]] * 2
