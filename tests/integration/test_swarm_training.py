"""Three sites train a Keras model together through the launcher, for real."""

from __future__ import annotations

import json

import pytest

from sn_service.ledger import EmbeddedLedger

from .conftest import check_swarm_run, launch_synthetic

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


def test_three_sites_train_one_model(tmp_path):
    workdir = tmp_path / "run"
    proc = launch_synthetic(
        workdir,
        "e2e",
        "--epochs",
        "2",
        "--samples",
        "320",
        "--sync-frequency",
        "4",
        launcher_args=("--keep-rounds", "0"),
    )
    # Every line of every site's log is prefixed with its site and role.
    assert "[site-b train]" in proc.stdout and "[site-c sn]" in proc.stdout
    assert "every site finished training" in proc.stdout

    ledger = EmbeddedLedger(workdir / "ledger.sqlite", identity="observer")
    check_swarm_run(workdir, ledger.get_history("e2e")["rounds"], ledger.get_task("e2e"), SITES, min_merges=3)
    results = [json.loads((workdir / s / "result.json").read_text()) for s in SITES]
    assert results[0]["test_accuracy"] > 0.8, results


def test_three_sites_train_over_mutual_tls(tmp_path):
    """``swarm-launch --mtls``: a swarm CA and site certificates made for the run; blobs only over mTLS."""
    workdir = tmp_path / "run"
    launch_synthetic(
        workdir,
        "mtls",
        "--epochs",
        "1",
        "--samples",
        "320",
        "--sync-frequency",
        "4",
        launcher_args=("--mtls", "--keep-rounds", "0"),
    )
    ledger = EmbeddedLedger(workdir / "ledger.sqlite", identity="observer")
    task = ledger.get_task("mtls")
    for site in SITES:
        assert task["nodes"][site]["identity"] == f"x509::CN={site},O=swarm"
        assert task["nodes"][site]["endpoint"].startswith("https://127.0.0.1:")
        assert (workdir / "identities" / site / "site.key").is_file()
    check_swarm_run(workdir, ledger.get_history("mtls")["rounds"], task, SITES, min_merges=2)
