"""One site of the big-blob benchmark: a model of > 2 GB as numpy arrays, no Keras.

Four float32 tensors of 135 M values each (540 M parameters, 2.16 GB) and a small ``nonce`` tensor. The
first sync sends random weights (round 0 aligns every site on the leader's); after that each site sends
the merged model it holds (memory-mapped from its service's store, so the worker stays light) with its own
new ``nonce``: every contribution is a new blob of 2.16 GB that is written, fetched, hashed, checked and
merged in full, as a trained model would be. Writes SWARM_OUTPUT_DIR/sync_times.json.

Run by bench_big_blob.py through the launcher: ``big_blob_worker.py ROUNDS [PARAMS_PER_TENSOR]``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from swarm_keras.service_client import ServiceClient
from swarm_wire import serialization

TENSORS = 4


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    per_tensor = int(sys.argv[2]) if len(sys.argv) > 2 else 135_000_000
    site = int(os.environ.get("SWARM_SITE_INDEX", "0"))
    rng = np.random.default_rng(site)
    weights = []
    for _ in range(TENSORS):
        a = np.empty((per_tensor // 1000, 1000), np.float32)
        rng.random(out=a.reshape(-1), dtype=np.float32)  # no float64 temporary
        weights.append(a)
    weights.append(np.zeros(1024, np.float32))  # the nonce
    layout = serialization.layout_of(weights)
    client = ServiceClient(os.environ["SWARM_SN_URL"], logging.getLogger("bench"))
    spec = {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": int(os.environ["SWARM_NUM_SITES"]),
        "merge_method": "mean",
        "quorum_wait_ms": 3_600_000,
        "leader_timeout_ms": 1_800_000,
        "max_rounds": 0,
    }
    task = os.environ["SWARM_TASK"]
    client.join(task, spec)
    syncs, loads, rounds_seen, parts = [], [], [], []
    for r in range(rounds):
        weights[-1] = np.full(1024, site + 10 * r, np.float32)
        t0 = time.perf_counter()
        status = client.sync(task, weights, 1, timeout_s=7200)
        t1 = time.perf_counter()
        merged = client.blob(status["merged_sha256"], layout)  # hash, layout and values checked; memory maps
        t2 = time.perf_counter()
        weights = list(merged)
        syncs.append(t2 - t0)
        loads.append(t2 - t1)
        rounds_seen.append(status["round"])
        parts.append(status.get("timings_ms", {}))
        print(f"round {status['round']}: sync {t2 - t0:.1f} s (check and map the merged model {t2 - t1:.1f} s); "
              f"service parts {status.get('timings_ms')}", flush=True)  # fmt: skip
    client.checkin(task, "leave")
    Path(os.environ["SWARM_OUTPUT_DIR"], "sync_times.json").write_text(
        json.dumps({"sync_s": syncs, "load_s": loads, "rounds": rounds_seen, "service_ms": parts})
    )


if __name__ == "__main__":
    main()
