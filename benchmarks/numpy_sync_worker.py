"""One site of the many-sites benchmark: the paper classifier's weights as numpy arrays, no Keras.

Sixteen or sixty-four Keras processes do not fit two cores; the swarm's side of a round (upload, ledger,
fetch, merge, fetch back) does not depend on Keras, so this worker syncs numpy arrays of the paper model's
exact layout through the same ``ServiceClient`` the callback uses. Each sync's weights are nudged first, so
every blob is new and travels: the merged model plus a nudge of the site's own, drawn once (drawing 1.8 M
normals a sync cost 16 sites about 0.4 CPU-s a round on the two cores the services share, "training"
that the sites of a real swarm do on hardware of their own). Writes SWARM_OUTPUT_DIR/sync_times.json
(each sync's time, round and the service's milliseconds per part of it).

Run by bench_sites.py and bench_secagg.py through the launcher: ``numpy_sync_worker.py ROUNDS [secure]``
(``secure``: the task merges by secure aggregation).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from swarm_keras.service_client import ServiceClient
from swarm_wire import serialization

# The paper's classifier on 2,000 inputs: 256-1024-512-512-256-256-128-128-64, one sigmoid output.
UNITS = (2000, 256, 1024, 512, 512, 256, 256, 128, 128, 64, 1)


def paper_weights(rng: np.random.Generator) -> list[np.ndarray]:
    """Random float32 weights of the paper classifier's layout (kernel, bias per dense layer)."""
    out = []
    for n_in, n_out in itertools.pairwise(UNITS):
        out += [rng.standard_normal((n_in, n_out), np.float32) * 0.05, np.zeros(n_out, np.float32)]
    return out


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    n_sites = int(os.environ["SWARM_NUM_SITES"])
    rng = np.random.default_rng(int(os.environ.get("SWARM_SITE_INDEX", "0")))
    weights = paper_weights(rng)
    layout = serialization.layout_of(weights)
    client = ServiceClient(os.environ["SWARM_SN_URL"], logging.getLogger("bench"))
    spec = {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": n_sites,
        "merge_method": "mean",
        "quorum_wait_ms": 600_000,
        "leader_timeout_ms": 120_000,
        "max_rounds": 0,
    }
    if "secure" in sys.argv[2:]:
        spec["secure_aggregation"] = True
    # "train_ms=N": N ms between a sync and the next, as if training there (asleep: on hardware of its own)
    train_s = next((float(a.split("=", 1)[1]) / 1000 for a in sys.argv[2:] if a.startswith("train_ms=")), 0.0)
    client.join(os.environ["SWARM_TASK"], spec)
    nudge = [rng.normal(0.0, 1e-4, w.shape).astype(w.dtype) for w in weights]
    times, rounds_seen, timings = [], [], []
    for _ in range(rounds):
        time.sleep(train_s)
        weights = [w + n for w, n in zip(weights, nudge, strict=True)]
        t0 = time.perf_counter()
        status = client.sync(os.environ["SWARM_TASK"], serialization.to_bytes(weights), 1, timeout_s=600)
        weights = client.blob(status["merged_sha256"], layout)
        times.append(time.perf_counter() - t0)
        rounds_seen.append(status["round"])
        timings.append(status.get("timings_ms", {}))
    client.checkin(os.environ["SWARM_TASK"], "leave")
    Path(os.environ["SWARM_OUTPUT_DIR"], "sync_times.json").write_text(
        json.dumps({"sync_s": times, "rounds": rounds_seen, "timings_ms": timings})
    )


if __name__ == "__main__":
    main()
