"""Three sites train a Keras model together through the launcher, for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sn_service.blob_store import BlobStore
from sn_service.ledger import EmbeddedLedger
from swarm_keras import serialization

from .conftest import REPO

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")


def _blob(workdir: Path, sha: str) -> bytes:
    for site in SITES:
        store = BlobStore(workdir / site / "blobs")
        if store.has(sha):
            return store.get(sha)
    raise AssertionError(f"no site stored blob {sha}")


def test_three_sites_train_one_model(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sn_service.launcher",
            "--sites",
            "3",
            "--task",
            "e2e",
            "--workdir",
            str(workdir),
            "--timeout",
            "600",
            str(REPO / "examples" / "synthetic" / "train.py"),
            "--epochs",
            "2",
            "--samples",
            "320",
            "--sync-frequency",
            "4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=700,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # Every line of every site's log is prefixed with its site and role.
    assert "[site-b train]" in proc.stdout and "[site-c sn]" in proc.stdout
    assert "every site finished training" in proc.stdout

    finals = [(workdir / s / "final.safetensors").read_bytes() for s in SITES]
    assert finals[0] == finals[1] == finals[2], "sites ended with different weights"

    history = EmbeddedLedger(workdir / "ledger.sqlite", identity="observer").get_history("e2e")["rounds"]
    # 320 samples / 32 = 10 batches an epoch, a sync every 4: rounds at train begin, 2 per epoch, train end.
    assert len(history) >= 4
    merge_rounds = [r for r in history if r["previous_merged_sha256"] is not None]
    assert len(merge_rounds) >= 3
    task = EmbeddedLedger(workdir / "ledger.sqlite", identity="observer").get_task("e2e")
    layout = task["spec"]["layout"]
    assert task["status"] == "done", "the task ends when every site has left"

    first = history[0]
    leader = first["contributors"][first["leader_index"]]
    assert first["merged_sha256"] == first["submissions"][leader]["sha256"], "round 0 aligns on the leader's weights"

    for rnd in merge_rounds:
        assert sorted(rnd["contributors"]) == list(SITES)
        models = [
            serialization.from_bytes(_blob(workdir, rnd["submissions"][s]["sha256"]), layout)
            for s in rnd["contributors"]
        ]
        weights = [rnd["submissions"][s]["weight"] for s in rnd["contributors"]]
        merged = serialization.from_bytes(_blob(workdir, rnd["merged_sha256"]), layout)
        for i in range(len(merged)):
            expected = np.average(np.stack([m[i] for m in models]).astype(np.float64), axis=0, weights=weights)
            np.testing.assert_allclose(merged[i], expected, rtol=1e-5, atol=1e-6)

    # The final weights are the last round's merged model.
    assert serialization.sha256_hex(finals[0]) == history[-1]["merged_sha256"]
    results = [json.loads((workdir / s / "result.json").read_text()) for s in SITES]
    assert results[0]["test_accuracy"] > 0.8, results
