"""A leader killed after Close: after its deadline the next site leads and the round completes."""

from __future__ import annotations

import signal
import time

import httpx
import numpy as np
import pytest

from sn_service import contract
from sn_service.ledger import EmbeddedLedger
from swarm_keras import serialization

from .conftest import SMALL_LAYOUT_ARRAYS, small_spec, wait_sync

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


def test_dead_leader_is_failed_over_and_the_round_completes(services):
    urls = {s: services.start(s) for s in SITES}
    spec = small_spec(min_peers=2, leader_timeout_ms=2000)
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "fo", "spec": spec}).status_code == 200
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    leader = contract.leader_order(None, 0, list(SITES))[0]
    others = [s for s in SITES if s != leader]
    rng = np.random.default_rng(0)

    def blob() -> bytes:
        return serialization.to_bytes([rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS])

    # The leader-to-be submits, then its service dies before the round closes.
    r = httpx.post(f"{urls[leader]}/v1/local/syncs", params={"task": "fo", "weight": 1}, content=blob())
    assert r.status_code == 202
    deadline = time.monotonic() + 20
    while leader not in ledger.get_round("fo", 0)["submissions"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    services.stop(leader, signal.SIGKILL)

    t0 = time.monotonic()
    jobs = {}
    for site in others:
        r = httpx.post(f"{urls[site]}/v1/local/syncs", params={"task": "fo", "weight": 1}, content=blob())
        jobs[site] = r.json()["sync_id"]
    results = {s: wait_sync(urls[s], j, timeout_s=60) for s, j in jobs.items()}
    took = time.monotonic() - t0
    assert all(r["state"] == "done" for r in results.values()), results
    assert len({r["merged_sha256"] for r in results.values()}) == 1
    assert took >= 2.0, "the failover must wait for the leader's deadline"

    rnd = ledger.get_round("fo", 0)
    assert rnd["contributors"][0] == leader and rnd["failovers"] >= 1
    assert rnd["published_by"] in others
    # The log of the sites says what happened.
    logs = services.log(others[0]) + services.log(others[1])
    assert f"leader {leader} missed its deadline" in logs

    # The two survivors go on: min_peers 2 still holds once the dead site is given up (quorum wait).
    jobs = {}
    for site in others:
        r = httpx.post(f"{urls[site]}/v1/local/syncs", params={"task": "fo", "weight": 1}, content=blob())
        jobs[site] = r.json()["sync_id"]
    spec_wait = spec["quorum_wait_ms"] / 1000
    results = {s: wait_sync(urls[s], j, timeout_s=spec_wait + 60) for s, j in jobs.items()}
    assert all(r["state"] == "done" and r["round"] == 1 for r in results.values()), results
    assert sorted(ledger.get_round("fo", 1)["contributors"]) == sorted(others)
