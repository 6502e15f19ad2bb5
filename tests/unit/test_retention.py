"""Blob retention: old rounds' blobs go, what a site may still need stays."""

from __future__ import annotations

import os
import time

import pytest

from sn_service.blob_store import BlobStore
from sn_service.ledger import EmbeddedLedger
from sn_service.retention import BlobRetention
from swarm_wire.serialization import fingerprint

LAYOUT = "f32[2]"
SPEC = {
    "fingerprint": fingerprint(LAYOUT),
    "layout": LAYOUT,
    "min_peers": 1,
    "merge_method": "mean",
    "quorum_wait_ms": 0,
    "leader_timeout_ms": 1000,
    "max_rounds": 0,
}


class Swarm:
    """One site running rounds on an embedded ledger, its blobs in a real store (mtimes set in the past)."""

    def __init__(self, tmp_path, tasks=("t",)):
        self.ledger = EmbeddedLedger(tmp_path / "ledger.sqlite", identity="id-a")
        self.store = BlobStore(tmp_path / "blobs")
        for task in tasks:
            self.ledger.init_task(task, SPEC)
            self.ledger.register(task, "site-a", "http://a", fingerprint(LAYOUT))

    def put(self, data: bytes, age_s: float = 3600.0) -> str:
        sha = self.store.put(data)
        old = time.time() - age_s
        os.utime(self.store.path(sha), (old, old))
        return sha

    def round(self, task: str, contribution: bytes | None = None) -> tuple[str, str]:
        r = self.ledger.get_task(task)["current_round"]
        sub = self.put(contribution if contribution is not None else f"{task} contribution {r}".encode())
        merged = self.put(f"{task} merged {r}".encode())
        self.ledger.submit(task, r, "site-a", sub, 1)
        self.ledger.close_round(task, r)
        self.ledger.publish(task, r, "site-a", merged)
        return sub, merged

    def retention(self, keep: int, tasks=("t",), grace_s: float = 60.0) -> BlobRetention:
        return BlobRetention(self.store, self.ledger, keep, grace_s, tasks=lambda: list(tasks))


def test_blobs_of_rounds_older_than_keep_rounds_are_deleted(tmp_path):
    swarm = Swarm(tmp_path)
    blobs = [swarm.round("t") for _ in range(30)]
    retention = swarm.retention(keep=5)
    deleted = retention.prune("t")
    # current round 30: rounds 25-29 keep theirs, 0-24 lose a contribution and a merged model each
    assert deleted == 50
    for r, (sub, merged) in enumerate(blobs):
        assert swarm.store.has(sub) == swarm.store.has(merged) == (r >= 25), r
    assert retention.freed_bytes == sum(len(f"t contribution {r}") + len(f"t merged {r}") for r in range(25))
    # pruning again has nothing to do; after more rounds only the new backlog goes
    assert retention.prune("t") == 0
    more = [swarm.round("t") for _ in range(3)]
    assert retention.prune("t") == 6
    assert not swarm.store.has(blobs[27][0]) and swarm.store.has(blobs[28][0]) and swarm.store.has(more[-1][1])


def test_the_latest_merged_model_and_blobs_still_referenced_stay(tmp_path):
    swarm = Swarm(tmp_path)
    same = b"final model, contributed every round"  # e.g. a site that finished training stands in with it
    first = swarm.round("t", same)
    for _ in range(9):
        swarm.round("t")
    last = swarm.round("t", same)
    swarm.retention(keep=2).prune("t")
    assert swarm.store.has(first[0])  # same bytes as round 10's contribution
    assert not swarm.store.has(first[1])
    assert swarm.store.has(last[1])


def test_a_blob_stored_recently_is_not_deleted(tmp_path):
    swarm = Swarm(tmp_path)
    old = [swarm.round("t") for _ in range(10)]
    swarm.store.put(b"t contribution 0")  # stored again just now: perhaps uploaded as a new contribution
    swarm.retention(keep=2, grace_s=60.0).prune("t")
    assert swarm.store.has(old[0][0]) and not swarm.store.has(old[0][1]) and not swarm.store.has(old[1][0])


def test_blobs_too_recent_to_delete_are_deleted_by_a_later_pruning(tmp_path):
    """Rounds faster than the grace period: their blobs go once they are old enough, not never."""
    swarm = Swarm(tmp_path)
    fresh = []
    for _ in range(10):
        sub, merged = swarm.round("t")
        for sha in (sub, merged):
            os.utime(swarm.store.path(sha))  # stored just now
        fresh.append((sub, merged))
    retention = swarm.retention(keep=2, grace_s=60.0)
    assert retention.prune("t") == 0
    assert all(swarm.store.has(sha) for pair in fresh for sha in pair)
    old = time.time() - 3600
    for sub, merged in fresh[:4]:  # time passes for the first four rounds' blobs
        for sha in (sub, merged):
            os.utime(swarm.store.path(sha), (old, old))
    swarm.round("t")
    assert retention.prune("t") == 8
    assert not any(swarm.store.has(sha) for pair in fresh[:4] for sha in pair)
    assert all(swarm.store.has(sha) for pair in fresh[4:] for sha in pair)


def test_another_tasks_recent_blobs_are_protected(tmp_path):
    swarm = Swarm(tmp_path, tasks=("t", "u"))
    shared = b"the same initial model in two tasks"
    t_first = swarm.round("t", shared)
    for _ in range(10):
        swarm.round("t")
    u_round = swarm.round("u", shared)
    swarm.retention(keep=2, tasks=("t", "u")).prune("t")
    assert swarm.store.has(t_first[0]) and swarm.store.has(u_round[1])
    assert not swarm.store.has(t_first[1])


def test_keep_rounds_zero_keeps_everything_and_negative_is_refused(tmp_path):
    swarm = Swarm(tmp_path)
    blobs = [swarm.round("t") for _ in range(10)]
    assert swarm.retention(keep=0).prune("t") == 0
    assert all(swarm.store.has(sha) for pair in blobs for sha in pair)
    with pytest.raises(ValueError, match="keep_rounds=-1"):
        swarm.retention(keep=-1)


def test_pruned_contributions_files_are_kept_to_write_over_merged_models_files_are_not(tmp_path):
    # The callback loads a large merged model as memory maps of its file: that file must never change, so only
    # contributions (read by peers, who check their hash) are kept as spares (swarm_wire.spare_files).
    swarm = Swarm(tmp_path)
    blobs = [swarm.round("t") for _ in range(6)]  # blobs under 1 MiB: none kept so far, no spare made
    assert swarm.store.spares.count() == 0
    swarm.store.spares.min_file_bytes, swarm.store.spares.max_files = 1, 100
    assert swarm.retention(keep=2).prune("t") == 8
    kept = sorted(os.path.getsize(swarm.store.spares.dir / n) for n in os.listdir(swarm.store.spares.dir))
    assert kept == sorted(len(f"t contribution {r}") for r in range(4)), "rounds 0-3's contributions only"
    for r in range(4):
        assert not swarm.store.has(blobs[r][0]) and not swarm.store.has(blobs[r][1])
