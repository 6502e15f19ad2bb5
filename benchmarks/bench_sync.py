"""The time a sync adds to training: 3 sites, the paper's classifier (about 1.8 M parameters).

Starts 3 real swarm-network services and 3 training processes through the
launcher (embedded ledger, loopback); each process runs 20 syncs back to
back (serialise, upload, ledger, fetch, merge, load) and records each one's
wall time. Reports the median per site and over all.

Also reports each site's blob store size at the end (see --keep-rounds).

Run: .venv/bin/python benchmarks/bench_sync.py [--rounds 20] [--ledger embedded|fabric] [--keep-rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn_service.cli.launcher import SwarmLauncher

HERE = Path(__file__).resolve().parent


def breakdown_medians(breakdowns: list[dict]) -> dict[str, tuple[float, int]]:
    """Each part's median over the syncs that had it, and how many had it (only a round's leader leads)."""
    parts: dict[str, list[float]] = {}
    for b in breakdowns:
        row = {f"callback: {k}": v for k, v in b.items() if k != "service"}
        row.update({f"service: {k}": v for k, v in b.get("service", {}).items()})
        for k, v in row.items():
            parts.setdefault(k, []).append(v)
    return {k: (statistics.median(v), len(v)) for k, v in parts.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--ledger", choices=["embedded", "fabric"], default="embedded")
    p.add_argument("--fabric-profile", type=Path, default=Path(".fabric/connection.json"))
    p.add_argument("--json", type=Path)
    p.add_argument("--keep-rounds", type=int, default=20, help="swarm-sn --keep-rounds (0: keep every blob)")
    p.add_argument("--prune-grace", type=float, default=10.0, help="swarm-sn --prune-grace seconds")
    p.add_argument(
        "--params",
        type=float,
        default=0,
        help="instead of the paper's classifier, a dense model of about this many parameters (e.g. 10e6)",
    )
    args = p.parse_args()
    sites = ["site-a", "site-b", "site-c"]
    with tempfile.TemporaryDirectory() as tmp:
        service_args = ["--keep-rounds", str(args.keep_rounds), "--prune-grace", str(args.prune_grace)]
        launcher = SwarmLauncher(
            sites, Path(tmp), args.ledger, args.fabric_profile, echo=None, service_args=service_args
        )
        try:
            launcher.start_services()
            t0 = time.perf_counter()
            worker_args = [str(args.rounds)] + ([str(int(args.params))] if args.params else [])
            launcher.start_training(str(HERE / "sync_worker.py"), worker_args, f"bench-{int(time.time())}")
            code = launcher.wait(timeout_s=1200)
        finally:
            launcher.stop()
        if code != 0:
            for s in sites:
                print((Path(tmp) / s / "train.log").read_text()[-3000:])
            raise SystemExit("benchmark run failed")
        results = {s: json.loads((Path(tmp) / s / "sync_times.json").read_text()) for s in sites}
        stores = {s: sum(f.stat().st_size for f in (Path(tmp) / s / "blobs").rglob("*") if f.is_file()) for s in sites}
    wall = time.perf_counter() - t0
    params = results[sites[0]]["params"]
    print(
        f"{len(sites)} sites, {params:,} parameters ({params * 4 / 2**20:.1f} MB float32), "
        f"{args.rounds} syncs each, ledger {args.ledger}, total {wall:.0f} s"
    )
    all_times = []
    for s in sites:
        t = results[s]["sync_s"][1:]  # the first sync also warms up connections
        all_times += t
        print(
            f"  {s}: median sync {statistics.median(t) * 1000:.0f} ms (min {min(t) * 1000:.0f}, "
            f"max {max(t) * 1000:.0f}); serialise {statistics.median(results[s]['serialise']) * 1000:.1f} ms, "
            f"load {statistics.median(results[s]['load']) * 1000:.1f} ms"
        )
    print(f"  all sites: median sync {statistics.median(all_times) * 1000:.0f} ms")
    print("  where a sync's time goes (median ms over the syncs after the first that had the part):")
    for part, (ms, n) in breakdown_medians([b for s in sites for b in results[s]["breakdown"][1:]]).items():
        print(f"    {part:42s} {ms:8.1f}  ({n} syncs)")
    print(
        f"  blob stores at the end (--keep-rounds {args.keep_rounds}, --prune-grace {args.prune_grace:g}): "
        + ", ".join(f"{s} {b / 2**20:.0f} MB" for s, b in stores.items())
    )
    if args.json:
        args.json.write_text(json.dumps({"params": params, "sites": results, "median_s": statistics.median(all_times)}))


if __name__ == "__main__":
    main()
