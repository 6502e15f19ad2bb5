"""Merge time per method for 8 models of 10 M parameters, and a real service's peak memory.

Part 1 times each merge method in-process (median of repeats).
Part 2 starts 8 real swarm-network services on loopback (embedded ledger),
submits a 10 M-parameter model to each over HTTP, lets the round run, and
reads the leader's peak resident memory (VmHWM) from /proc.

Run: .venv/bin/python benchmarks/bench_merge.py [--params 10000000] [--models 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn_service.ledger import EmbeddedLedger
from sn_service.merge import MERGE_METHODS, merge
from swarm_wire import serialization


def time_methods(n_models: int, n_params: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    stacked = rng.standard_normal((n_models, n_params), dtype=np.float32)
    weights = rng.uniform(1, 10, n_models)
    out = {}
    for method in MERGE_METHODS:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            merge(method, stacked, weights)
            times.append(time.perf_counter() - t0)
        out[method] = statistics.median(times)
        print(f"  {method:12s} median {out[method]:.3f} s over {repeats}", flush=True)
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def service_memory(n_models: int, n_params: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from integration.conftest import Services  # the same process harness the tests use

    rng = np.random.default_rng(1)
    # Two tensors, like a dense layer's kernel and bias, n_params in all.
    shapes = [(n_params // 1000, 1000), (n_params - (n_params // 1000) * 1000,)]
    shapes = [s for s in shapes if np.prod(s) > 0]
    layout = serialization.layout_of([np.zeros(s, np.float32) for s in shapes])
    spec = {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": n_models,
        "merge_method": "mean",
        "quorum_wait_ms": 600_000,
        "leader_timeout_ms": 600_000,
        "max_rounds": 0,
    }
    with tempfile.TemporaryDirectory() as tmp:
        services = Services(Path(tmp))
        try:
            names = [f"site-{i}" for i in range(n_models)]
            urls = {n: services.start(n) for n in names}
            baseline = {n: peak_rss_mb(services.procs[n].pid) for n in names}
            for url in urls.values():
                httpx.post(f"{url}/v1/local/join", json={"task": "mem", "spec": spec}, timeout=60).raise_for_status()
            results = {}
            for round_no in range(2):  # round 0 aligns weights; round 1 is a real merge
                jobs = {}
                for n, url in urls.items():
                    blob = serialization.to_bytes([rng.standard_normal(s, dtype=np.float32) for s in shapes])
                    r = httpx.post(
                        f"{url}/v1/local/syncs", params={"task": "mem", "weight": 1}, content=blob, timeout=120
                    )
                    r.raise_for_status()
                    jobs[n] = r.json()["sync_id"]
                    del blob
                t0 = time.perf_counter()
                for n, job in jobs.items():
                    while True:
                        s = httpx.get(f"{urls[n]}/v1/local/syncs/{job}", params={"wait_s": 5}, timeout=60).json()
                        if s["state"] != "running":
                            assert s["state"] == "done", s
                            break
                results[round_no] = time.perf_counter() - t0
            rnd = EmbeddedLedger(services.ledger_path, identity="bench").get_round("mem", 1)
            leader = rnd["published_by"]
            peaks = {n: peak_rss_mb(services.procs[n].pid) for n in names}
        finally:
            services.stop_all()
    model_mb = serialization.expected_nbytes(layout) / 2**20
    return {
        "model_mb": model_mb,
        "leader": leader,
        "leader_peak_mb": peaks[leader],
        "leader_baseline_mb": baseline[leader],
        "max_peak_mb": max(peaks.values()),
        "limit_mb": 3 * n_models * model_mb + 200,
        "round_wall_s": results,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=8)
    p.add_argument("--params", type=int, default=10_000_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument("--no-service", action="store_true", help="only the in-process merge times")
    args = p.parse_args()
    print(
        f"merge of {args.models} models x {args.params:,} float32 parameters on {platform.machine()}, "
        f"{platform.python_version()}, numpy {np.__version__}"
    )
    times = time_methods(args.models, args.params, args.repeats)
    if args.no_service:
        return
    print("service memory (real processes):", flush=True)
    mem = service_memory(args.models, args.params)
    print(
        f"  model {mem['model_mb']:.1f} MB; leader {mem['leader']} peak RSS {mem['leader_peak_mb']:.0f} MB "
        f"(idle {mem['leader_baseline_mb']:.0f} MB); largest of all services {mem['max_peak_mb']:.0f} MB; "
        f"limit 3 x N x size + 200 = {mem['limit_mb']:.0f} MB"
    )
    print(f"  round wall time: {mem['round_wall_s']}")
    if args.json:
        args.json.write_text(json.dumps({"merge_s": times, "memory": mem}, indent=1))


if __name__ == "__main__":
    main()
