"""Sites joining late and leaving: the swarm goes on without waiting for anyone who is gone."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from swarm_wire import serialization

from .conftest import small_spec, sync_round

pytestmark = pytest.mark.slow


def _sync_all(urls: dict, rng) -> dict:
    results = sync_round(urls, "m", rng)
    assert all(r["state"] == "done" for r in results.values()), results
    return results


def test_late_joiner_starts_from_the_latest_merged_model_and_a_leaver_is_not_awaited(services):
    spec = small_spec(min_peers=2, quorum_wait_ms=600_000)  # nobody is ever given up by the clock here
    urls = {s: services.start(s) for s in ("site-a", "site-b")}
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "m", "spec": spec}).status_code == 200
    rng = np.random.default_rng(5)
    _sync_all(urls, rng)
    merged = _sync_all(urls, rng)["site-a"]["merged_sha256"]

    late = services.start("site-c")
    joined = httpx.post(f"{late}/v1/local/join", json={"task": "m", "spec": spec}).json()
    assert joined["latest_merged"] == {"round": 1, "sha256": merged, "node": joined["latest_merged"]["node"]}
    r = httpx.get(f"{late}/v1/local/latest", params={"task": "m"})
    assert r.status_code == 200 and serialization.sha256_hex(r.content) == merged, "starts from the swarm's model"
    urls["site-c"] = late
    _sync_all(urls, rng)
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    assert sorted(ledger.get_round("m", 2)["contributors"]) == ["site-a", "site-b", "site-c"]

    # site-c leaves: the next round closes as soon as the two others submit (no quorum wait).
    assert httpx.post(f"{late}/v1/local/checkin", params={"task": "m", "mode": "leave"}).status_code == 200
    del urls["site-c"]
    t0 = time.monotonic()
    _sync_all(urls, rng)
    assert time.monotonic() - t0 < 30
    assert sorted(ledger.get_round("m", 3)["contributors"]) == ["site-a", "site-b"]
    assert ledger.get_task("m")["nodes"]["site-c"]["status"] == "left"


def test_a_silent_site_is_given_up_after_the_quorum_wait_when_min_peers_hold(services):
    # site-c's training process is gone: it never submits. min_peers 2 still holds.
    spec = small_spec(min_peers=2, quorum_wait_ms=2000)
    urls = {s: services.start(s) for s in ("site-a", "site-b", "site-c")}
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "m", "spec": spec}).status_code == 200
    del urls["site-c"]
    t0 = time.monotonic()
    results = _sync_all(urls, np.random.default_rng(6))
    took = time.monotonic() - t0
    assert 2.0 <= took < 30, took
    assert {r["round"] for r in results.values()} == {0}
    rnd = EmbeddedLedger(services.ledger_path, identity="observer").get_round("m", 0)
    assert sorted(rnd["contributors"]) == ["site-a", "site-b"]
    assert "quorum wait passed without site-c" in services.log("site-a") + services.log("site-b")


def test_a_paused_site_is_given_up_then_rejoins_when_resumed(services):
    import os
    import signal

    spec = small_spec(min_peers=2, quorum_wait_ms=2000)
    urls = {s: services.start(s) for s in ("site-a", "site-b", "site-c")}
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "m", "spec": spec}).status_code == 200
    rng = np.random.default_rng(7)
    _sync_all(urls, rng)  # round 0 with everyone
    paused = services.procs["site-b"].pid
    os.kill(paused, signal.SIGSTOP)  # site-b's service freezes: unreachable, not dead
    try:
        others = {s: u for s, u in urls.items() if s != "site-b"}
        results = _sync_all(others, rng)
        assert {r["round"] for r in results.values()} == {1}
    finally:
        os.kill(paused, signal.SIGCONT)
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    assert sorted(ledger.get_round("m", 1)["contributors"]) == ["site-a", "site-c"]
    # Resumed, site-b takes part again from the next round on, with the swarm's model.
    results = _sync_all(urls, rng)
    assert {r["round"] for r in results.values()} == {2}
    assert sorted(ledger.get_round("m", 2)["contributors"]) == ["site-a", "site-b", "site-c"]


def test_when_min_peers_can_no_longer_be_met_the_wait_says_who_left_and_what_to_change(services):
    spec = small_spec(min_peers=3)
    urls = {s: services.start(s) for s in ("site-a", "site-b", "site-c")}
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "m", "spec": spec}).status_code == 200
    rng = np.random.default_rng(9)
    _sync_all(urls, rng)
    assert httpx.post(f"{urls['site-c']}/v1/local/checkin", params={"task": "m", "mode": "leave"}).status_code == 200
    blob = serialization.to_bytes(
        [rng.standard_normal(a.shape).astype(np.float32) for a in (np.zeros((4, 2)), np.zeros(2))]
    )
    r = httpx.post(f"{urls['site-a']}/v1/local/syncs", params={"task": "m", "weight": 1}, content=blob)
    assert r.status_code == 202, r.text
    sync_id, deadline, status = r.json()["sync_id"], time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{urls['site-a']}/v1/local/syncs/{sync_id}", params={"wait_s": 1}).json()
        if "cannot be met" in status["waiting_for"]:
            break
    what = status["waiting_for"]
    assert status["state"] == "running" and "min_peers 3 cannot be met" in what, status
    assert "(site-a, site-b) and site-c left" in what and "minPeers <= 2" in what
    assert "more nodes to join" not in what
