"""A swarm on IPv6 addresses: ``--host ::1`` gives bracketed URLs on the ledger and the sites merge.

Real services on the IPv6 loopback, embedded ledger. Skipped where the machine has no IPv6 loopback.
"""

from __future__ import annotations

import socket

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger

from .conftest import small_spec, sync_round

pytestmark = pytest.mark.slow


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_sites_on_ipv6_addresses_write_dialable_endpoints_and_merge(services):
    urls = {s: services.start(s, "--host", "::1") for s in ("site-a", "site-b")}
    assert all(url.startswith("http://[::1]:") for url in urls.values()), urls
    for url in urls.values():
        r = httpx.post(f"{url}/v1/local/join", json={"task": "t", "spec": small_spec(min_peers=2)}, timeout=30)
        assert r.status_code == 200, r.text
    rng = np.random.default_rng(11)
    for _ in range(2):  # round 1 fetches blobs across sites by the endpoints on the ledger
        results = sync_round(urls, "t", rng)
        assert {r["state"] for r in results.values()} == {"done"}, results
    task = EmbeddedLedger(services.ledger_path, identity="observer").get_task("t")
    endpoints = {n: info["endpoint"] for n, info in task["nodes"].items()}
    assert endpoints == {s: url for s, url in urls.items()}, endpoints
    assert task["latest_merged"]["round"] == 1
