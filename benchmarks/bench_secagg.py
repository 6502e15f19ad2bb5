"""Secure aggregation against the plain mean: merge time and bytes moved, 3 and 16 sites.

Same set-up as bench_sites.py (real services through the launcher, embedded ledger, numpy workers of
the paper classifier's layout, 6.9 MB float32), once with ``merge_method="mean"`` and once with
``secure_aggregation`` on top. Reports per merge round (round 0, the leader's initial weights, left
out): the median time from Close to Publish on the ledger (plain: fetch and merge; secure: every site
masks and uploads, the leader fetches, seals, gathers reveals and unmasks), the median sync seen by a
site, the bytes the services received from peers (the workers' local uploads subtracted), and the CPU
seconds all services used per round (less noisy than times on a shared machine).

On a shared, loaded machine one run says little: ``--repeat`` alternates plain and secure runs and
reports the median of each figure over the repeats.

``--train-ms`` puts that long between a worker's syncs, as if it trained (asleep, as on hardware of its own):
what secure aggregation can do while the sites train (advertise round keys, sum masks) it then does.

Run: .venv/bin/python benchmarks/bench_secagg.py --sites 3 16 [--rounds 6] [--repeat 3] [--train-ms 400] [--parts]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.numpy_sync_worker import paper_weights
from benchmarks.swarm_run import merged_rounds, run_numpy_swarm
from sn_service.cli.launcher import SwarmLauncher
from swarm_wire import serialization

FIGURES = ("close_to_publish_ms", "sync_ms", "peer_mb_per_round", "service_cpu_s_per_round")


def run(n_sites: int, rounds: int, secure: bool, timeout_s: float, train_ms: float = 0) -> dict:
    """One swarm of ``n_sites`` for ``rounds`` syncs; its medians and bytes per merge round."""
    sites = [f"site-{i:02d}" for i in range(n_sites)]
    task = f"{'sec' if secure else 'plain'}-{n_sites}-{int(time.time())}"
    blob_bytes = len(serialization.to_bytes(paper_weights(np.random.default_rng(0))))
    with tempfile.TemporaryDirectory() as tmp:
        cpu: dict[str, float] = {}
        received = []
        services: list[int] = []

        def started(launcher: SwarmLauncher) -> None:
            services.extend(c.proc.pid for c in launcher.children if c.role == "sn")
            cpu["before"] = sum(map(_cpu_seconds, services))  # the services' start-up left out

        def finished(launcher: SwarmLauncher) -> None:
            for s in sites:
                status = httpx.get(launcher.service_url(s) + "/v1/status", timeout=30).json()
                received.append(status["counters"]["bytes_received"])
            cpu["after"] = sum(map(_cpu_seconds, services))

        args = [str(rounds)] + (["secure"] if secure else []) + ([f"train_ms={train_ms:g}"] if train_ms else [])
        run_numpy_swarm(sites, Path(tmp), task, args, timeout_s, started, finished)
        service_cpu_s = cpu["after"] - cpu["before"]
        history = {"rounds": merged_rounds(Path(tmp) / "ledger.sqlite", task)}
        records = [json.loads((Path(tmp) / s / "sync_times.json").read_text()) for s in sites]
        # "(k of n masks summed before close)": how much of its masking a site did while the round was open.
        premasked = [
            int(k) / int(n)
            for s in sites
            for k, n in re.findall(
                r"\((?:\d+) bytes; (\d+) of (\d+) masks summed", (Path(tmp) / s / "sn.log").read_text()
            )
        ]
    syncs = [t for rec in records for t in rec["sync_s"][1:]]
    # Per merge round, each part of a sync at the site that spent longest in it (the leader's parts: the leader).
    per_round: dict[int, dict[str, float]] = {}
    for rec in records:
        for round_no, parts in zip(rec["rounds"][1:], rec["timings_ms"][1:], strict=True):
            slowest = per_round.setdefault(round_no, {})
            for part, ms in parts.items():
                slowest[part] = max(slowest.get(part, 0.0), ms)
    names = sorted({part for parts in per_round.values() for part in parts})
    parts_ms = {part: statistics.median(parts.get(part, 0.0) for parts in per_round.values()) for part in names}
    merges = [r for r in history["rounds"] if r["previous_merged_sha256"] is not None]
    peer_bytes = sum(received) - n_sites * rounds * blob_bytes  # minus what each worker uploaded to its own service
    return {
        "sites": n_sites,
        "secure": secure,
        "merge_rounds": len(merges),
        "close_to_publish_ms": statistics.median(r["published_ms"] - r["closed_ms"] for r in merges),
        "sync_ms": statistics.median(syncs) * 1000,
        "peer_mb_per_round": peer_bytes / len(history["rounds"]) / 2**20,
        "model_mb": blob_bytes / 2**20,
        "parts_ms": parts_ms,
        "service_cpu_s_per_round": service_cpu_s / len(history["rounds"]),
        "premasked": statistics.median(premasked) if premasked else None,
        # A contribution the leader could not fetch in time is dropped, not merged: the run then says so.
        "dropped": sum(len(r.get("sealed", {}).get("dropped", [])) for r in merges),
    }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, nargs="+", default=[3, 16])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--repeat", type=int, default=1, help="alternating plain/secure runs per site count")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--train-ms",
        type=float,
        default=0,
        help="each worker waits this long between syncs, as if training on hardware of its own (default: syncs "
        "back to back)",
    )
    p.add_argument("--parts", action="store_true", help="also print each run's slowest site's ms per part of a sync")
    args = p.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"{args.train_ms:g} ms of training between syncs"
    )
    results = []
    for n in args.sites:
        runs = []
        for _ in range(args.repeat):
            for secure in (False, True):
                runs.append(run(n, args.rounds, secure, args.timeout, args.train_ms))
                r, arm = runs[-1], "secure" if secure else "plain "
                print(
                    f"  {n} sites {arm}: close->publish {r['close_to_publish_ms']:.0f} ms, "
                    f"sync {r['sync_ms']:.0f} ms, services' CPU {r['service_cpu_s_per_round']:.2f} s a round"
                    + (
                        f", masks summed before close {r['premasked']:.0%} (median)"
                        if r["premasked"] is not None
                        else ""
                    )
                    + (f", {r['dropped']} contributions DROPPED" if r["dropped"] else "")
                    + f", load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                if args.parts:
                    print("    " + ", ".join(f"{k} {v:.0f}" for k, v in r["parts_ms"].items() if v >= 1), flush=True)
        results += runs
        plain, sec = (
            {k: statistics.median(r[k] for r in runs if r["secure"] is s) for k in FIGURES} for s in (False, True)
        )
        print(
            f"{n:3d} sites ({runs[0]['model_mb']:.1f} MB model, {args.repeat} x {args.rounds} syncs each arm): "
            f"close->publish {plain['close_to_publish_ms']:.0f} -> {sec['close_to_publish_ms']:.0f} ms "
            f"({sec['close_to_publish_ms'] / plain['close_to_publish_ms']:.2f}x); "
            f"sync {plain['sync_ms']:.0f} -> {sec['sync_ms']:.0f} ms ({sec['sync_ms'] / plain['sync_ms']:.2f}x); "
            f"peer bytes/round {plain['peer_mb_per_round']:.1f} -> {sec['peer_mb_per_round']:.1f} MB "
            f"({sec['peer_mb_per_round'] / plain['peer_mb_per_round']:.2f}x); services' CPU a round "
            f"{plain['service_cpu_s_per_round']:.2f} -> {sec['service_cpu_s_per_round']:.2f} s "
            f"({sec['service_cpu_s_per_round'] / plain['service_cpu_s_per_round']:.2f}x); "
            f"load now {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    print(f"load after: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
