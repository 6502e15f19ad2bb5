"""A blob handed to ``serve_then_store`` is fetchable at once, from memory, then from the store, byte for byte.

In-process: a real service on a real embedded ledger behind FastAPI's test client; the store's write held
back to look into the window where the blob is only in memory.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():  # starlette suggests another httpx package; this one is pinned and works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from sn_service.blob_store import BlobStore
from sn_service.http.app import create_app
from sn_service.http.routers.peer import MEMORY_CHUNK_BYTES
from sn_service.ledger import EmbeddedLedger
from sn_service.peer_client import PeerClient
from sn_service.service import SwarmNetworkService


@pytest.fixture
def site(tmp_path):
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="embedded::site-a", create=True)
    peers = PeerClient(timeout_s=5)
    service = SwarmNetworkService(
        "site-a", ledger, BlobStore(tmp_path / "blobs"), peers, "http://127.0.0.1:9", sync_timeout_s=30
    )
    with TestClient(create_app(service)) as client:
        yield client, service
    service.shutdown()
    peers.close()
    ledger.close()


def _blob(size: int) -> memoryview:
    """A blob as masking makes one: a memoryview of a numpy buffer."""
    return memoryview(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))


@pytest.mark.parametrize("size", [0, 1, MEMORY_CHUNK_BYTES, 3 * MEMORY_CHUNK_BYTES + 5])
def test_a_blob_being_stored_is_served_from_memory_then_from_the_store(site, monkeypatch, size):
    client, service = site
    blob = _blob(size)
    sha = hashlib.sha256(blob).hexdigest()
    release = threading.Event()
    put = service.store.put

    def slow_put(data, sha256=None):
        assert release.wait(30)
        return put(data, sha256)

    monkeypatch.setattr(service.store, "put", slow_put)
    service.driver.serve_then_store(blob, sha)
    response = client.get(f"/v1/blobs/{sha}")
    assert not service.store.has(sha)  # not written yet: it came from memory
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == size and response.content == blob.tobytes()

    release.set()
    deadline = time.monotonic() + 30
    while service.driver.serving(sha) is not None:
        assert time.monotonic() < deadline, "the write never finished"
        time.sleep(0.01)
    assert service.store.has(sha)
    response = client.get(f"/v1/blobs/{sha}")
    assert response.status_code == 200 and response.content == blob.tobytes()


def test_a_blob_that_cannot_be_stored_is_logged_and_no_more_served(site, monkeypatch, caplog):
    client, service = site
    blob = _blob(1000)
    sha = hashlib.sha256(blob).hexdigest()

    def full(data, sha256=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.store, "put", full)
    with caplog.at_level(logging.ERROR):
        service.driver.serve_then_store(blob, sha)
        deadline = time.monotonic() + 30
        while service.driver.serving(sha) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert f"could not store blob {sha[:12]}" in caplog.text and "No space left" in caplog.text
    response = client.get(f"/v1/blobs/{sha}")
    assert response.status_code == 404 and "NO_SUCH_BLOB" in response.text
