"""RoundDriver's handling of an unreachable ledger (a fake ledger call; the real outages are in
tests/integration/test_fabric_ledger.py and test_multihost_fabric.py)."""

from __future__ import annotations

import logging
import time

import pytest

from sn_service.ledger.base import LedgerUnavailable
from sn_service.round_protocol import RoundDriver, SyncFailed, WaitState


class FlakyCall:
    """A ledger call that is unreachable for ``down_s`` seconds, then answers."""

    __name__ = "get_round"

    def __init__(self, down_s: float) -> None:
        self.until = time.monotonic() + down_s
        self.calls = 0
        self.seen_waits: list[tuple[str, str]] = []
        self.wait: WaitState | None = None

    def __call__(self, *args: object) -> dict:
        self.calls += 1
        if self.wait is not None:
            self.seen_waits.append((self.wait.phase, self.wait.waiting_for))
        if time.monotonic() < self.until:
            raise LedgerUnavailable("peer0.org1 down (test)")
        return {"round": 7}


def driver() -> RoundDriver:
    return RoundDriver("site-a", ledger=None, store=None, peers=None, log_every_s=0.2)  # type: ignore[arg-type]


def test_an_outage_longer_than_a_minute_is_waited_out_until_the_sync_deadline(monkeypatch, caplog):
    # A cut lasting past the old fixed 60 s retry must not fail the sync while its deadline allows;
    # time runs 100x faster here so the test takes about a second.
    real_monotonic, real_sleep = time.monotonic, time.sleep
    start = real_monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: start + 100 * (real_monotonic() - start))
    monkeypatch.setattr(time, "sleep", lambda s: real_sleep(s / 100))
    call = FlakyCall(down_s=90.0)
    wait = WaitState(phase="waiting for the merge", waiting_for="leader site-b to merge 3 models")
    call.wait = wait
    with caplog.at_level(logging.INFO, logger="sn_service.rounds"):
        result = driver()._ledger(call, time.monotonic() + 300.0, "task", 7, wait=wait)
    assert result == {"round": 7}
    assert call.calls > 2
    # While it retried, the wait said so (the callback and /v1/status show it) ...
    assert any(phase == "waiting for the ledger" and "peer0.org1 down" in what for phase, what in call.seen_waits)
    # ... and afterwards it says again what the sync waits for.
    assert (wait.phase, wait.waiting_for) == ("waiting for the merge", "leader site-b to merge 3 models")
    text = caplog.text
    assert "ledger unreachable during get_round" in text
    assert "ledger reachable again" in text


def test_an_outage_past_the_sync_deadline_fails_the_sync_naming_the_ledger():
    call = FlakyCall(down_s=60.0)
    with pytest.raises(SyncFailed, match=r"ledger unreachable during get_round .*deadline.*peer0.org1 down"):
        driver()._ledger(call, time.monotonic() + 0.5, "task", 7)


def test_a_reachable_ledger_is_called_once_and_logs_nothing(caplog):
    call = FlakyCall(down_s=0.0)
    with caplog.at_level(logging.INFO, logger="sn_service.rounds"):
        assert driver()._ledger(call, time.monotonic() + 5.0, "task", 7) == {"round": 7}
    assert call.calls == 1
    assert "ledger" not in caplog.text
