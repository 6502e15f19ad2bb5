"""Old rounds' blobs are pruned on real services, and a site left behind catches up with the latest model."""

from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from swarm_wire import serialization

from .conftest import SMALL_LAYOUT_ARRAYS, small_spec, sync_round, wait_sync

pytestmark = pytest.mark.slow

KEEP = 2


def _blobs(services, site: str) -> set[str]:
    return {p.name for p in (services.root / site / "blobs").glob("*/*") if not p.name.startswith(".")}


def test_old_blobs_are_pruned_and_a_site_left_behind_takes_the_latest_model(services):
    spec = small_spec(min_peers=2, quorum_wait_ms=1500, leader_timeout_ms=3000)
    sites = ("site-a", "site-b", "site-c")
    urls = {s: services.start(s, "--keep-rounds", str(KEEP), "--prune-grace", "0") for s in sites}
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "m", "spec": spec}).status_code == 200
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    rng = np.random.default_rng(11)
    sync_round(urls, "m", rng)  # round 0 with everyone

    # site-c submits to round 1, then its service freezes before it can fetch (or lead) the merge.
    blob = serialization.to_bytes([rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS])
    sync_c = httpx.post(f"{urls['site-c']}/v1/local/syncs", params={"task": "m", "weight": 1}, content=blob).json()
    deadline = time.monotonic() + 30
    while "site-c" not in ledger.get_round("m", 1)["submissions"]:
        assert time.monotonic() < deadline, "site-c's contribution never reached the ledger"
        time.sleep(0.02)
    paused = services.procs["site-c"].pid
    os.kill(paused, signal.SIGSTOP)
    try:
        others = {s: u for s, u in urls.items() if s != "site-c"}
        for _ in range(6):  # rounds 1-6 merge without it
            results = sync_round(others, "m", rng)
            assert all(r["state"] == "done" for r in results.values()), results
    finally:
        os.kill(paused, signal.SIGCONT)
    record = ledger.get_task("m")
    assert record["latest_merged"]["round"] == 6
    history = ledger.get_history("m")["rounds"]

    # The others kept only the blobs of the last rounds (and the latest merged model).
    for site in ("site-a", "site-b"):
        held = _blobs(services, site)
        for rnd in history:
            shas = {rnd["merged_sha256"], *(s["sha256"] for s in rnd["submissions"].values())}
            if rnd["round"] < record["current_round"] - KEEP:
                assert not held & shas, f"{site} still holds blobs of round {rnd['round']}"
        assert record["latest_merged"]["sha256"] in held
    assert "deleted" in services.log("site-a") and "keeping the last 2 rounds" in services.log("site-a")

    # Resumed, site-c's sync of round 1 ends with the latest merged model: round 1's is gone everywhere.
    result = wait_sync(urls["site-c"], sync_c["sync_id"], 60)
    assert result["state"] == "done", result
    assert (result["round"], result["merged_sha256"]) == (6, record["latest_merged"]["sha256"])
    assert "taking the latest merged model (round 6)" in services.log("site-c")
    # ... and it takes part in the next round.
    results = sync_round(urls, "m", rng)
    assert {r["round"] for r in results.values()} == {7}
    assert sorted(ledger.get_round("m", 7)["contributors"]) == list(sites)
