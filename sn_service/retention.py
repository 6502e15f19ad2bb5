"""Keeping a site's blob store bounded: blobs of rounds long merged are deleted.

Each round leaves contributions and a merged model in the stores of the
sites that made, fetched or merged them (for the paper's classifier, about
7 MB each). Without pruning a long task fills the disk. Once a round is
``keep_rounds`` rounds behind the task's newest round, nobody needs its
blobs: a site that comes back later takes the latest merged model, never an
old one (``RoundDriver.follow``). What is kept, for every task this site
joined:

- every blob of the last ``keep_rounds`` rounds and of the round still open
  (contributions the leader or a failover leader may still fetch);
- the task's latest merged model (late joiners and restarted sites load it);
- any blob written or stored again in the last ``grace_s`` seconds (a
  contribution uploaded but not yet on the ledger).

Finished rounds never change on the ledger, so each is read once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from sn_service.blob_store import BlobStore
from sn_service.ledger.base import ContractError, Ledger

log = logging.getLogger("sn_service.retention")


def round_blobs(rnd: dict) -> set[str]:
    """The blobs a round refers to: its contributions (masked ones and their shares too) and its merged model."""
    shas = {sub["sha256"] for sub in rnd.get("submissions", {}).values()}
    for entry in rnd.get("masked", {}).values():
        shas |= {entry["sha256"], entry["shares_sha256"]}
    if rnd.get("merged_sha256"):
        shas.add(rnd["merged_sha256"])
    return shas


class BlobRetention:
    """Deletes the blobs of rounds more than ``keep_rounds`` behind, for one site's store.

    Args:
        store: the site's blob store.
        ledger: the ledger, to read rounds.
        keep_rounds: how many of a task's latest rounds keep their blobs; 0 keeps everything.
        grace_s: a blob written (or stored again) this recently is never deleted.
        tasks: the tasks this site joined (called at each pruning).
    """

    def __init__(
        self,
        store: BlobStore,
        ledger: Ledger,
        keep_rounds: int,
        grace_s: float,
        tasks: Callable[[], Iterable[str]],
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        if keep_rounds < 0:
            raise ValueError(f"keep_rounds={keep_rounds}: pass 0 (keep every blob) or a number of rounds >= 1")
        self.store = store
        self.ledger = ledger
        self.keep_rounds = keep_rounds
        self.grace_s = grace_s
        self.tasks = tasks
        self.log = logger or log
        self._done_rounds: dict[tuple[str, int], set[str]] = {}  # finished rounds never change
        self._merged: dict[tuple[str, int], set[str]] = {}  # the merged model of each of those
        # Blobs of a round the ledger does not name: a merged model handed over by a leader that then
        # could not publish it (another leader merged the round). Deleted with the round's others.
        self._handed_over: dict[tuple[str, int], set[str]] = {}
        self._pruned_below: dict[str, int] = {}
        self._lock = threading.Lock()
        self.deleted = 0
        self.freed_bytes = 0

    def remember(self, task: str, round_no: int, sha256: str) -> None:
        """Counts ``sha256`` among round ``round_no``'s blobs (a merged model handed over before its publish)."""
        self._handed_over.setdefault((task, round_no), set()).add(sha256)

    def _round(self, task: str, round_no: int) -> set[str]:
        return self._ledger_round(task, round_no) | self._handed_over.get((task, round_no), set())

    def _models(self, task: str, round_no: int) -> set[str]:
        """The merged models among a round's blobs (its own, and any handed over to this site for it)."""
        self._ledger_round(task, round_no)
        return self._merged.get((task, round_no), set()) | self._handed_over.get((task, round_no), set())

    def _ledger_round(self, task: str, round_no: int) -> set[str]:
        key = (task, round_no)
        if key in self._done_rounds:
            return self._done_rounds[key]
        try:
            rnd = self.ledger.get_round(task, round_no)
        except ContractError as exc:
            if exc.code != "ROUND_NOT_FOUND":
                raise
            return set()
        shas = round_blobs(rnd)
        if rnd["status"] == "done":
            self._done_rounds[key] = shas
            self._merged[key] = {rnd["merged_sha256"]}
        elif rnd["status"] == "abandoned":  # over too, with nothing merged
            self._done_rounds[key] = shas
        return shas

    def prune(self, task: str, keep_rounds: int | None = None) -> int:
        """Deletes what ``task``'s old rounds left in the store; returns how many blobs went.

        Runs after a sync; a pruning already under way (another task's) makes
        this one a no-op, the next sync catches up. ``keep_rounds`` overrides
        the configured number for this call (a full disk keeps fewer); a
        service told to keep every blob (0) deletes nothing.
        """
        if self.keep_rounds == 0 or not self._lock.acquire(blocking=False):
            return 0
        try:
            return self._prune(task, self.keep_rounds if keep_rounds is None else max(1, keep_rounds))
        finally:
            self._lock.release()

    def _prune(self, task: str, keep_rounds: int) -> int:
        record = self.ledger.get_task(task)
        first_kept = record["current_round"] - keep_rounds
        start = self._pruned_below.get(task, 0)
        if first_kept <= start:
            return 0  # nothing new to prune: the other tasks need not be read
        records = {name: self.ledger.get_task(name) for name in set(self.tasks()) - {task}}
        records[task] = record
        protected: set[str] = set()
        for name, rec in records.items():
            if rec["latest_merged"]:
                protected.add(rec["latest_merged"]["sha256"])
            for r in range(max(0, rec["current_round"] - keep_rounds), rec["current_round"] + 1):
                protected |= self._round(name, r)
        now = time.time()
        deleted = freed = 0
        revisit = first_kept  # the oldest round with a blob too recent to delete yet
        previous = self._models(task, start - 1) if start > 0 else set()
        for r in range(start, first_kept):
            too_recent = False
            # A merged model's file is never written over: the callback may still hold a memory map of it (a
            # contribution equal to the previous round's model, e.g. a finished site's stand-in, counts too).
            current = self._models(task, r)
            models, previous = current | previous, current
            for sha in self._round(task, r) - protected:
                path = self.store.path(sha)
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if now - stat.st_mtime < self.grace_s:
                    too_recent = True
                    continue
                self.store.delete(sha, reuse=sha not in models)  # a contribution's file may be written over later
                deleted += 1
                freed += stat.st_size
            if too_recent:
                revisit = min(revisit, r)
            elif r < revisit:
                self._done_rounds.pop((task, r), None)
                self._merged.pop((task, r), None)
                self._handed_over.pop((task, r), None)
        self._pruned_below[task] = revisit
        self.deleted += deleted
        self.freed_bytes += freed
        if deleted:
            self.log.info(
                "task %s: deleted %d blobs (%.1f MB) of rounds %d-%d (keeping the last %d rounds)",
                task,
                deleted,
                freed / 2**20,
                start,
                first_kept - 1,
                keep_rounds,
            )
        return deleted
