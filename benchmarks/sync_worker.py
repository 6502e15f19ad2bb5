"""One site of the sync benchmark: the paper's classifier (or a dense model of N parameters), 20 syncs, timed.

Before each sync the weights are nudged (standing in for training, not timed),
so that every contribution and merged model is new and crosses the network.

Run by bench_sync.py through the launcher; writes its timings to
SWARM_OUTPUT_DIR/sync_times.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from swarm_keras import SwarmCallback, serialization


def paper_classifier(n_inputs: int = 2000) -> keras.Model:
    """Dense 256-1024-512-512-256-256-128-128-64 on 2,000 inputs (about 1.8 M parameters)."""
    layers = [keras.Input((n_inputs,))]
    layers += [keras.layers.Dense(u, activation="relu") for u in (256, 1024, 512, 512, 256, 256, 128, 128, 64)]
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def dense_model(params: int) -> keras.Model:
    """Two square dense layers with about ``params`` parameters (for size scaling)."""
    width = max(16, int((params / 2) ** 0.5))
    model = keras.Sequential(
        [keras.Input((width,)), keras.layers.Dense(width, activation="relu"), keras.layers.Dense(width)]
    )
    model.compile(optimizer="adam", loss="mse")
    return model


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    keras.utils.set_random_seed(int(os.environ.get("SWARM_SITE_INDEX", "0")))
    model = dense_model(int(sys.argv[2])) if len(sys.argv) > 2 else paper_classifier()
    cb = SwarmCallback(syncFrequency=1, minPeers=int(os.environ["SWARM_NUM_SITES"]), checkinModelOnTrainEnd="leave")
    cb.set_model(model)
    cb.on_train_begin()
    times, parts, breakdown = [], {"serialise": [], "load": []}, []
    rng = np.random.default_rng(int(os.environ.get("SWARM_SITE_INDEX", "0")))
    for _ in range(rounds):
        # Stands in for training between syncs (not timed): each site's weights differ from the merged
        # model, so every contribution and every merged model is a new blob that has to travel.
        model.set_weights([w + rng.normal(0.0, 1e-4, w.shape).astype(w.dtype) for w in model.get_weights()])
        cb._steps_since_sync = 1
        t0 = time.perf_counter()
        cb._sync("bench")
        times.append(time.perf_counter() - t0)
        breakdown.append(cb.last_sync_timings)
        # The local parts of a sync, measured on their own.
        t1 = time.perf_counter()
        blob = serialization.to_bytes(model.get_weights())
        t2 = time.perf_counter()
        model.set_weights(serialization.from_bytes(blob, cb._layout))
        parts["serialise"].append(t2 - t1)
        parts["load"].append(time.perf_counter() - t2)
    cb.on_train_end()
    params = sum(w.size for w in model.get_weights())
    out = Path(os.environ["SWARM_OUTPUT_DIR"]) / "sync_times.json"
    out.write_text(json.dumps({"params": int(params), "sync_s": times, **parts, "breakdown": breakdown}))


if __name__ == "__main__":
    main()
