"""A leader killed after Close: after its deadline the next site leads and the round completes."""

from __future__ import annotations

import signal
import time

import httpx
import numpy as np
import pytest

from sn_service import contract
from sn_service.ledger import EmbeddedLedger
from swarm_wire import serialization

from .conftest import SMALL_LAYOUT_ARRAYS, assert_weighted_mean, small_spec, wait_sync

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


def test_paused_leader_is_failed_over_without_waiting_on_it(services):
    """The leader's service freezes (SIGSTOP) before it merges: connections to it hang, nothing is refused.

    After the leader timeout the next site leads; its fetch of the frozen
    site's contribution gives up within its own deadline (not the 60 s HTTP
    timeout), it merges the two it has and publishes. Resumed, the frozen
    site takes the round's merged model and is in the next round again.
    """
    import os

    urls = {s: services.start(s) for s in SITES}
    spec = small_spec(min_peers=2, leader_timeout_ms=3000)
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "pl", "spec": spec}).status_code == 200
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    rng = np.random.default_rng(1)
    blobs: dict[str, bytes] = {}

    def submit(site: str) -> str:
        blobs[site] = serialization.to_bytes(
            [rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS]
        )
        r = httpx.post(f"{urls[site]}/v1/local/syncs", params={"task": "pl", "weight": 1}, content=blobs[site])
        assert r.status_code == 202, r.text
        return r.json()["sync_id"]

    jobs = {s: submit(s) for s in SITES}  # round 0: everyone takes the leader's weights
    assert all(wait_sync(urls[s], j)["state"] == "done" for s, j in jobs.items())
    leader = contract.leader_order(ledger.get_round("pl", 0)["merged_sha256"], 1, list(SITES))[0]
    others = [s for s in SITES if s != leader]

    jobs = {leader: submit(leader)}
    deadline = time.monotonic() + 20
    while leader not in ledger.get_round("pl", 1)["submissions"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    paused = services.procs[leader].pid
    os.kill(paused, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        jobs.update({s: submit(s) for s in others})
        results = {s: wait_sync(urls[s], jobs[s], timeout_s=60) for s in others}
        took = time.monotonic() - t0
    finally:
        os.kill(paused, signal.SIGCONT)
    assert all(r["state"] == "done" and r["round"] == 1 for r in results.values()), results
    assert 3.0 <= took < 20.0, f"failover after the 3 s deadline, fetch bounded by the next deadline: {took:.1f} s"
    rnd = ledger.get_round("pl", 1)
    assert rnd["failovers"] >= 1 and rnd["published_by"] in others
    # The merged model is the mean of the two reachable contributions; the frozen one was rejected.
    merged = serialization.from_bytes(
        httpx.get(f"{urls[others[0]]}/v1/local/latest", params={"task": "pl"}).content, spec["layout"]
    )
    models = [serialization.from_bytes(blobs[s], spec["layout"]) for s in others]
    for i, tensor in enumerate(merged):
        np.testing.assert_allclose(tensor, (models[0][i] + models[1][i]) / 2, rtol=1e-6)
    logs = services.log(others[0]) + services.log(others[1])
    assert f"leader {leader} missed its deadline" in logs
    assert f"contribution of {leader} rejected" in logs

    # Resumed: its own sync ends with the round's merged model, and it takes part in round 2.
    back = wait_sync(urls[leader], jobs[leader], timeout_s=60)
    assert back["state"] == "done" and back["round"] == 1 and back["merged_sha256"] == rnd["merged_sha256"]
    jobs = {s: submit(s) for s in SITES}
    results = {s: wait_sync(urls[s], j, timeout_s=60) for s, j in jobs.items()}
    assert all(r["state"] == "done" and r["round"] == 2 for r in results.values()), results
    assert sorted(ledger.get_round("pl", 2)["contributors"]) == sorted(SITES)


def test_a_round_none_of_whose_contributors_can_merge_is_abandoned_and_the_swarm_goes_on(services):
    """A contributor freezes after submitting; the round closes with it and one other site (the third is late).

    With min_peers 2, no leader can merge: the live one cannot reach the frozen one's contribution, the
    frozen one does nothing. Each leads once, then the round is abandoned (before, it passed from leader to
    leader for ever: the swarm hung). The two live sites submit to the next round, which merges their
    models. Resumed, the frozen site submits its model again and the three merge together.
    """
    import os

    urls = {s: services.start(s) for s in SITES}
    spec = small_spec(min_peers=2, quorum_wait_ms=1500, leader_timeout_ms=2000)
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "ab", "spec": spec}).status_code == 200
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    rng = np.random.default_rng(2)
    blobs: dict[str, bytes] = {}

    def submit(site: str, again: bool = False) -> str:
        if not again:
            blobs[site] = serialization.to_bytes(
                [rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS]
            )
        r = httpx.post(f"{urls[site]}/v1/local/syncs", params={"task": "ab", "weight": 1}, content=blobs[site])
        assert r.status_code == 202, r.text
        return r.json()["sync_id"]

    def until(what: str, check, timeout_s: float = 60):
        deadline = time.monotonic() + timeout_s
        while not (value := check()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        return value

    jobs = {s: submit(s) for s in SITES}  # round 0: everyone takes the leader's weights
    assert all(wait_sync(urls[s], j)["state"] == "done" for s, j in jobs.items())
    frozen, live, late = SITES
    jobs = {frozen: submit(frozen), live: submit(live)}
    until("two submissions to round 1", lambda: len(ledger.get_round("ab", 1)["submissions"]) == 2)
    pid = services.procs[frozen].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        closed = until(
            "round 1 closed without the late site", lambda: (r := ledger.get_round("ab", 1))["status"] != "open" and r
        )
        jobs[late] = submit(late)  # too late for round 1
        results = {s: wait_sync(urls[s], jobs[s], timeout_s=90) for s in (live, late)}
    finally:
        os.kill(pid, signal.SIGCONT)
    assert sorted(closed["contributors"]) == sorted((frozen, live))
    abandoned = ledger.get_round("ab", 1)
    assert abandoned["status"] == "abandoned" and abandoned["failovers"] == 2, abandoned
    assert abandoned["merged_sha256"] is None
    assert all(r["state"] == "done" and r["round"] == 2 and r["contributed"] for r in results.values()), results
    round2 = ledger.get_round("ab", 2)
    assert sorted(round2["contributors"]) == sorted((live, late))
    assert round2["submissions"][live]["sha256"] == abandoned["submissions"][live]["sha256"]  # the same model
    by_sha = {serialization.sha256_hex(b): b for b in blobs.values()}
    merged = httpx.get(f"{urls[live]}/v1/local/latest", params={"task": "ab"}).content
    by_sha[serialization.sha256_hex(merged)] = merged
    assert_weighted_mean(round2, (live, late), by_sha.__getitem__, spec["layout"])
    logs = services.log(live) + services.log(late)
    assert "round 1: abandoned after 2 failovers" in logs, logs[-3000:]
    assert ledger.get_task("ab")["abandoned_rounds"] == 1

    # Resumed: its sync of round 1 submits the same model to the open round, with the other two.
    jobs[live], jobs[late] = submit(live, again=True), submit(late, again=True)
    results = {s: wait_sync(urls[s], j, timeout_s=90) for s, j in jobs.items()}
    assert all(r["state"] == "done" and r["round"] == 3 and r["contributed"] for r in results.values()), results
    round3 = ledger.get_round("ab", 3)
    assert sorted(round3["contributors"]) == sorted(SITES)
    assert round3["submissions"][frozen]["sha256"] == abandoned["submissions"][frozen]["sha256"]
    assert "round 1: abandoned after 2 failovers" in services.log(frozen)
