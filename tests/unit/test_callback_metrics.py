"""SwarmCallback keeps the latest finite scalar metrics from Keras logs; ServiceClient sends them with a sync.

The real path (a Keras fit against a real service) is in
tests/integration/test_dashboard.py; here, the filtering and the header.
"""

from __future__ import annotations

import json
import logging
import os

import httpx
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("keras")

from sn_service.http.routers.local import parse_metrics
from swarm_keras import SwarmCallback
from swarm_keras.service_client import ServiceClient


def test_only_finite_scalars_with_valid_names_are_kept_and_the_latest_wins():
    cb = SwarmCallback(syncFrequency=2, minPeers=1)
    cb._remember_metrics(
        {
            "loss": 0.7,
            "accuracy": np.float32(0.5),
            "auc": np.array(0.25),
            "learning_rate": 1e-3,
            "steps": 4,
            "val_loss": float("nan"),
            "overflow": float("inf"),
            "flag": True,
            "name": "adam",
            "per_class": np.array([0.1, 0.2]),
            "has space": 1.0,
        }
    )
    assert cb._metrics == {"loss": 0.7, "accuracy": 0.5, "auc": 0.25, "learning_rate": 1e-3, "steps": 4.0}
    assert all(type(v) is float for v in cb._metrics.values())
    cb._remember_metrics({"loss": 0.6, "val_loss": 0.65})
    cb._remember_metrics(None)
    assert cb._metrics["loss"] == 0.6 and cb._metrics["val_loss"] == 0.65


def test_what_the_callback_keeps_always_passes_the_services_validation():
    cb = SwarmCallback(syncFrequency=2, minPeers=1)
    cb._remember_metrics({f"{i:02d}_" + "m" * 61: -1.2345678901234567e-300 for i in range(80)})
    assert len(cb._metrics) == 64, "at most 64 metrics are kept"
    text = json.dumps(cb._metrics, separators=(",", ":"), allow_nan=False)
    assert parse_metrics(text) == cb._metrics


def test_sync_sends_metrics_in_a_header_and_nothing_without_them():
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(202, json={"sync_id": "s1"})
        return httpx.Response(
            200,
            json={
                "sync_id": "s1",
                "task": "t",
                "state": "done",
                "round": 3,
                "merged_sha256": "0" * 64,
                "contributed": True,
                "task_status": "open",
            },
        )

    client = ServiceClient("http://127.0.0.1:1", logging.getLogger("t"))
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    assert client.sync("t", b"blob", 2, 10, metrics={"loss": 0.5, "val_accuracy": 0.75})["round"] == 3
    post = seen[0]
    assert post.url.params["task"] == "t" and post.content == b"blob"
    assert json.loads(post.headers["x-swarm-metrics"]) == {"loss": 0.5, "val_accuracy": 0.75}
    client.sync("t", b"blob", 2, 10)
    client.sync("t", b"blob", 2, 10, metrics={})
    assert all("x-swarm-metrics" not in r.headers for r in seen[2:] if r.method == "POST")
    client.close()


def test_join_tells_the_service_the_training_process_pid():
    # So that a service on this host can leave the task for a trainer that crashed (test_trainer_crash.py).
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"task": "t", "node": "a", "status": "open", "current_round": 0})

    client = ServiceClient("http://127.0.0.1:1", logging.getLogger("t"))
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    client.join("t", {"layout": "f32[1]"})
    assert json.loads(seen[0].content)["trainer_pid"] == os.getpid()


def test_a_download_retries_a_service_that_is_not_answering_yet_then_names_it(monkeypatch):
    # The merged model's download (the fallback when the service's store is not readable here) retries a
    # refused or dropped connection like every other request, and gives up after connect_timeout_s.
    from swarm_wire import serialization

    monkeypatch.setattr("time.sleep", lambda s: None)
    model = [np.arange(6, dtype=np.float32).reshape(3, 2)]
    blob = serialization.to_bytes(model)
    sha = serialization.sha256_hex(blob)
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if len(calls) == 2:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return httpx.Response(200, content=blob)

    client = ServiceClient("http://127.0.0.1:1", logging.getLogger("t"), connect_timeout_s=30)
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(answer))
    arrays = client.blob(sha, serialization.layout_of(model))
    np.testing.assert_array_equal(arrays[0], model[0])
    assert calls == [f"/v1/local/blobs/{sha}"] * 3

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    gone = ServiceClient("http://127.0.0.1:1", logging.getLogger("t"), connect_timeout_s=0)
    gone._http = httpx.Client(base_url=gone.url, transport=httpx.MockTransport(refuse))
    with pytest.raises(Exception, match="connection refused") as err:
        gone.blob(sha, serialization.layout_of(model))
    assert getattr(err.value, "code", "") == "UNREACHABLE"


@pytest.mark.parametrize("read_whole", [True, False])  # read into memory once, or checked and memory-mapped
def test_a_merged_model_file_is_hashed_and_checked_before_its_arrays_are_given(tmp_path, monkeypatch, read_whole):
    from swarm_keras import service_client
    from swarm_wire import serialization

    if not read_whole:
        monkeypatch.setattr(service_client, "READ_WHOLE_BYTES", 0)
    model = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1.5, -2.0], np.float32)]
    layout = serialization.layout_of(model)
    path = tmp_path / "merged"
    blob = serialization.to_bytes(model)
    path.write_bytes(blob)
    arrays = ServiceClient._map_checked(path, serialization.sha256_hex(blob), layout)
    for got, want in zip(arrays, model, strict=True):
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable  # the file's bytes, never changed through them
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    path.write_bytes(tampered)
    with pytest.raises(service_client.SwarmServiceError, match="does not match its hash"):
        ServiceClient._map_checked(path, serialization.sha256_hex(blob), layout)
    bad = serialization.to_bytes([model[0], np.array([np.nan, 0], np.float32)])
    path.write_bytes(bad)  # its own hash, but not finite: refused all the same
    with pytest.raises(serialization.WeightsFormatError, match="NaN or infinite"):
        ServiceClient._map_checked(path, serialization.sha256_hex(bad), layout)
