"""Training metrics on syncs are validated; the dashboard's JSON has the ledger, the syncs and every site's metrics.

In-process: a real service on a real embedded ledger behind FastAPI's test client.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():  # starlette suggests another httpx package; this one is pinned and works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from sn_service.blob_store import BlobStore
from sn_service.http.app import create_app
from sn_service.http.routers.dashboard import checked_history
from sn_service.http.routers.local import MetricsError, parse_metrics
from sn_service.ledger import EmbeddedLedger
from sn_service.peer_client import PeerClient
from sn_service.service import SwarmNetworkService
from swarm_wire import serialization

ARRAYS = [np.zeros((4, 2), np.float32), np.zeros(2, np.float32)]


def _spec(min_peers: int) -> dict:
    layout = serialization.layout_of(ARRAYS)
    return {
        "fingerprint": serialization.fingerprint(layout),
        "layout": layout,
        "min_peers": min_peers,
        "merge_method": "mean",
        "quorum_wait_ms": 0,
        "leader_timeout_ms": 10_000,
        "max_rounds": 0,
    }


@pytest.fixture
def site_a(tmp_path):
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="embedded::site-a")
    peers = PeerClient(timeout_s=5)
    service = SwarmNetworkService(
        "site-a", ledger, BlobStore(tmp_path / "blobs"), peers, "http://127.0.0.1:9", sync_timeout_s=30
    )
    with TestClient(create_app(service)) as client:
        yield client, service, tmp_path
    service.shutdown()
    peers.close()
    ledger.close()


def _sync(client: TestClient, task: str, value: float, metrics: dict | None) -> dict:
    blob = serialization.to_bytes([np.full_like(a, value) for a in ARRAYS])
    headers = {} if metrics is None else {"X-Swarm-Metrics": json.dumps(metrics)}
    r = client.post("/v1/local/syncs", params={"task": task, "weight": 1}, content=blob, headers=headers)
    assert r.status_code == 202, r.text
    status = client.get(f"/v1/local/syncs/{r.json()['sync_id']}", params={"wait_s": 20}).json()
    assert status["state"] == "done", status
    return status


def test_parse_metrics_accepts_small_objects_of_finite_numbers():
    assert parse_metrics('{"loss": 0.25, "val_accuracy": 1, "auc/roc": -3e-5}') == {
        "loss": 0.25,
        "val_accuracy": 1.0,
        "auc/roc": -3e-5,
    }
    assert parse_metrics("{}") == {}


@pytest.mark.parametrize(
    "text, words",
    [
        ("not json", ["not JSON"]),
        ("[1, 2]", ["JSON object", "list"]),
        ('{"loss": "low"}', ["'loss'", '"low"', "not a number"]),
        ('{"loss": true}', ["'loss'", "true"]),
        ('{"loss": null}', ["'loss'", "null"]),
        ('{"loss": NaN}', ["NaN", "not a finite number"]),
        ('{"loss": -Infinity}', ["-Infinity"]),
        ('{"loss": 1e999}', ["'loss'", "not a finite number"]),
        ('{"big": ' + "9" * 400 + "}", ["'big'", "not a finite number"]),
        ('{"has space": 1}', ["'has space'", "metric name"]),
        ('{"": 1}', ["metric name ''"]),
        (json.dumps({f"m{i}": i for i in range(65)}), ["65 metrics", "at most 64"]),
        (json.dumps({"loss": 1, "pad": "x" * 9000}), ["characters", "at most 8192"]),
    ],
)
def test_parse_metrics_names_what_is_wrong(text, words):
    with pytest.raises(MetricsError) as err:
        parse_metrics(text)
    for word in words:
        assert word in str(err.value)


def test_a_sync_with_bad_metrics_is_refused_naming_the_header_and_the_metric(site_a):
    client, service, _ = site_a
    assert client.post("/v1/local/join", json={"task": "t", "spec": _spec(1)}).status_code == 200
    blob = serialization.to_bytes(ARRAYS)
    r = client.post(
        "/v1/local/syncs",
        params={"task": "t", "weight": 1},
        content=blob,
        headers={"X-Swarm-Metrics": '{"loss": "high"}'},
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail["error"] == "INVALID_METRICS"
    assert "X-Swarm-Metrics header" in detail["message"] and "'loss'" in detail["message"]
    assert not service.jobs, "a refused sync starts nothing"


def test_metrics_are_kept_per_round_and_served_to_peers_and_the_dashboard(site_a):
    client, _, tmp_path = site_a
    assert client.post("/v1/local/join", json={"task": "t", "spec": _spec(1)}).status_code == 200
    assert _sync(client, "t", 0.0, None)["round"] == 0  # train begin: no logs yet
    assert _sync(client, "t", 1.0, {"loss": 0.9, "accuracy": 0.5})["round"] == 1
    assert _sync(client, "t", 2.0, {"loss": 0.4, "accuracy": 0.75, "val_loss": 0.5})["round"] == 2

    history = client.get("/v1/metrics-history/t").json()
    assert history["site"] == "site-a" and history["task"] == "t"
    assert [(h["round"], h["metrics"]) for h in history["rounds"]] == [
        (1, {"loss": 0.9, "accuracy": 0.5}),
        (2, {"loss": 0.4, "accuracy": 0.75, "val_loss": 0.5}),
    ]
    assert all(isinstance(h["ts_ms"], int) for h in history["rounds"])
    assert [h["round"] for h in client.get("/v1/metrics-history/t", params={"last": 1}).json()["rounds"]] == [2]
    assert client.get("/v1/metrics-history/other").json()["detail"]["error"] == "NOT_JOINED"
    assert client.get("/v1/metrics-history/bad name").status_code == 400

    # A second site registers with an endpoint where nothing answers: it shows as unreachable, quickly.
    site_b = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="embedded::site-b")
    site_b.register("t", "site-b", "http://127.0.0.1:9", _spec(1)["fingerprint"])
    t0 = time.monotonic()
    r = client.get("/v1/dashboard/t", params={"recent": 2})
    assert time.monotonic() - t0 < 5
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) == {"site", "joined", "now_ms", "task", "round", "close", "recent", "syncs", "metrics"}
    assert d["site"] == "site-a" and d["joined"] is True
    assert d["task"]["task"] == "t" and d["task"]["current_round"] == 3
    assert "layout" not in d["task"]["spec"] and d["task"]["spec"]["tensors"] == 2
    assert sorted(d["task"]["nodes"]) == ["site-a", "site-b"]
    assert d["round"]["round"] == 3 and d["round"]["status"] == "open"
    assert d["close"] == {"closable": False, "why": d["close"]["why"]} and "min_peers" in d["close"]["why"]
    assert [r["round"] for r in d["recent"]] == [2, 1], "the last finished rounds, newest first"
    assert all(r["merged_sha256"] and r["published_by"] == "site-a" for r in d["recent"])
    assert d["syncs"] == []
    assert d["metrics"]["site-a"]["reachable"] is True
    assert [h["metrics"]["loss"] for h in d["metrics"]["site-a"]["rounds"]] == [0.9, 0.4]
    assert d["metrics"]["site-b"]["reachable"] is False
    assert "127.0.0.1:9" in d["metrics"]["site-b"]["error"] and d["metrics"]["site-b"]["rounds"] == []
    site_b.close()

    assert client.get("/v1/dashboard/nope").json()["detail"]["error"] == "TASK_NOT_FOUND"
    assert client.get("/v1/dashboard/bad name").status_code == 400


def test_dashboard_page_and_assets_are_served(site_a):
    client, _, _ = site_a
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="dashboard/dashboard.js"' in page.text and 'href="dashboard/dashboard.css"' in page.text
    js = client.get("/dashboard/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "v1/dashboard/" in js.text
    assert client.get("/dashboard/dashboard.css").headers["content-type"].startswith("text/css")
    assert client.get("/dashboard/index.py").status_code == 404
    assert client.get("/dashboard/..%2Fservice.py").status_code == 404


def test_a_peer_history_is_kept_only_in_the_served_shape():
    good = {"rounds": [{"round": 3, "metrics": {"loss": 0.5, "note": "x", "flag": True, "n": 2}, "ts_ms": 7}]}
    assert checked_history(good) == [{"round": 3, "metrics": {"loss": 0.5, "n": 2.0}, "ts_ms": 7}]
    for bad in ([], {"rounds": {}}, {"rounds": [{"round": "3", "metrics": {}}]}, {"rounds": [{"round": 1}]}):
        with pytest.raises(ValueError):
            checked_history(bad)
