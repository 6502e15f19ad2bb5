"""Rounds with many sites on one machine: 16 and 64 sites, the paper classifier's weights (numpy workers).

Starts N real swarm-network services (embedded ledger, loopback) through the launcher and one light
worker per site (``numpy_sync_worker.py``: no Keras, the swarm's work is the same). Reports the median
time between consecutive merges on the ledger (one round of the whole swarm) and the median sync as
the sites saw it.

Run: .venv/bin/python benchmarks/bench_sites.py --sites 16 [--rounds 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.swarm_run import merged_rounds, run_numpy_swarm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=16)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args()
    sites = [f"site-{i:02d}" for i in range(args.sites)]
    task = f"sites-{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        up = run_numpy_swarm(sites, Path(tmp), task, [str(args.rounds)], args.timeout)
        history = {"rounds": merged_rounds(Path(tmp) / "ledger.sqlite", task)}
        syncs = [t for s in sites for t in json.loads((Path(tmp) / s / "sync_times.json").read_text())["sync_s"][1:]]
    published = [r["published_ms"] for r in history["rounds"]]
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(published[1:])]  # after the first merge
    print(
        f"{args.sites} sites, {len(history['rounds'])} rounds merged, services up in {up:.1f} s, "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    print(f"  median round (between merges on the ledger): {statistics.median(gaps) * 1000:.0f} ms "
          f"(min {min(gaps) * 1000:.0f}, max {max(gaps) * 1000:.0f})")  # fmt: skip
    print(f"  median sync seen by a site: {statistics.median(syncs) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
