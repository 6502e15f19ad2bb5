"""Check-in at train end ('active' stands in for a finished site) and the task ending the training."""

from __future__ import annotations

import json

import pytest

from sn_service.ledger import EmbeddedLedger
from swarm_keras import serialization

from .conftest import launch_synthetic

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


def test_active_checkin_keeps_min_peers_for_the_sites_still_training(tmp_path):
    # site-a trains 1 epoch, the others 3; with minPeers=3 they could not merge without site-a's stand-in.
    launch_synthetic(
        tmp_path,
        "active",
        "--epochs",
        "1,3,3",
        "--checkin",
        "active",
        "--samples",
        "160",
        "--sync-frequency",
        "2",
        "--min-peers",
        "3",
    )
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="observer")
    history = ledger.get_history("active")["rounds"]
    results = {s: json.loads((tmp_path / s / "result.json").read_text()) for s in SITES}
    assert results["site-a"]["epochs_run"] == 1 and results["site-b"]["epochs_run"] == 3
    assert results["site-a"]["rounds"] < results["site-b"]["rounds"] == results["site-c"]["rounds"]
    # Rounds after site-a's training ended still have three contributors: site-a's service stood in.
    later = history[results["site-a"]["rounds"] :]
    assert later and all(sorted(r["contributors"]) == list(SITES) for r in later)
    stand_in = {r["submissions"]["site-a"]["sha256"] for r in later[1:]}
    assert len(stand_in) == 1, "the stand-in contributes one frozen final model"
    task = ledger.get_task("active")
    assert task["status"] == "done"
    assert {n: i["status"] for n, i in task["nodes"].items()} == dict.fromkeys(SITES, "finished")
    # fit returned at site-a only once the swarm was done, with the swarm's final model loaded.
    finals = {s: serialization.sha256_hex((tmp_path / s / "final.safetensors").read_bytes()) for s in SITES}
    assert set(finals.values()) == {history[-1]["merged_sha256"]}, finals
    assert "loaded the swarm's final model" in (tmp_path / "site-a" / "train.log").read_text()


def test_training_stops_when_the_task_reaches_max_rounds(tmp_path):
    proc = launch_synthetic(
        tmp_path,
        "capped",
        "--epochs",
        "20",
        "--max-rounds",
        "4",
        "--samples",
        "160",
        "--sync-frequency",
        "2",
        launcher_args=("--progress",),
    )
    # --progress: one line per change instead of the sites' raw logs.
    assert "[site-a train]" not in proc.stdout
    assert "| site-a: " in proc.stdout and "round " in proc.stdout
    history = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="observer").get_history("capped")["rounds"]
    assert len(history) == 4
    for site in SITES:
        result = json.loads((tmp_path / site / "result.json").read_text())
        assert result["epochs_run"] < 20, f"{site} should have stopped when the task ended"
        assert result["rounds"] == 4
    finals = {(tmp_path / s / "final.safetensors").read_bytes() for s in SITES}
    assert len(finals) == 1
