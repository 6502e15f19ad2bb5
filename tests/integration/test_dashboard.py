"""The dashboard, in a real headless Chromium, on a real three-site swarm; metrics from a real Keras fit."""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from sn_service.tls.identity import create_ca, issue_site
from swarm_wire import serialization

from .conftest import REPO, SMALL_LAYOUT_ARRAYS, small_spec, wait_sync

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")
ARTIFACTS = REPO / "test-artifacts"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("SWARM_REQUIRE_BROWSER") == "1":
            pytest.fail("SWARM_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); the dashboard's browser test needs it")
    return found


def _browse(chromium: str, url: str, tmp_path: Path, *args: str) -> str:
    """Runs headless Chromium on ``url`` with a fresh profile; returns its stdout (the DOM with --dump-dom)."""
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _metrics(site_index: int, round_no: int) -> dict:
    """A plausible learning curve per site: the loss falls, the accuracy rises."""
    loss = 0.7 / (1 + 0.6 * round_no) + 0.05 * site_index
    return {
        "loss": round(loss, 4),
        "accuracy": round(0.55 + 0.1 * round_no - 0.02 * site_index, 4),
        "val_loss": round(loss + 0.04, 4),
        "val_accuracy": round(0.5 + 0.1 * round_no - 0.03 * site_index, 4),
    }


def _round(urls: dict[str, str], task: str, round_no: int, sites: tuple[str, ...], rng) -> dict[str, str]:
    """Every site in ``sites`` syncs with its metrics; returns their sync ids."""
    jobs = {}
    for i, site in enumerate(SITES):
        if site not in sites:
            continue
        blob = serialization.to_bytes([rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS])
        headers = {} if round_no == 0 else {"X-Swarm-Metrics": json.dumps(_metrics(i, round_no))}
        r = httpx.post(
            f"{urls[site]}/v1/local/syncs",
            params={"task": task, "weight": 10 + i},
            content=blob,
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 202, r.text
        jobs[site] = r.json()["sync_id"]
    return jobs


def test_the_dashboard_shows_sites_rounds_and_every_sites_metrics_in_a_browser(services, tmp_path):
    chromium = _chromium()
    urls = {s: services.start(s) for s in SITES}
    for url in urls.values():
        r = httpx.post(f"{url}/v1/local/join", json={"task": "dash", "spec": small_spec()}, timeout=30)
        assert r.status_code == 200, r.text
    rng = np.random.default_rng(1)
    completed = 5
    for round_no in range(completed):
        jobs = _round(urls, "dash", round_no, SITES, rng)
        results = {s: wait_sync(urls[s], j) for s, j in jobs.items()}
        assert all(r["state"] == "done" and r["round"] == round_no for r in results.values()), results
    # Round 5 stays open: site-c is awaited.
    _round(urls, "dash", completed, ("site-a", "site-b"), rng)

    # The JSON the page polls: every site's metric history, fetched from each site's peer API.
    d = httpx.get(f"{urls['site-a']}/v1/dashboard/dash", timeout=30).json()
    assert d["task"]["current_round"] == completed and d["round"]["round"] == completed
    assert sorted(d["round"]["submissions"]) == ["site-a", "site-b"]
    for i, site in enumerate(SITES):
        assert d["metrics"][site]["reachable"] is True, d["metrics"][site]
        history = {h["round"]: h["metrics"] for h in d["metrics"][site]["rounds"]}
        expected_rounds = range(1, completed + 1) if site != "site-c" else range(1, completed)
        assert history == {r: _metrics(i, r) for r in expected_rounds}, site

    # A real browser runs the page's script against the live services.
    url = f"{urls['site-a']}/dashboard"
    dom = _browse(chromium, url, tmp_path, "--dump-dom")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.html").write_text(dom)
    assert 'id="live" data-state="live"' in dom, "the page's first poll succeeded"
    assert 'data-task="dash"' in dom
    assert 'data-site-count="3"' in dom and 'data-sites="3"' in dom
    assert sorted(re.findall(r'<tr data-site="([^"]+)" data-status="active" data-reachable="true"', dom)) == list(SITES)
    finished = re.findall(r'<tr data-round="(\d+)" data-status="done"', dom)
    assert sorted(int(r) for r in finished) == list(range(completed)), "every completed round is listed"
    assert f'data-completed-rounds="{completed}"' in dom
    assert 'data-submitted="2"' in dom and 'data-awaited="1"' in dom, "the open round: 2 submitted, site-c awaited"
    assert "Cannot close yet" in dom and "waiting for site-c" in dom
    # The loss chart shows each site's val_loss; the metric chart their val_accuracy.
    points = completed * 2 + (completed - 1)  # site-c has not reported round 5 yet
    assert f'data-metric="val_loss" data-points="{points}" data-series="3"' in dom
    assert f'data-metric="val_accuracy" data-points="{points}" data-series="3"' in dom
    circles = re.findall(r'<circle class="pt"[^>]*data-site="([^"]+)" data-round="(\d+)" data-value="([^"]+)"', dom)
    assert len(circles) == 2 * points
    assert ("site-b", "3", str(_metrics(1, 3)["val_loss"])) in circles

    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    _browse(chromium, url, tmp_path, f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars")
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    # A site whose service is down shows as unreachable, with the metrics it last gave; the page answers quickly.
    services.stop("site-c")
    t0 = time.monotonic()
    d = httpx.get(f"{urls['site-a']}/v1/dashboard/dash", timeout=30).json()
    assert time.monotonic() - t0 < 5
    assert d["metrics"]["site-c"]["reachable"] is False and "ConnectError" in d["metrics"]["site-c"]["error"]
    assert [h["round"] for h in d["metrics"]["site-c"]["rounds"]] == list(range(1, completed)), "last known"
    assert d["metrics"]["site-b"]["reachable"] is True
    dom = _browse(chromium, url, tmp_path, "--dump-dom")
    assert '<tr data-site="site-c" data-status="active" data-reachable="false"' in dom
    assert f'data-metric="val_loss" data-points="{points}" data-series="3"' in dom
    assert '<path class="series stale"' in dom and "unreachable, last known" in dom


def test_a_keras_fit_reports_its_logs_with_each_sync(services):
    """The real SwarmCallback sends loss, compiled metrics, val_* and ads_val_loss; the service keeps them per round."""
    keras = pytest.importorskip("keras")
    from swarm_keras import SwarmCallback

    url = services.start("site-a")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.3), loss="binary_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).standard_normal((96, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    swarm = SwarmCallback(
        syncFrequency=3,
        minPeers=1,
        trainingContract="fit",
        serviceUrl=url,
        useAdaptiveSync=True,
        adsValData=(x[:32], y[:32]),
        quorumWaitSeconds=0,
    )
    model.fit(x, y, epochs=2, batch_size=16, validation_data=(x[:32], y[:32]), verbose=0, callbacks=[swarm])
    assert swarm.rounds_synced >= 4

    rounds = httpx.get(f"{url}/v1/metrics-history/fit", timeout=10).json()["rounds"]
    assert rounds[0]["round"] >= 1, "the train-begin sync has no logs yet"
    first, last = rounds[0]["metrics"], rounds[-1]["metrics"]
    assert set(first) >= {"loss", "accuracy", "ads_val_loss"}, first
    assert set(last) >= {"loss", "accuracy", "val_loss", "val_accuracy", "ads_val_loss"}, last
    assert all(0 <= r["metrics"]["accuracy"] <= 1 and r["metrics"]["loss"] > 0 for r in rounds)
    assert [r["round"] for r in rounds] == sorted({r["round"] for r in rounds})


def test_over_mtls_metrics_go_only_to_registered_sites_from_the_server_the_ledger_names(services, tmp_path):
    create_ca(tmp_path / "ca")
    tls = {s: issue_site(tmp_path / "ca", s, tmp_path / "id" / s) for s in SITES}
    stranger = issue_site(tmp_path / "ca", "site-x", tmp_path / "id" / "site-x")
    urls = {s: services.start(s, "--tls-dir", str(tmp_path / "id" / s), "--peer-port", "0") for s in SITES}
    for url in urls.values():
        r = httpx.post(f"{url}/v1/local/join", json={"task": "tls", "spec": small_spec()}, timeout=30)
        assert r.status_code == 200, r.text
    rng = np.random.default_rng(2)
    for round_no in (0, 1, 2):
        jobs = _round(urls, "tls", round_no, SITES, rng)
        assert all(wait_sync(urls[s], j)["state"] == "done" for s, j in jobs.items())

    d = httpx.get(f"{urls['site-a']}/v1/dashboard/tls", timeout=30).json()
    for i, site in enumerate(SITES):
        assert d["metrics"][site]["reachable"] is True, d["metrics"][site]
        assert {h["round"]: h["metrics"] for h in d["metrics"][site]["rounds"]} == {r: _metrics(i, r) for r in (1, 2)}
    assert httpx.get(f"{urls['site-a']}/dashboard", timeout=10).status_code == 200, "the page is on the loopback app"

    def peer_get(cert, site: str = "site-b") -> httpx.Response:
        context = ssl.create_default_context(cafile=str(tls[site].ca))
        context.load_cert_chain(str(cert.cert), str(cert.key))
        with httpx.Client(verify=context, timeout=10) as client:
            return client.get(f"https://127.0.0.1:{services.peer_ports[site]}/v1/metrics-history/tls")

    assert peer_get(tls["site-a"]).json()["site"] == "site-b"
    r = peer_get(stranger)
    assert r.status_code == 403 and r.json()["detail"]["error"] == "UNKNOWN_SITE"
    assert httpx.get(f"{urls['site-b']}/v1/metrics-history/tls", timeout=10).status_code == 404, "not on loopback"

    # The ledger now says site-b is reached at site-c's address: site-c's certificate gives it away.
    as_b = EmbeddedLedger(services.ledger_path, identity="x509::CN=site-b,O=swarm")
    as_b.register("tls", "site-b", f"https://127.0.0.1:{services.peer_ports['site-c']}", small_spec()["fingerprint"])
    as_b.close()
    d = httpx.get(f"{urls['site-a']}/v1/dashboard/tls", timeout=30).json()
    assert d["metrics"]["site-b"]["reachable"] is False
    assert "the server is x509::CN=site-c,O=swarm, not x509::CN=site-b,O=swarm" in d["metrics"]["site-b"]["error"]
    assert d["metrics"]["site-c"]["reachable"] is True
