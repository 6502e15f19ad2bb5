"""The embedded ledger: transactions over SQLite, shared safely by processes."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import sqlite3

import pytest

from sn_service.contract import ContractError
from sn_service.ledger import EmbeddedLedger
from swarm_wire.serialization import fingerprint

LAYOUT = "f32[4,2];f32[2]"


def spec(**kw):
    s = {
        "fingerprint": fingerprint(LAYOUT),
        "layout": LAYOUT,
        "min_peers": 1,
        "merge_method": "mean",
        "quorum_wait_ms": 0,
        "leader_timeout_ms": 1000,
        "max_rounds": 0,
    }
    s.update(kw)
    return s


def h(x: str) -> str:
    return hashlib.sha256(x.encode()).hexdigest()


def test_round_trip_and_refusal_leaves_state(tmp_path):
    a = EmbeddedLedger(tmp_path / "l.sqlite", identity="id-a")
    a.init_task("t", spec())
    a.register("t", "site-a", "http://a", fingerprint(LAYOUT))
    before = a.get_task("t")
    with pytest.raises(ContractError) as err:
        a.register("t", "site-b", "http://b", fingerprint(LAYOUT))  # one identity, one node
    assert err.value.code == "IDENTITY_IN_USE"
    assert a.get_task("t") == before
    rows = sqlite3.connect(tmp_path / "l.sqlite").execute("SELECT fn, outcome FROM txlog").fetchall()
    assert rows[-1] == ("Register", "refused IDENTITY_IN_USE")


def _hammer(path: str, worker: int, rounds: int) -> None:
    ledger = EmbeddedLedger(path, identity=f"id-{worker}")
    node = f"site-{worker}"
    ledger.register("t", node, f"http://{node}", fingerprint(LAYOUT))
    for r in range(rounds):
        ledger.submit("t", 0, node, h(f"{worker}-{r}"), 1) if r == 0 else None
        # Concurrent read-modify-write of the same task record: last_seen must never go backwards.
        ledger.get_task("t")


def test_concurrent_writers_lose_no_update(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    EmbeddedLedger(path, identity="creator").init_task("t", spec(min_peers=8, quorum_wait_ms=10**9))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, w, 20)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ledger = EmbeddedLedger(path, identity="reader")
    task = ledger.get_task("t")
    rnd = ledger.get_round("t", 0)
    assert sorted(task["nodes"]) == sorted(f"site-{w}" for w in range(8)), "a registration was lost"
    assert sorted(rnd["submissions"]) == sorted(f"site-{w}" for w in range(8)), "a submission was lost"


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        EmbeddedLedger(blocker / "sub" / "l.sqlite", identity="a")


def test_a_missing_ledger_is_created_only_when_asked(tmp_path):
    from sn_service.ledger import LedgerMissing

    path = tmp_path / "sub" / "l.sqlite"
    with pytest.raises(LedgerMissing, match=r"no embedded ledger at .*a new empty ledger would lose"):
        EmbeddedLedger(path, identity="reader", create=False)
    assert not path.exists()
    EmbeddedLedger(path, identity="id-a").init_task("t", spec())
    assert EmbeddedLedger(path, identity="reader", create=False).get_task("t")["task"] == "t"


def test_a_deleted_ledger_is_named_not_recreated_and_a_restored_one_is_read(tmp_path):
    from sn_service.ledger import LedgerMissing

    path = tmp_path / "l.sqlite"
    a = EmbeddedLedger(path, identity="id-a")
    a.init_task("t", spec())
    aside = tmp_path / "backup.sqlite"
    path.rename(aside)
    # The open connection could still read the deleted file: it must not.
    with pytest.raises(LedgerMissing, match=r"l.sqlite is gone \(deleted or moved\)"):
        a.get_task("t")
    with pytest.raises(LedgerMissing):
        a.register("t", "site-a", "http://a", fingerprint(LAYOUT))
    assert not path.exists()
    aside.rename(path)
    assert a.get_task("t")["task"] == "t"
    a.register("t", "site-a", "http://a", fingerprint(LAYOUT))
    assert "site-a" in EmbeddedLedger(path, identity="reader", create=False).get_task("t")["nodes"]
