"""A site's training process that ends without checking in (crashed, killed): its service leaves the
task for it, so the other sites stop waiting for it in every round. Real services on loopback; a
real process stands for the trainer (its pid is what the callback sends at join)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from sn_service.ledger import EmbeddedLedger

from .conftest import small_spec, sync_round

pytestmark = pytest.mark.slow

QUORUM_WAIT_MS = 300_000  # far longer than the test: a round that waited for the dead site would time out


def _join(url: str, pid: int | None) -> None:
    body = {"task": "t", "spec": small_spec(min_peers=2, quorum_wait_ms=QUORUM_WAIT_MS), "trainer_pid": pid}
    r = httpx.post(f"{url}/v1/local/join", json=body, timeout=30)
    assert r.status_code == 200, r.text


def _node_status(ledger: EmbeddedLedger, site: str) -> str:
    return ledger.get_task("t")["nodes"][site]["status"]


def test_a_crashed_trainer_s_site_leaves_and_the_others_stop_waiting_then_it_rejoins(services):
    urls = {s: services.start(s) for s in ("site-a", "site-b", "site-c")}
    trainers = {s: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for s in urls}
    try:
        for site, url in urls.items():
            _join(url, trainers[site].pid)
        ledger = EmbeddedLedger(services.ledger_path, identity="observer")
        results = sync_round(urls, "t", np.random.default_rng(1))
        assert {r["state"] for r in results.values()} == {"done"}, results

        # site-c's trainer is killed: its service notices and leaves the task, saying so.
        trainers["site-c"].send_signal(signal.SIGKILL)
        trainers["site-c"].wait()
        deadline = time.monotonic() + 30
        while _node_status(ledger, "site-c") != "left":
            assert time.monotonic() < deadline, services.log("site-c")[-2000:]
            time.sleep(0.2)
        assert "ended without checking in" in services.log("site-c")
        # The two others' rounds close without the quorum wait for site-c.
        t0 = time.monotonic()
        rest = {s: u for s, u in urls.items() if s != "site-c"}
        for round_no in (1, 2):
            results = sync_round(rest, "t", np.random.default_rng(round_no), timeout_s=60)
            assert {r["state"] for r in results.values()} == {"done"}, results
            assert {r["round"] for r in results.values()} == {round_no}
        assert time.monotonic() - t0 < QUORUM_WAIT_MS / 1000 / 2
        assert sorted(ledger.get_round("t", 2)["contributors"]) == ["site-a", "site-b"]

        # Training started again: the site joins again and takes part.
        trainers["site-c"] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        _join(urls["site-c"], trainers["site-c"].pid)
        assert _node_status(ledger, "site-c") == "active"
        results = sync_round(urls, "t", np.random.default_rng(9))
        assert {r["state"] for r in results.values()} == {"done"}, results
        assert sorted(ledger.get_round("t", results["site-a"]["round"])["contributors"]) == [
            "site-a",
            "site-b",
            "site-c",
        ]
        # Sites whose trainers stay alive are not touched.
        assert _node_status(ledger, "site-a") == _node_status(ledger, "site-b") == "active"
    finally:
        for proc in trainers.values():
            proc.kill()
            proc.wait()


def test_a_trainer_the_service_cannot_see_is_not_watched(services):
    url = services.start("site-a")
    _join(url, 2**31 - 2)  # no such process here (as for a trainer on another host or container)
    time.sleep(3)
    ledger = EmbeddedLedger(services.ledger_path, identity="observer")
    assert _node_status(ledger, "site-a") == "active"
    assert "not visible from this service" in services.log("site-a")
