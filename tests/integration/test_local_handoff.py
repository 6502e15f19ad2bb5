"""Weights handed between the callback and its own service as files, wake-ups, and binding ports."""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from swarm_keras.service_client import ServiceClient
from swarm_wire import serialization

from .conftest import SMALL_LAYOUT_ARRAYS, run_swarm_sn, small_spec, sync_round, wait_sync

pytestmark = pytest.mark.slow


def _weights(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return serialization.to_bytes([rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS])


def test_weights_go_through_the_inbox_and_come_back_from_the_store(services):
    a, b = services.start("site-a"), services.start("site-b")
    clients = {}
    for site, url in (("site-a", a), ("site-b", b)):
        clients[site] = ServiceClient(url, logging.getLogger(site))
        joined = clients[site].join("t", small_spec(min_peers=2))
        assert Path(joined["local_inbox"]).is_dir() and Path(joined["local_store"]).is_dir()
        assert clients[site].inbox is not None and clients[site].store is not None
    import threading

    results = {}

    def run(site: str, seed: int) -> None:
        results[site] = clients[site].sync("t", _weights(seed), 1, timeout_s=60)

    threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert {r["state"] for r in results.values()} == {"done"}, results
    merged = results["site-a"]["merged_sha256"]
    # The service took each file (nothing left in the inboxes), and the merged model is read from the store.
    for site in clients:
        inbox = clients[site].inbox
        assert inbox is not None and not [p for p in inbox.iterdir() if not p.name.startswith(".")]
        arrays = clients[site].blob(merged, serialization.layout_of(SMALL_LAYOUT_ARRAYS))
        assert serialization.sha256_hex(serialization.to_bytes(arrays)) == merged
    # Round 0 aligns on the leader's weights: exactly the weights one site handed over.
    assert merged in {serialization.sha256_hex(_weights(0)), serialization.sha256_hex(_weights(1))}


def test_the_next_weights_are_written_over_an_inbox_file_the_service_read(services):
    # Weights of 2 MiB: big enough for the service to keep the file it read (swarm_wire.spare_files).
    model = [np.zeros((512, 1024), np.float32), np.zeros(3, np.float32)]
    layout = serialization.layout_of(model)
    spec = small_spec(min_peers=1) | {"layout": layout, "fingerprint": serialization.fingerprint(layout)}
    client = ServiceClient(services.start("site-a"), logging.getLogger("site-a"))
    client.join("t", spec)
    rng = np.random.default_rng(7)
    for i in range(3):
        arrays = [rng.standard_normal(a.shape).astype(np.float32) for a in model]
        status = client.sync("t", arrays, 1, timeout_s=60)
        # One site: its weights are the round's model, bit for bit, whatever file they were written over.
        assert status["merged_sha256"] == serialization.sha256_hex(serialization.to_bytes(arrays)), i
        back = client.blob(status["merged_sha256"], layout)
        assert all(np.array_equal(x, y) for x, y in zip(back, arrays, strict=True))
    assert client.inbox_spares is not None and client.inbox_spares.reused == 2, "the 2nd and 3rd went over a spare"
    assert client.inbox is not None and not [p for p in client.inbox.iterdir() if not p.name.startswith(".")]


def test_a_client_whose_file_the_service_cannot_see_uploads_instead(services, tmp_path):
    url = services.start("site-a")
    client = ServiceClient(url, logging.getLogger("site-a"))
    client.join("t", small_spec(min_peers=1))
    elsewhere = tmp_path / "not-the-inbox"  # as if the trainer saw another file system
    elsewhere.mkdir()
    client.inbox = elsewhere
    status = client.sync("t", _weights(0), 1, timeout_s=60)
    assert status["state"] == "done" and client.inbox is None, "it fell back to uploading, for good"
    assert status["merged_sha256"] == serialization.sha256_hex(_weights(0))


def test_only_plain_files_named_like_weights_in_the_inbox_are_taken(services, tmp_path):
    url = services.start("site-a")
    joined = httpx.post(f"{url}/v1/local/join", json={"task": "t", "spec": small_spec(min_peers=1)}, timeout=30)
    inbox = Path(joined.json()["local_inbox"])
    assert oct(inbox.stat().st_mode & 0o777) == "0o700"
    secret = tmp_path / "secret.txt"
    secret.write_text("not weights")
    link = f"{uuid.uuid4().hex}.safetensors"
    (inbox / link).symlink_to(secret)
    big = f"{uuid.uuid4().hex}.safetensors"
    (inbox / big).write_bytes(b"\0" * (serialization.max_blob_bytes(small_spec()["layout"]) + 1))
    bad = f"{uuid.uuid4().hex}.safetensors"
    (inbox / bad).write_bytes(b"not safetensors")
    cases = {
        "../secret.txt": "is not a name like",
        "a/b.safetensors": "is not a name like",
        link: "cannot open",
        big: "this task's model allows",
        f"{uuid.uuid4().hex}.safetensors": "no file",
    }
    for name, why in cases.items():
        r = httpx.post(f"{url}/v1/local/syncs", params={"task": "t", "weight": 1, "blob_file": name}, timeout=30)
        assert r.status_code == 400 and r.json()["detail"]["error"] == "BAD_BLOB_FILE", (name, r.text)
        assert why in r.json()["detail"]["message"], (name, r.text)
    r = httpx.post(f"{url}/v1/local/syncs", params={"task": "t", "weight": 1, "blob_file": bad}, timeout=30)
    assert r.status_code == 400 and r.json()["detail"]["error"] == "NOT_SAFETENSORS"
    assert secret.read_text() == "not weights", "the link's target is untouched"
    assert not (inbox / big).exists() and not (inbox / bad).exists(), "files read are deleted"
    # A good one goes through.
    good = f"{uuid.uuid4().hex}.safetensors"
    (inbox / good).write_bytes(_weights(3))
    r = httpx.post(f"{url}/v1/local/syncs", params={"task": "t", "weight": 1, "blob_file": good}, timeout=30)
    assert r.status_code == 202, r.text
    assert wait_sync(url, r.json()["sync_id"])["merged_sha256"] == serialization.sha256_hex(_weights(3))


def test_wake_ups_are_accepted_and_rounds_merge_with_them(services):
    a, b = services.start("site-a"), services.start("site-b")
    for url in (a, b):
        httpx.post(f"{url}/v1/local/join", json={"task": "t", "spec": small_spec(min_peers=2)}, timeout=30)
    assert httpx.post(f"{a}/v1/notify", params={"task": "t", "round": 0}, timeout=5).status_code == 204
    assert httpx.post(f"{a}/v1/notify", params={"task": "../x", "round": 0}, timeout=5).status_code == 422
    for seed in range(3):  # with wake-ups flying between the two
        done = sync_round({"site-a": a, "site-b": b}, "t", np.random.default_rng(seed))
        assert {s["state"] for s in done.values()} == {"done"}


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_swarm_sn(
            "site-a", tmp_path / "a", "--ledger", "embedded", "--ledger-path", str(tmp_path / "l.sqlite"), port=port
        )
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1, port {port}" in proc.stderr and "Address already in use" in proc.stderr
