"""Differential privacy in a real swarm: three swarm-sn services, three Keras trainings with dp* options.

Each site's epsilon shows in its /metrics, its /v1/status, every site's
dashboard data and swarm-status, grows sync by sync as the accountant says,
and a site with a small budget stops when it is spent while the others
train to the end, its service standing in with nothing new.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger
from swarm_keras.privacy import epsilon_after
from swarm_wire import serialization

from .conftest import REPO, SMALL_LAYOUT_ARRAYS, small_spec, wait_sync

pytestmark = pytest.mark.slow
pytest.importorskip("dp_accounting")
SITES = ("site-a", "site-b", "site-c")
TASK = "dp-task"
Z, DELTA = 2.0, 1e-5
EPOCHS, SAMPLES, BATCH, SYNC_EVERY = 3, 320, 32, 2  # 10 batches an epoch: 5 noisy syncs an epoch, 15 in all
CAP_SYNCS = 3  # site-c may spend the epsilon of 3 noisy syncs


def _train(site: str, index: int, url: str, home, cap: float) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SWARM_SN_URL": url,
        "SWARM_SITE": site,
        "SWARM_SITE_INDEX": str(index),
        "SWARM_NUM_SITES": str(len(SITES)),
        "SWARM_TASK": TASK,
        "SWARM_OUTPUT_DIR": str(home),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    log = open(home / "train.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "examples" / "synthetic" / "train.py"),
            "--epochs",
            str(EPOCHS),
            "--samples",
            str(SAMPLES),
            "--batch-size",
            str(BATCH),
            "--sync-frequency",
            str(SYNC_EVERY),
            "--min-peers",
            "3",
            "--dp-clip-norm",
            "0.5",
            "--dp-noise-multiplier",
            str(Z),
            "--dp-max-epsilon",
            f"100,100,{cap!r}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def _gauge(url: str, site: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    m = re.search(rf'swarm_site_dp_epsilon\{{site="{site}",task="{TASK}"\}} (\S+)', text) or re.search(
        rf'swarm_site_dp_epsilon\{{task="{TASK}",site="{site}"\}} (\S+)', text
    )
    return float(m.group(1)) if m else None


def test_epsilon_is_reported_everywhere_grows_per_sync_and_a_spent_budget_stops_its_site(services, tmp_path):
    urls = {site: services.start(site) for site in SITES}
    cap = epsilon_after(Z, CAP_SYNCS, DELTA) * 1.001  # room for exactly CAP_SYNCS noisy syncs
    procs = {s: _train(s, i, urls[s], tmp_path / "train" / s, cap) for i, s in enumerate(SITES)}
    seen_while_training = []
    try:
        while any(p.poll() is None for p in procs.values()):
            value = _gauge(urls["site-a"], "site-a")
            if value is not None and procs["site-a"].poll() is None:
                seen_while_training.append(value)
            with contextlib.suppress(subprocess.TimeoutExpired):
                procs["site-a"].wait(1.0)
        for site, proc in procs.items():
            assert proc.wait(600) == 0, (tmp_path / "train" / site / "train.log").read_text()[-4000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    results = {s: json.loads((tmp_path / "train" / s / "result.json").read_text()) for s in SITES}
    log_c = (tmp_path / "train" / "site-c" / "train.log").read_text()

    # The site with the small budget stopped after exactly CAP_SYNCS noisy syncs, within its cap; the others trained on.
    assert results["site-c"]["dp_budget_spent"] is True and results["site-c"]["dp_noisy_syncs"] == CAP_SYNCS
    assert (
        results["site-c"]["dp_epsilon"] == pytest.approx(epsilon_after(Z, CAP_SYNCS, DELTA))
        and results["site-c"]["dp_epsilon"] <= cap
    )
    assert "privacy budget spent" in log_c and results["site-c"]["epochs_run"] < EPOCHS
    for site in ("site-a", "site-b"):
        assert results[site]["dp_budget_spent"] is False and results[site]["epochs_run"] == EPOCHS
        assert results[site]["dp_noisy_syncs"] == EPOCHS * SAMPLES // BATCH // SYNC_EVERY
        assert results[site]["dp_epsilon"] == pytest.approx(epsilon_after(Z, results[site]["dp_noisy_syncs"], DELTA))

    # /metrics: the gauge rose while site-a trained, and ends at each site's final epsilon.
    assert len(set(seen_while_training)) >= 2 and seen_while_training == sorted(seen_while_training)
    for site in SITES:
        assert _gauge(urls[site], site) == pytest.approx(results[site]["dp_epsilon"], rel=1e-9)
        assert f'swarm_site_dp_delta{{site="{site}",task="{TASK}"}} 1e-05' in httpx.get(f"{urls[site]}/metrics").text

    # /v1/status: this site's latest privacy metrics.
    status = httpx.get(f"{urls['site-c']}/v1/status", timeout=10).json()
    privacy = status["tasks"][TASK]["privacy"]
    assert privacy["dp_epsilon"] == pytest.approx(results["site-c"]["dp_epsilon"]) and privacy["dp_syncs"] == CAP_SYNCS

    # The dashboard's data, seen from site-b, has every site's epsilon per round, growing as the accountant says.
    board = httpx.get(f"{urls['site-b']}/v1/dashboard/{TASK}", params={"rounds": 500}, timeout=30).json()
    for site in SITES:
        history = [r["metrics"] for r in board["metrics"][site]["rounds"]]
        assert history[0]["dp_epsilon"] == 0.0  # round 0 aligns the data-free starting weights: nothing spent
        for entry in history[1:]:
            assert entry["dp_epsilon"] == pytest.approx(epsilon_after(Z, int(entry["dp_syncs"]), DELTA))
        spent = [e["dp_epsilon"] for e in history]
        assert spent == sorted(spent) and spent[-1] == pytest.approx(results[site]["dp_epsilon"])
        assert "loss" not in history[-1]  # training metrics stay at the site unless dpShareTrainingMetrics

    # swarm-status names every site's epsilon.
    out = subprocess.run(
        [sys.executable, "-m", "sn_service.cli.swarm_status", "--url", urls["site-a"], "--task", TASK],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "differential privacy, epsilon spent" in ln)
    for site in SITES:
        assert f"{site} {results[site]['dp_epsilon']:.3g} at delta 1e-05" in line

    # After its budget was spent site-c sent nothing new: its service stood in with its last noisy update.
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    rounds = ledger.get_history(TASK)["rounds"]
    c_shas = [r["submissions"]["site-c"]["sha256"] for r in rounds if "site-c" in r["submissions"]]
    assert len(c_shas) > CAP_SYNCS + 2  # it stayed a peer of the later rounds (minPeers 3 needed it)
    assert len(set(c_shas)) == CAP_SYNCS + 1  # round 0's starting weights + its noisy syncs, nothing else
    assert set(c_shas[CAP_SYNCS + 1 :]) == {c_shas[CAP_SYNCS]}
    assert ledger.get_task(TASK)["status"] == "done"


def test_the_dashboard_shows_each_sites_epsilon_in_a_browser(services, tmp_path):
    from .test_dashboard import ARTIFACTS, _browse, _chromium

    chromium = _chromium()
    urls = {s: services.start(s) for s in SITES}
    for url in urls.values():
        r = httpx.post(f"{url}/v1/local/join", json={"task": "dpdash", "spec": small_spec()}, timeout=30)
        assert r.status_code == 200, r.text
    rng = np.random.default_rng(3)
    spent = {}
    for round_no in range(4):
        jobs = {}
        for i, (site, url) in enumerate(urls.items()):
            # What a DP callback reports: the privacy metrics only (the Keras logs stay at the site).
            spent[site] = epsilon_after(4.0 + i, round_no, DELTA)
            metrics = {"dp_epsilon": spent[site], "dp_delta": DELTA, "dp_syncs": round_no}
            blob = serialization.to_bytes(
                [rng.standard_normal(a.shape).astype(np.float32) for a in SMALL_LAYOUT_ARRAYS]
            )
            r = httpx.post(
                f"{url}/v1/local/syncs",
                params={"task": "dpdash", "weight": 1},
                content=blob,
                headers={"X-Swarm-Metrics": json.dumps(metrics)},
                timeout=30,
            )
            assert r.status_code == 202, r.text
            jobs[site] = r.json()["sync_id"]
        assert all(wait_sync(urls[s], j)["state"] == "done" for s, j in jobs.items())
    dom = _browse(chromium, f"{urls['site-a']}/dashboard", tmp_path, "--dump-dom")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-dp.html").write_text(dom)
    assert 'id="live" data-state="live"' in dom
    assert "Epsilon: the differential privacy the site has spent so far at delta 1e-5." in dom
    for site in SITES:  # every site's epsilon, fetched from its own service, in the site table
        cell = re.search(rf'<tr data-site="{site}".*?data-dp-epsilon="([^"]+)"', dom, re.S)
        assert cell is not None and float(cell.group(1)) == pytest.approx(spent[site]), site
    # With no training metric shared, the metric chart shows epsilon per round: 4 rounds x 3 sites.
    assert 'data-metric="dp_epsilon" data-points="12" data-series="3"' in dom
    shot = ARTIFACTS / "dashboard-dp.png"
    _browse(chromium, f"{urls['site-a']}/dashboard", tmp_path, f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
