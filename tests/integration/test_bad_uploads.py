"""Malformed uploads get a 4xx JSON error naming the problem; the round goes on."""

from __future__ import annotations

import struct

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from swarm_wire import serialization

from .conftest import SMALL_LAYOUT_ARRAYS, small_spec, wait_sync

pytestmark = pytest.mark.slow


def _post(url: str, body: bytes, task: str = "t", weight: object = 1, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/local/syncs",
        params={"task": task, "weight": weight},
        content=body,
        headers=headers or {"content-type": "application/octet-stream"},
        timeout=30,
    )


def test_bad_uploads_are_refused_and_the_round_completes(services):
    urls = {s: services.start(s) for s in ("site-a", "site-b", "site-c")}
    for url in urls.values():
        r = httpx.post(f"{url}/v1/local/join", json={"task": "t", "spec": small_spec()}, timeout=30)
        assert r.status_code == 200, r.text
    a = urls["site-a"]
    big = serialization.max_blob_bytes(small_spec()["layout"]) + 1
    bad_cases = [
        (b"definitely not safetensors", 400, "NOT_SAFETENSORS"),
        (struct.pack("<Q", 5) + b"{bad}", 400, "NOT_SAFETENSORS"),
        (serialization.to_bytes([np.zeros((4, 3), np.float32), np.zeros(3, np.float32)]), 400, "WRONG_SHAPE"),
        (serialization.to_bytes([np.zeros((4, 2), np.float16), np.zeros(2, np.float32)]), 400, "WRONG_DTYPE"),
        (serialization.to_bytes([np.zeros((4, 2), np.float32)]), 400, "WRONG_TENSORS"),
        (serialization.to_bytes([np.full((4, 2), np.nan, np.float32), np.zeros(2, np.float32)]), 400, "NOT_FINITE"),
        (serialization.to_bytes([np.zeros((4, 2), np.float32), np.array([np.inf, 0], np.float32)]), 400, "NOT_FINITE"),
        (b"\0" * big, 413, "TOO_LARGE"),
    ]
    for body, status, code in bad_cases:
        r = _post(a, body)
        assert r.status_code == status, (code, r.status_code, r.text)
        detail = r.json()["detail"]
        assert detail["error"] == code
        assert detail["message"], "the error must say what is wrong"
    # Wrong types and missing parameters: 422 with the offending field named.
    r = _post(a, serialization.to_bytes(SMALL_LAYOUT_ARRAYS), weight="heavy")
    assert r.status_code == 422 and "weight" in r.json()["detail"]["message"]
    r = _post(a, serialization.to_bytes(SMALL_LAYOUT_ARRAYS), task="no such task!")
    assert r.status_code == 422 and "task" in r.json()["detail"]["message"]
    r = _post(a, serialization.to_bytes(SMALL_LAYOUT_ARRAYS), task="never-joined")
    assert r.status_code == 409 and r.json()["detail"]["error"] == "NOT_JOINED"
    r = httpx.post(f"{a}/v1/local/join", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = httpx.post(f"{a}/v1/local/join", json={"task": "t", "spec": {**small_spec(), "min_peers": "3"}})
    assert r.status_code == 422 and "min_peers" in r.json()["detail"]["message"]
    r = httpx.get(f"{a}/v1/blobs/{'0' * 64}")
    assert r.status_code == 404 and r.json()["detail"]["error"] == "NO_SUCH_BLOB"
    r = httpx.get(f"{a}/v1/blobs/not-a-hash")
    assert r.status_code == 400

    # Nothing reached the ledger ...
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    assert ledger.get_round("t", 0)["submissions"] == {}
    # ... and two rounds still complete with the three honest sites.
    rng = np.random.default_rng(1)
    for round_no in (0, 1):
        models = {s: [rng.standard_normal(a_.shape).astype(np.float32) for a_ in SMALL_LAYOUT_ARRAYS] for s in urls}
        weights = {"site-a": 1, "site-b": 2, "site-c": 3}
        jobs = {}
        for site, url in urls.items():
            r = _post(url, serialization.to_bytes(models[site]), weight=weights[site])
            assert r.status_code == 202, r.text
            jobs[site] = r.json()["sync_id"]
        results = {s: wait_sync(urls[s], j) for s, j in jobs.items()}
        assert all(r["state"] == "done" and r["round"] == round_no for r in results.values()), results
        assert len({r["merged_sha256"] for r in results.values()}) == 1
        merged = serialization.from_bytes(
            httpx.get(f"{a}/v1/local/blobs/{results['site-a']['merged_sha256']}").content, small_spec()["layout"]
        )
        if round_no == 1:
            for i in range(2):
                expected = np.average(
                    np.stack([models[s][i] for s in urls]).astype(np.float64),
                    axis=0,
                    weights=[weights[s] for s in urls],
                )
                np.testing.assert_allclose(merged[i], expected, rtol=1e-6, atol=1e-6)
    status = httpx.get(f"{a}/v1/status").json()
    assert status["tasks"]["t"]["current_round"] == 2
    _check_metrics(a)


def _check_metrics(url: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    assert values[("swarm_rejected_blobs_total", (("reason", "not_safetensors"),))] == 2
    assert values[("swarm_rejected_blobs_total", (("reason", "not_finite"),))] == 2
    assert values[("swarm_rejected_blobs_total", (("reason", "too_large"),))] == 1
    assert values[("swarm_syncs_total", (("outcome", "done"),))] == 2
    assert values[("swarm_rounds_completed_total", ())] == 2
    assert values[("swarm_sync_seconds_count", ())] == 2
    assert values[("swarm_bytes_received_total", ())] > 0
    assert values[("swarm_bytes_sent_total", ())] > 0  # the merged blobs fetched by this test and by peers
