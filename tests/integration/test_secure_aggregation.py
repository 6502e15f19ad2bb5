"""Secure aggregation on real swarm-sn processes: the mean is right, the leader sees noise, dropouts and failover."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time

import httpx
import numpy as np
import pytest
from scipy import stats

from sn_service import contract
from sn_service.blob_store import BlobStore
from sn_service.ledger import EmbeddedLedger
from sn_service.secagg.crypto import RING_BITS, quantise
from sn_service.secagg.protocol import decode_masked
from swarm_wire import serialization

from .conftest import launch_synthetic, small_spec, wait_sync

pytestmark = pytest.mark.slow
SITES = ("site-a", "site-b", "site-c")
# Big enough for a statistical test of one masked model, small enough for a loaded 2-core machine.
ARRAYS = [np.zeros((64, 32), np.float32), np.zeros(32, np.float32), np.zeros((32, 4), np.float32)]
LAYOUT = serialization.layout_of(ARRAYS)


def secure_spec(**kw) -> dict:
    spec = small_spec(min_peers=2, **kw)
    spec.update(layout=LAYOUT, fingerprint=serialization.fingerprint(LAYOUT), secure_aggregation=True)
    return spec


class Swarm:
    """Three services in one secure task; each sync's plain model is remembered for the expected mean."""

    def __init__(self, services, task: str, **spec) -> None:
        self.services, self.task = services, task
        self.urls = {s: services.start(s) for s in SITES}
        self.spec = secure_spec(**spec)
        for url in self.urls.values():
            r = httpx.post(f"{url}/v1/local/join", json={"task": task, "spec": self.spec}, timeout=30)
            assert r.status_code == 200, r.text
        self.ledger = EmbeddedLedger(services.ledger_path, identity="observer")
        self.rng = np.random.default_rng(sum(map(ord, task)))
        self.models: dict[str, list[np.ndarray]] = {}
        self.weights: dict[str, int] = {}

    def submit(self, site: str, weight: int = 1) -> str:
        self.models[site] = [(self.rng.standard_normal(a.shape) * 0.1).astype(np.float32) for a in ARRAYS]
        self.weights[site] = weight
        r = httpx.post(
            f"{self.urls[site]}/v1/local/syncs",
            params={"task": self.task, "weight": weight},
            content=serialization.to_bytes(self.models[site]),
            timeout=30,
        )
        assert r.status_code == 202, r.text
        return r.json()["sync_id"]

    def round0(self) -> str:
        jobs = {s: self.submit(s) for s in SITES}
        results = {s: wait_sync(self.urls[s], j, timeout_s=120) for s, j in jobs.items()}
        assert all(r["state"] == "done" for r in results.values()), results
        return self.ledger.get_round(self.task, 0)["merged_sha256"]

    def wait_for(self, what, timeout_s: float = 60):
        deadline = time.monotonic() + timeout_s
        while not (value := what()):
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)
        return value

    def merged(self, site: str, sha: str) -> list[np.ndarray]:
        return serialization.from_bytes(BlobStore(self.services.root / site / "blobs").get(sha), LAYOUT)

    def assert_mean_of(self, merged: list[np.ndarray], of: list[str]) -> None:
        w = np.array([self.weights[s] for s in of], dtype=np.float64)
        for i, tensor in enumerate(merged):
            expected = np.tensordot(w, np.stack([self.models[s][i] for s in of]).astype(np.float64), 1) / w.sum()
            np.testing.assert_allclose(tensor, expected, rtol=0, atol=1e-6)


def test_secure_mean_equals_the_plain_weighted_mean_and_the_leader_sees_noise(services):
    swarm = Swarm(services, "sa")
    merged0 = swarm.round0()
    jobs = {s: swarm.submit(s, weight=w) for s, w in zip(SITES, (1, 3, 7), strict=True)}
    results = {s: wait_sync(swarm.urls[s], j, timeout_s=120) for s, j in jobs.items()}
    assert all(r["state"] == "done" and r["round"] == 1 for r in results.values()), results
    assert len({r["merged_sha256"] for r in results.values()}) == 1
    rnd = swarm.ledger.get_round("sa", 1)
    leader = rnd["published_by"]
    assert leader == contract.leader_order(merged0, 1, list(SITES))[0]
    assert rnd["sealed"] == {"survivors": sorted(SITES), "dropped": [], "by": leader, "ts_ms": rnd["sealed"]["ts_ms"]}
    swarm.assert_mean_of(swarm.merged(leader, rnd["merged_sha256"]), list(SITES))
    # The masks were summed while the round was open: a site that waited for the others had some ready.
    said = r"round 1: submitted masked model .*?; (\d+) of 3 masks summed before close"
    ready = [int(m) for site in SITES for m in re.findall(said, services.log(site))]
    assert len(ready) == 3 and max(ready) >= 1, ready

    # What the ledger holds of a site is its round key, not a hash of its model; no store holds a plain model.
    plain = {s: hashlib.sha256(serialization.to_bytes(m)).hexdigest() for s, m in swarm.models.items()}
    for site in SITES:
        assert rnd["submissions"][site]["sha256"] != plain[site]
        store = BlobStore(services.root / site / "blobs")
        assert store.has(rnd["masked"][site]["sha256"])
        for other in SITES:
            assert not store.has(plain[other]), f"{site} holds {other}'s plain model"

    # The leader's view of one contribution: its masked blob, ring values indistinguishable from uniform noise.
    other = next(s for s in SITES if s != leader)
    masked = BlobStore(services.root / leader / "blobs").get(rnd["masked"][other]["sha256"])
    header, y = decode_masked(masked)
    assert header["node"] == other and y.size == sum(a.size for a in ARRAYS)
    assert stats.kstest(y.astype(np.float64) / 2.0**RING_BITS, "uniform").pvalue > 1e-4
    top = (y >> np.uint64(RING_BITS - 4)).astype(np.int64)
    assert stats.chisquare(np.bincount(top, minlength=16)).pvalue > 1e-4
    # The same test tells the plain model apart: the statistic has the power to see a model.
    q = quantise(np.concatenate([a.ravel() for a in swarm.models[other]]), 1, header["frac_bits"])
    assert stats.kstest(q.astype(np.float64) / 2.0**RING_BITS, "uniform").pvalue < 1e-10


def test_keys_are_advertised_while_the_sites_train_so_every_mask_is_summed_before_close(services):
    swarm = Swarm(services, "adv")
    swarm.round0()
    # Round 0's merge opened round 1: each service advertises its key of it without waiting for its model.
    advertised = swarm.wait_for(lambda: len(a := swarm.ledger.get_round("adv", 1).get("advertised", {})) == 3 and a)
    assert swarm.ledger.get_round("adv", 1)["submissions"] == {}  # a key advertised is not a submission
    for _ in range(2):  # two rounds: the second one's keys are advertised after the first one's merge
        rnd_no = swarm.ledger.get_task("adv")["current_round"]
        adverts = swarm.wait_for(
            lambda n=rnd_no: len(a := swarm.ledger.get_round("adv", n).get("advertised", {})) == 3 and a
        )
        time.sleep(0.5)  # the sites "train": their services sum the masks of the advertised keys meanwhile
        jobs = {s: swarm.submit(s, weight=w) for s, w in zip(SITES, (2, 1, 5), strict=True)}
        results = {s: wait_sync(swarm.urls[s], j, timeout_s=120) for s, j in jobs.items()}
        assert all(r["state"] == "done" and r["round"] == rnd_no for r in results.values()), results
        rnd = swarm.ledger.get_round("adv", rnd_no)
        # Each site submitted the key it advertised; the merge is the weighted mean, as without advertising.
        assert {s: sub["sha256"] for s, sub in rnd["submissions"].items()} == {s: a["key"] for s, a in adverts.items()}
        swarm.assert_mean_of(swarm.merged(rnd["published_by"], rnd["merged_sha256"]), list(SITES))
        said = rf"round {rnd_no}: submitted masked model .*?; (\d+) of 3 masks summed before close"
        ready = [int(m) for site in SITES for m in re.findall(said, services.log(site))]
        assert ready == [3, 3, 3], ready  # every site's masks were all summed before Close
    assert advertised and "advertised" not in swarm.ledger.get_round("adv", 1)  # shown while the round is open


def test_a_site_restarted_after_advertising_submits_a_fresh_key_and_the_mean_is_still_right(services):
    """The others summed its advertised key; it submits another: they take the first out again."""
    swarm = Swarm(services, "rk")
    swarm.round0()
    adverts = swarm.wait_for(lambda: len(a := swarm.ledger.get_round("rk", 1).get("advertised", {})) == 3 and a)
    restarted = "site-b"
    services.stop(restarted)  # its round key of round 1 dies with it
    swarm.urls[restarted] = services.start(restarted)
    r = httpx.post(f"{swarm.urls[restarted]}/v1/local/join", json={"task": "rk", "spec": swarm.spec}, timeout=30)
    assert r.status_code == 200, r.text
    jobs = {s: swarm.submit(s, weight=w) for s, w in zip(SITES, (3, 2, 4), strict=True)}
    results = {s: wait_sync(swarm.urls[s], j, timeout_s=120) for s, j in jobs.items()}
    assert all(r["state"] == "done" and r["round"] == 1 for r in results.values()), results
    rnd = swarm.ledger.get_round("rk", 1)
    assert rnd["submissions"][restarted]["sha256"] != adverts[restarted]["key"]
    for site in SITES:
        if site != restarted:
            assert rnd["submissions"][site]["sha256"] == adverts[site]["key"]
    assert rnd["sealed"]["survivors"] == sorted(SITES)
    swarm.assert_mean_of(swarm.merged(rnd["published_by"], rnd["merged_sha256"]), list(SITES))


def test_a_site_that_dies_after_masking_is_still_merged(services):
    """Its masked model reached the leader; then it died: its self mask comes back from the others' shares."""
    swarm = Swarm(services, "sd", leader_timeout_ms=40_000)
    merged0 = swarm.round0()
    leader = contract.leader_order(merged0, 1, list(SITES))[0]
    victim, slow = [s for s in SITES if s != leader]
    # The slow site submits its key first and freezes: the leader then waits for its masked model.
    jobs = {slow: swarm.submit(slow, weight=2)}
    swarm.wait_for(lambda: slow in swarm.ledger.get_round("sd", 1)["submissions"])
    os.kill(services.procs[slow].pid, signal.SIGSTOP)
    try:
        jobs[leader] = swarm.submit(leader, weight=5)
        jobs[victim] = swarm.submit(victim, weight=3)
        entry = swarm.wait_for(lambda: swarm.ledger.get_round("sd", 1).get("masked", {}).get(victim))
        leader_store = BlobStore(services.root / leader / "blobs")
        swarm.wait_for(lambda: leader_store.has(entry["sha256"]) and leader_store.has(entry["shares_sha256"]))
        services.stop(victim, signal.SIGKILL)
    finally:
        os.kill(services.procs[slow].pid, signal.SIGCONT)
    results = {s: wait_sync(swarm.urls[s], jobs[s], timeout_s=120) for s in (leader, slow)}
    assert all(r["state"] == "done" and r["round"] == 1 for r in results.values()), results
    rnd = swarm.ledger.get_round("sd", 1)
    assert rnd["sealed"]["survivors"] == sorted(SITES) and rnd["sealed"]["dropped"] == []
    swarm.assert_mean_of(swarm.merged(leader, rnd["merged_sha256"]), list(SITES))
    assert "no reveals from " + victim in services.log(leader)


def test_a_dead_leader_is_failed_over_and_the_next_unmasks_without_it(services):
    swarm = Swarm(services, "sf", leader_timeout_ms=4000)
    merged0 = swarm.round0()
    leader = contract.leader_order(merged0, 1, list(SITES))[0]
    others = [s for s in SITES if s != leader]
    swarm.submit(leader, weight=4)
    swarm.wait_for(lambda: leader in swarm.ledger.get_round("sf", 1)["submissions"])
    services.stop(leader, signal.SIGKILL)
    jobs = {s: swarm.submit(s, weight=w) for s, w in zip(others, (2, 5), strict=True)}
    results = {s: wait_sync(swarm.urls[s], j, timeout_s=120) for s, j in jobs.items()}
    assert all(r["state"] == "done" and r["round"] == 1 for r in results.values()), results
    rnd = swarm.ledger.get_round("sf", 1)
    assert rnd["failovers"] >= 1 and rnd["published_by"] in others
    assert rnd["sealed"]["survivors"] == sorted(others) and rnd["sealed"]["dropped"] == [leader]
    swarm.assert_mean_of(swarm.merged(rnd["published_by"], rnd["merged_sha256"]), others)


def test_sites_of_a_task_must_agree_on_secure_aggregation(services):
    urls = {s: services.start(s) for s in SITES[:2]}
    spec = secure_spec()
    assert httpx.post(f"{urls['site-a']}/v1/local/join", json={"task": "sm", "spec": spec}).status_code == 200
    plain = {k: v for k, v in spec.items() if k != "secure_aggregation"}
    r = httpx.post(f"{urls['site-b']}/v1/local/join", json={"task": "sm", "spec": plain})
    assert r.status_code == 409, r.text
    assert "secure_aggregation" in r.text


def test_three_sites_train_a_keras_model_by_secure_aggregation_over_mutual_tls(tmp_path):
    """Real training through the launcher: every merge after round 0 is sealed with all three, none stored plain."""
    workdir = tmp_path / "run"
    launch_synthetic(
        workdir,
        "sec",
        "--epochs",
        "2",
        "--samples",
        "320",
        "--sync-frequency",
        "4",
        "--secure-aggregation",
        launcher_args=("--mtls", "--keep-rounds", "0"),
    )
    ledger = EmbeddedLedger(workdir / "ledger.sqlite", identity="observer")
    task = ledger.get_task("sec")
    assert task["spec"]["secure_aggregation"] is True and task["status"] == "done"
    history = ledger.get_history("sec")["rounds"]
    merges = [r for r in history if r["previous_merged_sha256"] is not None]
    assert len(merges) >= 3
    for rnd in merges:
        assert rnd["sealed"]["survivors"] == sorted(SITES), rnd["sealed"]
        assert rnd["sealed"]["by"] == rnd["published_by"]
        assert sorted(rnd["masked"]) == sorted(SITES)
    finals = [(workdir / s / "final.safetensors").read_bytes() for s in SITES]
    assert all(f == finals[0] for f in finals), "sites ended with different weights"
    assert serialization.sha256_hex(finals[0]) == history[-1]["merged_sha256"]
    # The leader of each merge stored the masked models, never a contribution in the clear.
    for rnd in merges:
        store = BlobStore(workdir / rnd["published_by"] / "blobs")
        for site in SITES:
            data = store.get(rnd["masked"][site]["sha256"])
            assert decode_masked(data)[0]["node"] == site
    results = [json.loads((workdir / s / "result.json").read_text()) for s in SITES]
    assert results[0]["test_accuracy"] > 0.8, results
