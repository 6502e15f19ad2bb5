"""swarm-status says why a round is stuck: who is missing, since when, who leads."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from swarm_wire import serialization

from .conftest import REPO, SMALL_LAYOUT_ARRAYS, small_spec

pytestmark = pytest.mark.slow


def _status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sn_service.cli.swarm_status", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_names_the_missing_site_from_the_service_and_from_the_ledger(services):
    urls = {s: services.start(s) for s in ("site-a", "site-b", "site-c")}
    for url in urls.values():
        assert httpx.post(f"{url}/v1/local/join", json={"task": "stuck", "spec": small_spec()}).status_code == 200
    blob = serialization.to_bytes([np.ones_like(a) for a in SMALL_LAYOUT_ARRAYS])
    for site in ("site-a", "site-b"):  # site-c never submits
        r = httpx.post(f"{urls[site]}/v1/local/syncs", params={"task": "stuck", "weight": 1}, content=blob)
        assert r.status_code == 202

    out = _status("--url", urls["site-a"])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "task stuck (open) - round 0 open" in text
    assert "site-c" in text and "MISSING" in text
    assert "cannot close: 2 of min_peers 3 submitted; waiting for site-c" in text
    assert "submitted" in text.split("site-a", 1)[1].splitlines()[0]
    assert "sync" in text and "waiting for submissions" in text, "the service's own wait is shown too"

    # From the ledger file alone, with every service down.
    services.stop_all()
    out = _status("--ledger-path", str(services.ledger_path), "--task", "stuck")
    assert out.returncode == 0, out.stderr
    assert "MISSING" in out.stdout and "waiting for site-c" in out.stdout

    bad = _status("--ledger-path", str(services.ledger_path), "--task", "nope")
    assert bad.returncode == 1 and "TASK_NOT_FOUND" in bad.stderr
    bad = _status("--ledger-path", str(services.root / "missing.sqlite"), "--task", "stuck")
    assert bad.returncode == 1 and "no embedded ledger" in bad.stderr


def test_status_of_an_unreachable_service_is_a_clear_error():
    out = _status("--url", "http://127.0.0.1:9")
    assert out.returncode == 1 and "does not answer" in out.stderr
