"""Blobs travel only over mutual TLS between registered sites."""

from __future__ import annotations

import ssl

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from sn_service.tls.identity import IdentityError, create_ca, issue_site
from swarm_wire import serialization

from .conftest import small_spec, sync_round

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


def test_rounds_run_over_mtls_and_strangers_get_nothing(services, tmp_path):
    create_ca(tmp_path / "ca")
    tls = {s: issue_site(tmp_path / "ca", s, tmp_path / "id" / s) for s in SITES}
    stranger = issue_site(tmp_path / "ca", "site-x", tmp_path / "id" / "site-x")  # right CA, not registered
    create_ca(tmp_path / "other-ca", name="other")
    rogue = issue_site(tmp_path / "other-ca", "site-b", tmp_path / "id" / "rogue")  # a copy of site-b's name
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        issue_site(tmp_path / "ca", "site-a", tmp_path / "id" / "site-a")

    urls = {s: services.start(s, "--tls-dir", str(tmp_path / "id" / s), "--peer-port", "0") for s in SITES}
    for url in urls.values():
        r = httpx.post(f"{url}/v1/local/join", json={"task": "tls", "spec": small_spec()}, timeout=30)
        assert r.status_code == 200, r.text
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    nodes = ledger.get_task("tls")["nodes"]
    assert nodes["site-a"]["identity"] == "x509::CN=site-a,O=swarm"
    assert nodes["site-a"]["endpoint"] == f"https://127.0.0.1:{services.peer_ports['site-a']}"

    rng = np.random.default_rng(0)
    for round_no in (0, 1):  # round 1 fetches every contribution from its site over mTLS
        results = sync_round(urls, "tls", rng)
        assert all(r["state"] == "done" and r["round"] == round_no for r in results.values()), results
    merged = results["site-a"]["merged_sha256"]
    holder = ledger.get_round("tls", 1)["published_by"]
    peer_url = f"https://127.0.0.1:{services.peer_ports[holder]}/v1/blobs/{merged}"
    ca = str(tls[holder].ca)

    def get(cert=None):
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(*cert)
        with httpx.Client(verify=context, timeout=10) as client:
            return client.get(peer_url)

    other = next(s for s in SITES if s != holder)
    ok = get((str(tls[other].cert), str(tls[other].key)))
    assert ok.status_code == 200 and serialization.sha256_hex(ok.content) == merged

    r = get((str(stranger.cert), str(stranger.key)))
    assert r.status_code == 403 and r.json()["detail"]["error"] == "UNKNOWN_SITE"
    with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake fails
        get(None)
    with pytest.raises(httpx.HTTPError):  # a certificate from another CA: the handshake fails
        get((str(rogue.cert), str(rogue.key)))
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port
        httpx.get(f"http://127.0.0.1:{services.peer_ports[holder]}/v1/blobs/{merged}", timeout=5)
    # The callback's API is not on the TLS listener, and blobs are not on the loopback one.
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(str(tls[other].cert), str(tls[other].key))
    r = httpx.Client(verify=context).post(f"https://127.0.0.1:{services.peer_ports[holder]}/v1/local/join", json={})
    assert r.status_code == 404
    assert httpx.get(f"{urls[holder]}/v1/blobs/{merged}").status_code == 404
    for s in SITES:
        assert "PRIVATE KEY" not in services.log(s), "no secret is ever logged"
