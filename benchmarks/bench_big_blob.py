"""A model of more than 2 GB through a real swarm: 3 services on loopback, every blob streamed.

Starts three real swarm-network services (embedded ledger) through the launcher and one light numpy
worker per site (``big_blob_worker.py``: 540 M float32 parameters, 2.16 GB a blob). Reports the median
sync as the sites saw it (after each site's first, which only aligns the starting weights), the time
between merges on the ledger, and every service's peak memory (VmHWM from /proc/<pid>/status), against
the target: the leader's peak under 1.5 x one model + 300 MB.

Run: .venv/bin/python benchmarks/bench_big_blob.py [--rounds 4] [--params-per-tensor 135000000]
Needs about 3 x 4 x the model on disk (in --workdir, default a temporary folder) and a few GB of memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.swarm_run import merged_rounds
from sn_service.cli.launcher import SwarmLauncher

HERE = Path(__file__).resolve().parent


def proc_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS), 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4, help="syncs per site, the first only aligns (default 4)")
    p.add_argument("--params-per-tensor", type=int, default=135_000_000, help="4 tensors of this many float32")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--stream-above-bytes", help="passed to swarm-sn (a smoke run on a small model: 0)")
    args = p.parse_args()
    sites = ["site-a", "site-b", "site-c"]
    task = f"big-{int(time.time())}"
    model_bytes = 4 * 4 * args.params_per_tensor
    target = 1.5 * model_bytes + 300e6
    peaks: dict[str, int] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        launcher = SwarmLauncher(
            sites, Path(tmp), echo=None,
            service_args=["--keep-rounds", "1", "--prune-grace", "0", "--sync-timeout", "7200"]
            + (["--stream-above-bytes", args.stream_above_bytes] if args.stream_above_bytes else []),
        )  # fmt: skip
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                loads.append(os.getloadavg()[0])
                for child in launcher.children:
                    if child.role == "sn":
                        peaks[child.name] = max(peaks.get(child.name, 0), proc_kb(child.proc.pid, "VmHWM"))

        t0 = time.perf_counter()
        try:
            launcher.start_services(timeout_s=300)
            threading.Thread(target=sample, daemon=True).start()
            launcher.start_training(
                str(HERE / "big_blob_worker.py"), [str(args.rounds), str(args.params_per_tensor)], task
            )
            code = launcher.wait(timeout_s=args.timeout)
        finally:
            stop.set()
            launcher.stop()
        if code != 0:
            for s in sites:
                print((Path(tmp) / s / "train.log").read_text()[-3000:])
                print((Path(tmp) / s / "sn.log").read_text()[-3000:])
            raise SystemExit("benchmark run failed")
        history = {"rounds": merged_rounds(Path(tmp) / "ledger.sqlite", task)}
        results = {s: json.loads((Path(tmp) / s / "sync_times.json").read_text()) for s in sites}
        leaders = [r["contributors"][r["leader_index"]] for r in history["rounds"]]
    syncs = [t for s in sites for t in results[s]["sync_s"][1:]]
    checks = [t for s in sites for t in results[s]["load_s"][1:]]
    published = [r["published_ms"] for r in history["rounds"]]
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(published)]
    print(f"model: {model_bytes / 1e9:.2f} GB ({4 * args.params_per_tensor / 1e6:.0f} M float32 parameters)")
    print(f"{len(history['rounds'])} rounds merged in {time.perf_counter() - t0:.0f} s; leaders {leaders}")
    print(f"  median sync seen by a site (after its first): {statistics.median(syncs):.1f} s "
          f"(min {min(syncs):.1f}, max {max(syncs):.1f}, {len(syncs)} syncs); of which checking and mapping the "
          f"merged model in the worker {statistics.median(checks):.1f} s")  # fmt: skip
    print(f"  median time between merges on the ledger: {statistics.median(gaps):.1f} s")
    # Where a round's time goes (median over the syncs after each site's first that had the part, in s).
    seen: dict[str, list[float]] = {}
    for s in sites:
        for timings in results[s]["service_ms"][1:]:
            for part, ms in timings.items():
                seen.setdefault(part, []).append(ms / 1000)
    print("  service parts (median s): " + "; ".join(f"{k} {statistics.median(v):.1f}" for k, v in seen.items()))
    for s in sites:
        print(f"  {s} service peak memory (VmHWM): {peaks.get(s, 0) * 1024 / 1e6:.0f} MB; led rounds "
              f"{[i for i, n in enumerate(leaders) if n == s]}")  # fmt: skip
    worst = max(peaks.values()) * 1024
    verdict = "met" if worst < target else "NOT met"
    print(f"  target: peak under 1.5 x {model_bytes / 1e6:.0f} MB + 300 MB = {target / 1e6:.0f} MB: {verdict} "
          f"(highest peak {worst / 1e6:.0f} MB)")  # fmt: skip
    print(f"  load average during the run: {min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f})")


if __name__ == "__main__":
    main()
