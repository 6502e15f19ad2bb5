"""``swarm-status``'s rendering of a task, from a real (embedded) ledger's records."""

from __future__ import annotations

import hashlib

from sn_service.ledger import EmbeddedLedger
from sn_service.ledger.base import now_ms
from sn_service.status_view import render_task, snapshot
from swarm_wire.serialization import fingerprint

LAYOUT = "f32[4,2];f32[2]"
SITES = ["site-a", "site-b", "site-c"]


def h(x: str) -> str:
    return hashlib.sha256(x.encode()).hexdigest()


def _spec(**extra) -> dict:
    return {
        "fingerprint": fingerprint(LAYOUT),
        "layout": LAYOUT,
        "min_peers": 2,
        "merge_method": "mean",
        "quorum_wait_ms": 0,
        "leader_timeout_ms": 60_000,
        "max_rounds": 0,
        **extra,
    }


def _secure_swarm(tmp_path) -> dict[str, EmbeddedLedger]:
    ledgers = {s: EmbeddedLedger(tmp_path / "l.sqlite", identity=f"id-{s}") for s in SITES}
    ledgers["site-a"].init_task("t", _spec(secure_aggregation=True))
    for s, ledger in ledgers.items():
        ledger.register("t", s, f"http://{s}", fingerprint(LAYOUT))
    for s, ledger in ledgers.items():  # round 0 aligns the starting point, unmasked
        ledger.submit("t", 0, s, h(f"model-{s}"), 1)
    closed = ledgers["site-a"].close_round("t", 0)
    leader = closed["contributors"][closed["leader_index"]]
    ledgers[leader].publish("t", 0, leader, h(f"model-{leader}"))
    for s, ledger in ledgers.items():
        ledger.submit("t", 1, s, h(f"round key of {s}"), 4)
    ledgers["site-a"].close_round("t", 1)
    return ledgers


def _render(ledger: EmbeddedLedger) -> str:
    return render_task(*snapshot(ledger, "t"), now_ms())


def test_a_secure_round_shows_round_keys_and_masked_models_not_model_hashes(tmp_path):
    ledgers = _secure_swarm(tmp_path)
    for s in SITES[:2]:
        ledgers[s].submit_masked("t", 1, s, h(f"masked {s}"), h(f"shares {s}"))
    text = _render(ledgers["site-a"])
    assert f"submitted round key {h('round key of site-a')[:12]} (weight 4" in text
    assert f"masked model {h('masked site-a')[:12]}" in text
    assert "site-c" in text and "masked model not in yet" in text
    assert "collecting masked models, 2 of 3 in" in text

    ledgers["site-c"].submit_masked("t", 1, "site-c", h("masked site-c"), h("shares site-c"))
    rnd = ledgers["site-a"].get_round("t", 1)
    leader = rnd["contributors"][rnd["leader_index"]]
    ledgers[leader].seal("t", 1, leader, SITES)
    text = _render(ledgers["site-a"])
    assert f"unmasking the sum of 3 sealed by {leader}" in text and "not in yet" not in text


def test_a_plain_round_shows_the_submitted_models_hashes(tmp_path):
    ledger = EmbeddedLedger(tmp_path / "l.sqlite", identity="id-a")
    ledger.init_task("t", _spec())
    ledger.register("t", "site-a", "http://a", fingerprint(LAYOUT))
    ledger.submit("t", 0, "site-a", h("model"), 3)
    text = _render(ledger)
    assert f"submitted {h('model')[:12]} (weight 3" in text and "round key" not in text


def test_a_site_that_advertised_its_round_key_shows_as_training_not_missing(tmp_path):
    ledgers = {s: EmbeddedLedger(tmp_path / "l.sqlite", identity=f"id-{s}") for s in SITES}
    ledgers["site-a"].init_task("t", _spec(secure_aggregation=True, quorum_wait_ms=60_000))
    for s, ledger in ledgers.items():
        ledger.register("t", s, f"http://{s}", fingerprint(LAYOUT))
        ledger.submit("t", 0, s, h(f"model-{s}"), 1)
    closed = ledgers["site-a"].close_round("t", 0)
    leader = closed["contributors"][closed["leader_index"]]
    ledgers[leader].publish("t", 0, leader, h(f"model-{leader}"))
    ledgers["site-b"].advertise_key("t", 1, "site-b", h("key b"))
    ledgers["site-a"].submit("t", 1, "site-a", h("key a"), 1)
    lines = {line.split()[0]: line for line in _render(ledgers["site-a"]).splitlines()[2:5]}
    assert f"training - round key {h('key b')[:12]} advertised " in lines["site-b"]
    assert "the round waits for its model" in lines["site-b"]
    assert "MISSING - the round waits for it" in lines["site-c"]  # nothing from site-c: missing indeed
    assert f"submitted round key {h('key a')[:12]}" in lines["site-a"]


def test_a_round_led_by_its_last_contributor_says_it_is_abandoned_next_and_an_abandoned_round_says_so(tmp_path):
    clock = [1_000_000]  # the ledger's transaction times, moved on by hand: no wall clock in the test
    ledgers = {s: EmbeddedLedger(tmp_path / "l.sqlite", identity=f"id-{s}", clock_ms=lambda: clock[0]) for s in SITES}
    ledgers["site-a"].init_task("t", _spec(leader_timeout_ms=1000))
    for s, ledger in ledgers.items():
        ledger.register("t", s, f"http://{s}", fingerprint(LAYOUT))
    for s in SITES[:2]:
        ledgers[s].submit("t", 0, s, h(f"model-{s}"), 1)
    closed = ledgers["site-c"].close_round("t", 0)
    clock[0] += 1000
    ledgers["site-c"].failover("t", 0)
    clock[0] += 1500  # the second leader's deadline passed 0.5 s ago
    text = render_task(*snapshot(ledgers["site-a"], "t"), clock[0])
    assert f"closed, leader {closed['contributors'][1]} merging 2 models" in text
    assert "deadline passed 0.5 s ago: abandoned due" in text and "failover due" not in text  # it led last

    ledgers["site-c"].failover("t", 0)
    text = render_task(*snapshot(ledgers["site-a"], "t"), clock[0])
    assert "round 1 open since" in text and "latest merged: none yet" in text
    (line,) = [line for line in text.splitlines() if line.strip().startswith("0 ")]
    assert "ABANDONED after 2 failovers: none of its 2 contributors" in line
    assert ", ".join(closed["contributors"]) in line
