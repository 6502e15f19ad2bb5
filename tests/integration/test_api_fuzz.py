"""Every endpoint of the service, fuzzed from its own OpenAPI schema: no input gets a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from sn_service.blob_store import BlobStore  # noqa: E402
from sn_service.http.app import create_app  # noqa: E402
from sn_service.ledger import EmbeddedLedger  # noqa: E402
from sn_service.peer_client import PeerClient  # noqa: E402
from sn_service.service import SwarmNetworkService  # noqa: E402

from .conftest import small_spec  # noqa: E402

_root = Path(tempfile.mkdtemp(prefix="swarm-fuzz-"))
_service = SwarmNetworkService(
    "site-a",
    EmbeddedLedger(_root / "ledger.sqlite", identity="embedded::site-a"),
    BlobStore(_root / "blobs"),
    PeerClient(timeout_s=1.0),
    "http://127.0.0.1:9",
    sync_timeout_s=2.0,
)
app = create_app(_service)
# A joined task, so that the fuzzer reaches past "join first" into the real handlers.
assert TestClient(app).post("/v1/local/join", json={"task": "t", "spec": small_spec(min_peers=1)}).status_code == 200
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
