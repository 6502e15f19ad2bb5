"""A round's leader hands the merged model to another contributor before publishing it.

A merged model named on the ledger must be had from someone other than its leader: published while
only the leader held it, a leader cut off just after publishing left every site waiting for it (seen
in test_multihost_fabric.py). Real services on loopback, embedded ledger.
"""

from __future__ import annotations

import hashlib
import os
import signal

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from swarm_wire import serialization

from .conftest import SMALL_LAYOUT_ARRAYS, small_spec, sync_round

pytestmark = pytest.mark.slow

LAYOUT = small_spec()["layout"]


def _join(urls: dict[str, str], **spec) -> None:
    for url in urls.values():
        r = httpx.post(f"{url}/v1/local/join", json={"task": "t", "spec": small_spec(**spec)}, timeout=30)
        assert r.status_code == 200, r.text


def _hand_over(url: str, sha: str, body: bytes, round_no: int = 0, task: str = "t") -> httpx.Response:
    return httpx.post(f"{url}/v1/merged/{sha}", params={"task": task, "round": round_no}, content=body, timeout=30)


def test_the_leader_hands_the_merged_model_over_and_a_follower_serves_it_when_the_leader_is_gone(services):
    urls = {s: services.start(s) for s in ("site-a", "site-b", "site-c")}
    _join(urls)
    rng = np.random.default_rng(3)
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    for round_no in range(3):
        results = sync_round(urls, "t", rng)
        assert {r["state"] for r in results.values()} == {"done"}, results
        rnd = ledger.get_round("t", round_no)
        leader = rnd["published_by"]
        # The leader handed its merge over before publishing: the part is in its sync's time breakdown.
        assert "lead: hand over" in results[leader]["timings_ms"], results[leader]
    # The publisher of the last round goes away for good; a site that never held that round's model (a
    # newcomer) still gets it, from the sites that took it over.
    merged = rnd["merged_sha256"]
    services.stop(leader, signal.SIGKILL)
    urls.pop(leader)
    late = services.start("site-d")
    r = httpx.post(f"{late}/v1/local/join", json={"task": "t", "spec": small_spec()}, timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.get(f"{late}/v1/local/latest", params={"task": "t"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["x-swarm-sha256"] == merged
    held = [s for s, u in urls.items() if httpx.get(f"{u}/v1/blobs/{merged}", timeout=10).status_code == 200]
    assert held, "no site but the gone leader held the published model"


def test_hand_overs_that_the_ledger_does_not_back_are_refused_and_change_nothing(services):
    urls = {s: services.start(s) for s in ("site-a", "site-b")}
    _join(urls, min_peers=2)
    a = urls["site-a"]
    model = [np.ones(x.shape, np.float32) for x in SMALL_LAYOUT_ARRAYS]
    body = serialization.to_bytes(model)
    sha = hashlib.sha256(body).hexdigest()

    def refused(r: httpx.Response, status: int, code: str) -> None:
        assert r.status_code == status, (code, r.status_code, r.text)
        assert r.json()["detail"]["error"] == code, r.text
        assert r.json()["detail"]["message"]

    # Round 0 is open: nobody leads it yet (refused after a moment's re-reading of the ledger).
    refused(_hand_over(a, sha, body), 409, "ROUND_NOT_CLOSED")
    refused(_hand_over(a, sha, body, round_no=7), 404, "ROUND_NOT_FOUND")
    refused(_hand_over(a, sha, body, task="never-joined"), 404, "NOT_JOINED")
    refused(_hand_over(a, "not-a-hash", body), 400, "INVALID_ARGUMENT")
    big = serialization.max_blob_bytes(LAYOUT)
    refused(_hand_over(a, sha, b"\0" * (big + 1)), 413, "TOO_LARGE")
    assert not any((services.root / "site-a").rglob(sha)), "a refused hand-over left a blob"

    # After a round: only its merged model, with its own bytes, is taken.
    results = sync_round(urls, "t", np.random.default_rng(5))
    merged = results["site-a"]["merged_sha256"]
    refused(_hand_over(a, sha, body), 409, "NOT_THE_MERGED_MODEL")
    # Already held: answered at once, the body not read.
    assert _hand_over(a, merged, b"whatever").status_code == 204
    # A site that lacks the merged model (its file deleted) refuses other bytes under its name ...
    path = next((services.root / "site-a").rglob(merged))
    os.unlink(path)
    refused(_hand_over(a, merged, body), 400, "HASH_MISMATCH")
    # ... and takes the real ones.
    real = httpx.get(f"{urls['site-b']}/v1/blobs/{merged}", timeout=10).content
    assert _hand_over(a, merged, real).status_code == 204
    assert httpx.get(f"{a}/v1/blobs/{merged}", timeout=10).content == real
    # The round goes on.
    results = sync_round(urls, "t", np.random.default_rng(6))
    assert {r["state"] for r in results.values()} == {"done"} and {r["round"] for r in results.values()} == {1}
