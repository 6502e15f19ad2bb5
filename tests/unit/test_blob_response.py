"""A blob goes out byte for byte in 4 MiB reads, whatever its size against the read size."""

from __future__ import annotations

import os

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sn_service.http.blob_response import BlobResponse


@pytest.mark.parametrize("size", [0, 1, (4 << 20) - 1, 4 << 20, 3 * (4 << 20) + 5])
def test_a_blob_is_sent_whole_across_read_boundaries(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    app = FastAPI()
    app.get("/blob")(lambda: BlobResponse(path, media_type="application/octet-stream"))
    response = TestClient(app).get("/blob")
    assert response.status_code == 200
    assert response.content == data
    assert int(response.headers["content-length"]) == size
    assert BlobResponse.chunk_size == 4 << 20
