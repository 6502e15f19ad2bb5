"""The interface every ledger backend offers the swarm-network service."""

from __future__ import annotations

import abc
import time
from typing import Any

from sn_service.contract import ContractError

__all__ = ["ContractError", "Ledger", "LedgerUnavailable", "now_ms"]


def now_ms() -> int:
    """Wall-clock milliseconds: the time base of the ledgers' transaction times and so of every deadline."""
    return int(time.time() * 1000)


class LedgerUnavailable(Exception):
    """The ledger could not be reached or did not answer; the call may be retried."""


class Ledger(abc.ABC):
    """Runs contract transactions and queries as one identity.

    Backends implement ``invoke`` (a transaction that may change state) and
    ``query`` (read only). Both return the contract's JSON result or raise
    ``ContractError`` (refused by the contract) or ``LedgerUnavailable``.
    """

    identity: str

    @abc.abstractmethod
    def invoke(self, fn: str, *args: Any) -> dict:
        """Submits a transaction and waits until it is committed."""

    @abc.abstractmethod
    def query(self, fn: str, *args: Any) -> dict:
        """Evaluates a read-only query."""

    def close(self) -> None:
        """Releases connections."""

    # Typed helpers: one per contract function.
    def init_task(self, task: str, spec: dict) -> dict:
        """InitTask: creates the task or checks that the spec matches."""
        return self.invoke("InitTask", task, spec)

    def register(self, task: str, node: str, endpoint: str, fingerprint: str) -> dict:
        """Register: binds this identity to ``node``."""
        return self.invoke("Register", task, node, endpoint, fingerprint)

    def submit(self, task: str, round_no: int, node: str, sha256: str, weight: int) -> dict:
        """Submit: records this node's weights hash for the round."""
        return self.invoke("Submit", task, round_no, node, sha256, weight)

    def close_round(self, task: str, round_no: int) -> dict:
        """Close: freezes contributors and elects the leader."""
        return self.invoke("Close", task, round_no)

    def publish(self, task: str, round_no: int, node: str, merged_sha256: str) -> dict:
        """Publish: the leader records the merged model's hash."""
        return self.invoke("Publish", task, round_no, node, merged_sha256)

    def failover(self, task: str, round_no: int) -> dict:
        """Failover: passes a round whose leader missed its deadline on."""
        return self.invoke("Failover", task, round_no)

    def finish(self, task: str, node: str) -> dict:
        """Finish: this node's training ended; it keeps contributing."""
        return self.invoke("Finish", task, node)

    def leave(self, task: str, node: str) -> dict:
        """Leave: this node leaves the task."""
        return self.invoke("Leave", task, node)

    def submit_masked(self, task: str, round_no: int, node: str, masked_sha256: str, shares_sha256: str) -> dict:
        """SubmitMasked: records this node's masked model and sealed shares in a closed secure round."""
        return self.invoke("SubmitMasked", task, round_no, node, masked_sha256, shares_sha256)

    def advertise_key(self, task: str, round_no: int, node: str, key: str) -> dict:
        """AdvertiseKey: announces this node's round key of an open secure round before it submits."""
        return self.invoke("AdvertiseKey", task, round_no, node, key)

    def seal(self, task: str, round_no: int, node: str, survivors: list[str]) -> dict:
        """Seal: as the leader of a secure round, names the contributions it unmasks."""
        return self.invoke("Seal", task, round_no, node, ",".join(survivors))

    def get_task(self, task: str) -> dict:
        """The task record."""
        return self.query("GetTask", task)

    def get_round(self, task: str, round_no: int) -> dict:
        """One round record."""
        return self.query("GetRound", task, round_no)

    def get_history(self, task: str) -> dict:
        """Every finished round of the task."""
        return self.query("GetHistory", task)
