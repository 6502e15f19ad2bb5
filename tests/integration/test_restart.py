"""A site's service killed and restarted recovers from the ledger and its blob store; nothing merged is lost."""

from __future__ import annotations

import signal

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from swarm_wire import serialization

from .conftest import SMALL_LAYOUT_ARRAYS, small_spec, wait_sync

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


def _round(urls: dict, rng) -> dict:
    jobs = {}
    for s, url in urls.items():
        blob = serialization.to_bytes([rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS])
        r = httpx.post(f"{url}/v1/local/syncs", params={"task": "rs", "weight": 1}, content=blob, timeout=30)
        assert r.status_code == 202, r.text
        jobs[s] = r.json()["sync_id"]
    results = {s: wait_sync(urls[s], j) for s, j in jobs.items()}
    assert all(r["state"] == "done" for r in results.values()), results
    return results


def test_restarted_service_recovers_and_rejoins(services):
    urls = {s: services.start(s) for s in SITES}
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "rs", "spec": small_spec()}).status_code == 200
    rng = np.random.default_rng(3)
    _round(urls, rng)
    merged_1 = _round(urls, rng)["site-b"]["merged_sha256"]

    port = int(urls["site-b"].rsplit(":", 1)[1])
    services.stop("site-b", signal.SIGKILL)
    services.start("site-b", port=port)
    assert "recovered task rs: round 2 open, latest merged round 1" in services.log("site-b")

    # Nothing merged is lost: the latest merged model is served again, from the site's own store.
    r = httpx.get(f"{urls['site-b']}/v1/local/latest", params={"task": "rs"})
    assert r.status_code == 200 and r.headers["x-swarm-round"] == "1"
    assert serialization.sha256_hex(r.content) == merged_1
    # And the swarm goes on with all three.
    results = _round(urls, rng)
    assert {r["round"] for r in results.values()} == {2}
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    assert sorted(ledger.get_round("rs", 2)["contributors"]) == list(SITES)
    assert ledger.get_task("rs")["nodes"]["site-b"]["status"] == "active"


def test_restart_after_leaving_does_not_rejoin(services):
    url = services.start("site-a")
    assert httpx.post(f"{url}/v1/local/join", json={"task": "rs", "spec": small_spec(min_peers=1)}).status_code == 200
    assert httpx.post(f"{url}/v1/local/checkin", params={"task": "rs", "mode": "leave"}).status_code == 200
    port = int(url.rsplit(":", 1)[1])
    services.stop("site-a", signal.SIGKILL)
    services.start("site-a", port=port)
    assert "recovered task" not in services.log("site-a")
    assert httpx.get(f"{url}/v1/status").json()["tasks"] == {}
