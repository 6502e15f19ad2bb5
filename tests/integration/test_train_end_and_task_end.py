"""Check-in at train end (a finished site's service takes its part in later rounds) and the task ending training."""

from __future__ import annotations

import json

import pytest

from sn_service.blob_store import BlobStore
from sn_service.ledger import EmbeddedLedger
from swarm_wire import serialization

from .conftest import assert_weighted_mean, launch_synthetic

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


@pytest.mark.parametrize("mode", ["active", "inactive"])
def test_finished_site_stays_a_peer_until_every_site_is_done(tmp_path, mode):
    # site-a trains 1 epoch, the others 3; with minPeers=3 they could not merge without site-a's service.
    launch_synthetic(
        tmp_path,
        mode,
        "--epochs",
        "1,3,3",
        "--checkin",
        mode,
        "--samples",
        "160",
        "--sync-frequency",
        "2",
        "--min-peers",
        "3",
    )
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="observer")
    history = ledger.get_history(mode)["rounds"]
    results = {s: json.loads((tmp_path / s / "result.json").read_text()) for s in SITES}
    assert results["site-a"]["epochs_run"] == 1 and results["site-b"]["epochs_run"] == 3
    assert results["site-a"]["rounds"] < results["site-b"]["rounds"] == results["site-c"]["rounds"]
    # Rounds after site-a's training ended still have three contributors: site-a's service took its part.
    later = history[results["site-a"]["rounds"] :]
    assert len(later) >= 4 and all(sorted(r["contributors"]) == list(SITES) for r in later)
    layout = ledger.get_task(mode)["spec"]["layout"]

    def blob(sha: str) -> bytes:
        for site in SITES:
            store = BlobStore(tmp_path / site / "blobs")
            if store.has(sha):
                return store.get(sha)
        raise AssertionError(f"no site stored blob {sha}")

    for rnd in later:
        sub = rnd["submissions"]["site-a"]
        if mode == "active":
            # As if still training, without data: it contributes the previous round's merged model.
            assert sub["sha256"] == history[rnd["round"] - 1]["merged_sha256"]
            assert sub["weight"] >= 1
        else:
            # A peer with weight 0: counted towards minPeers, left out of the merge (the mean of b and c).
            assert sub["weight"] == 0
            assert_weighted_mean(rnd, ["site-b", "site-c"], blob, layout)
    task = ledger.get_task(mode)
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
