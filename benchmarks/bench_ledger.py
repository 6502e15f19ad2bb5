"""Latency of each contract transaction, and one round's ledger work, on a ledger.

Three sites (three identities) run N rounds back to back against the ledger
alone (no training, no blobs): Submit x 3, Close, Publish, plus the queries a
site makes. Reports the median of each transaction and of a round's total.

Run:  .venv/bin/python benchmarks/bench_ledger.py --ledger embedded
      make fabric-up && .venv/bin/python benchmarks/bench_ledger.py --ledger fabric
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sn_service.ledger import EmbeddedLedger
from swarm_wire.serialization import fingerprint

SITES = ("site-a", "site-b", "site-c")
LAYOUT = "f32[2000,256];f32[256]"


def open_ledgers(kind: str, profile: Path, folder: Path) -> dict:
    if kind == "embedded":
        return {s: EmbeddedLedger(folder / "ledger.sqlite", identity=f"embedded::{s}") for s in SITES}
    from sn_service.ledger.fabric import FabricLedger

    return {s: FabricLedger.from_profile(profile, s) for s in SITES}


def timed(times: dict, name: str, call, *args):
    t0 = time.perf_counter()
    result = call(*args)
    times[name].append(time.perf_counter() - t0)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ledger", choices=["embedded", "fabric"], default="embedded")
    p.add_argument("--fabric-profile", type=Path, default=Path(".fabric/connection.json"))
    p.add_argument("--rounds", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ledgers = open_ledgers(args.ledger, args.fabric_profile, Path(tmp))
        task = f"bench-{uuid.uuid4().hex[:8]}"
        spec = {
            "fingerprint": fingerprint(LAYOUT),
            "layout": LAYOUT,
            "min_peers": 3,
            "merge_method": "mean",
            "quorum_wait_ms": 60_000,
            "leader_timeout_ms": 60_000,
            "max_rounds": 0,
        }
        times: dict[str, list[float]] = defaultdict(list)
        timed(times, "InitTask", ledgers["site-a"].init_task, task, spec)
        for s in SITES:
            timed(times, "Register", ledgers[s].register, task, s, f"http://{s}", spec["fingerprint"])
        # A site's own peer may lag a block behind: wait until each sees every registration.
        for s in SITES:
            while len(ledgers[s].get_task(task)["nodes"]) < 3:
                time.sleep(0.05)
        round_totals = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for s in SITES:
                timed(times, "Submit", ledgers[s].submit, task, r, s, hashlib.sha256(f"{s}{r}".encode()).hexdigest(), 1)
            closer = SITES[r % 3]
            while True:  # the closer's peer must have seen all three submissions
                rnd = timed(times, "GetRound", ledgers[closer].get_round, task, r)
                if len(rnd["submissions"]) == 3:
                    break
            rnd = timed(times, "Close", ledgers[closer].close_round, task, r)
            leader = rnd["contributors"][0]
            while timed(times, "GetRound", ledgers[leader].get_round, task, r)["status"] != "closed":
                pass
            timed(
                times, "Publish", ledgers[leader].publish, task, r, leader, hashlib.sha256(str(r).encode()).hexdigest()
            )
            timed(times, "GetTask", ledgers[leader].get_task, task)
            round_totals.append(time.perf_counter() - t0)
        for ledger in ledgers.values():
            ledger.close()
    print(f"ledger {args.ledger}: {args.rounds} rounds of 3 sites")
    for name in ("InitTask", "Register", "Submit", "Close", "Publish", "GetTask", "GetRound"):
        t = times[name]
        print(f"  {name:9s} median {statistics.median(t) * 1000:7.1f} ms  (n={len(t)}, max {max(t) * 1000:.1f} ms)")
    print(
        f"  one round's ledger work (3 Submit, Close, Publish, queries, sequential): "
        f"median {statistics.median(round_totals) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
