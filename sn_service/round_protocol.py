"""The round protocol, seen from one site: submit, close, merge, publish, fetch.

``RoundDriver.sync`` is one sync of DESIGN.md: store the site's blob,
``Submit`` its hash, then follow the round on the ledger until its merged
model is published and fetched. Any contributor closes a closable round;
the leader fetches every contribution, checks it against the ledger hash,
merges and publishes; a leader past its deadline is failed over. Every wait
has a deadline and reports what it waits for and on whom.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sn_service import contract
from sn_service.blob_store import BlobRefused, BlobStore, IncomingBlob
from sn_service.ledger.base import ContractError, Ledger, LedgerUnavailable, now_ms
from sn_service.merge.running_mean import RunningMean
from sn_service.merge.stacked_models import (  # merge_models: importable from here
    StackBuffers,
    StackedModels,
    merge_models,  # noqa: F401
)
from sn_service.metrics import ServiceMetrics
from sn_service.peer_client import BlobFetchError, PeerClient, PeerRequestError
from sn_service.secagg.rounds import SecureRounds
from sn_service.streamed_merge import MergeTooLarge, copy_model, merge_files
from swarm_wire import safetensors_files, serialization
from swarm_wire.safetensors_files import TensorSpan

log = logging.getLogger("sn_service.rounds")


class SyncFailed(Exception):
    """A sync could not complete; the message says what it waited for and on whom."""


class HandoverRefused(Exception):
    """A merged model handed over by a peer was not taken; ``code``, ``status`` and the message say why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RoundAbandoned(Exception):
    """The round a sync followed was abandoned: every contributor failed to lead it in turn (``Failover``)."""

    def __init__(self, rnd: dict) -> None:
        super().__init__(f"round {rnd['round']} was abandoned")
        self.rnd = rnd


@dataclass
class SyncResult:
    """The outcome of one sync: the merged model to load (it is in the blob store)."""

    round: int
    merged_sha256: str
    task_status: str
    contributed: bool


@dataclass
class WaitState:
    """What a sync is waiting for right now (shown by /v1/status and the callback)."""

    round: int | None = None
    phase: str = "starting"
    waiting_for: str = ""
    since: float = field(default_factory=time.time)
    # Seconds spent in each part of the sync (receive, store, submit, waits, merge, fetch, ...).
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Adds the time spent in the ``with`` block to ``timings[part]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(part, time.perf_counter() - t0)

    def add_time(self, part: str, seconds: float) -> None:
        """Adds ``seconds`` to ``timings[part]``."""
        self.timings[part] = self.timings.get(part, 0.0) + seconds

    def as_dict(self) -> dict:
        """JSON form with the wait's age and the time spent per part so far (ms)."""
        return {
            "round": self.round,
            "phase": self.phase,
            "waiting_for": self.waiting_for,
            "waiting_s": round(time.time() - self.since, 1),
            "timings_ms": {k: round(v * 1000, 2) for k, v in self.timings.items()},
        }


# Durations and times in a wait's text ("last seen 3 s ago", "failover in 2.5 s", "at 1796121638749 ms").
_CLOCK_RE = re.compile(r"\d+(?:\.\d+)? m?s\b")


def _without_clock(text: str) -> str:
    """``text`` with its durations and times blanked: what is waited for, not for how long."""
    return _CLOCK_RE.sub("…", text)


class ModelCache:
    """The few most recent verified models, parsed, by sha256: a sync need not re-read its own blobs."""

    def __init__(self, capacity: int = 6) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, list[np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> list[np.ndarray] | None:
        """The parsed model, or None."""
        with self._lock:
            arrays = self._items.get(sha256)
            if arrays is not None:
                self._items.move_to_end(sha256)
            return arrays

    def put(self, sha256: str, arrays: list[np.ndarray]) -> None:
        """Remembers a verified model, forgetting the oldest beyond capacity."""
        with self._lock:
            self._items[sha256] = arrays
            self._items.move_to_end(sha256)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class CheckedBlobs:
    """Stored blobs whose hash and layout this process has checked, with their tensors' places in the file.

    The streamed path's ``ModelCache``: a blob of gigabytes is not re-hashed and re-checked each time
    it is read (the leader's own contribution, a merged model it just wrote).
    """

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, list[TensorSpan]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> list[TensorSpan] | None:
        """The checked blob's tensor spans, or None."""
        with self._lock:
            return self._items.get(sha256)

    def put(self, sha256: str, spans: list[TensorSpan]) -> None:
        """Remembers a checked blob, forgetting the oldest beyond capacity."""
        with self._lock:
            self._items[sha256] = spans
            self._items.move_to_end(sha256)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


HANDOVER_STALL_S = 2.0  # a hand-over arriving with no new byte for this long is not waited for


@dataclass
class Arriving:
    """A hand-over being received: the bytes so far, and set once it is taken or refused."""

    bytes: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def add(self, n: int) -> None:
        self.bytes += n


class RoundDriver:
    """Drives merge rounds for one site against a ledger.

    Args:
        site: this site's node name on the ledger.
        ledger: the ledger backend, acting as this site's identity.
        store: this site's blob store.
        peers: the client that fetches blobs from other sites.
        poll_s: how often a waiting sync re-reads the ledger at first; while the round does not change
            and no peer wakes it, twice as long each time up to ``poll_max_s``, but never past the next
            deadline it acts on (the quorum wait's end, the leader's deadline).
        poll_max_s: the longest wait between two reads of a round that does not change.
        log_every_s: how often a continuing wait is logged again.
        endpoint: where this site's service is registered; a sync fails if the ledger names
            another (a second service took the site over).
        stream_above_bytes: a task whose largest blob (``max_blob_bytes`` of its layout) is above
            this takes the streamed path: blobs go from socket or file to the store chunk by chunk,
            are checked from the file, merged a column chunk at a time and handed over from the file,
            never whole in memory. Smaller models stay in memory (faster). Secure aggregation is
            always in memory.
    """

    def __init__(
        self,
        site: str,
        ledger: Ledger,
        store: BlobStore,
        peers: PeerClient,
        poll_s: float = 0.02,
        log_every_s: float = 5.0,
        metrics: ServiceMetrics | None = None,
        poll_max_s: float = 0.5,
        endpoint: str | None = None,
        stream_above_bytes: int = 256 << 20,
    ) -> None:
        self.site = site
        self.endpoint = endpoint
        self.stream_above_bytes = stream_above_bytes
        self.checked = CheckedBlobs()
        self.ledger = ledger
        self.store = store
        self.peers = peers
        self.poll_s = poll_s
        self.poll_max_s = max(poll_s, poll_max_s)
        self.log_every_s = log_every_s
        self.log = logging.LoggerAdapter(log, {"site": site})
        self.metrics = metrics or ServiceMetrics(site)
        self.rejected_blobs: deque[dict] = deque(maxlen=100)  # the latest refusals, for /v1/status
        self.models = ModelCache()
        # Push instead of poll: who changes a round wakes those who wait on the change (the closer the
        # leader, the leader everyone); polling (see poll_s) stays as the fallback.
        self._wakeups: dict[str, threading.Event] = {}
        self._wakeups_lock = threading.Lock()
        self._notifier = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")
        # The merged model goes to the round's other contributors before it is published (see _hand_over).
        self._handovers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="handover")
        # Hand-overs of merged models arriving now, by sha256 (see receiving).
        self._receiving: dict[str, list[Arriving]] = {}
        self._receiving_lock = threading.Lock()
        # The matrices of merges done, for the next merge of the same shape (see StackBuffers).
        self.stack_buffers = StackBuffers()
        # Store writes off a round's critical path (a merged model while it is handed over, a masked blob
        # while it is served, the masked blobs a secure round's leader was sent).
        self._writes = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-write")
        # Blobs peers may fetch now, served from memory while ``serve_then_store`` writes them to the store.
        self._serving: dict[str, bytes | memoryview] = {}
        self._serving_lock = threading.Lock()
        self.on_handover: Callable[[str, int, str], None] | None = None  # (task, round, sha256) taken over
        self.handover_settle_s = 3.0
        self.secure = SecureRounds(self)  # the rounds of tasks with spec.secure_aggregation

    # ------------------------------------------------------------------ wake-ups

    def close(self) -> None:
        """Stops the background pools (wake-ups, hand-overs, premasking); queued work is dropped, running work ends."""
        self._notifier.shutdown(wait=False, cancel_futures=True)
        self._handovers.shutdown(wait=False, cancel_futures=True)
        self._writes.shutdown(wait=True)  # a queued blob is written, not half written
        self.secure.close()

    def _wakeup(self, task: str) -> threading.Event:
        with self._wakeups_lock:
            return self._wakeups.setdefault(task, threading.Event())

    def wake(self, task: str) -> None:
        """A peer says a round of ``task`` changed: re-read the ledger now instead of at the next poll."""
        self._wakeup(task).set()

    def _notify(self, rec: dict, nodes: list[str], round_no: int) -> None:
        """Wakes ``nodes`` (not this site) in the background: a hint to re-read the ledger, nothing more."""
        for node in nodes:
            info = rec["nodes"].get(node)
            if node != self.site and info is not None and info["status"] != "left":
                try:
                    self._notifier.submit(self._poke, info["endpoint"], info["identity"], rec["task"], round_no)
                except RuntimeError:  # the service is stopping: the others poll anyway
                    return

    def notify_all(self, rec: dict) -> None:
        """Wakes every other node of the task (``rec``): e.g. this site left, and a round may close without it."""
        self._notify(rec, list(rec["nodes"]), rec["current_round"])

    def _poke(self, endpoint: str, identity: str, task: str, round_no: int) -> None:
        try:
            self.peers.post(endpoint, f"/v1/notify?task={task}&round={round_no}", identity, timeout_s=1.0)
        except PeerRequestError as exc:  # it polls anyway
            self.log.debug("could not wake %s: %s", endpoint, exc)

    # ------------------------------------------------------------------ streamed blobs

    def streamed(self, spec: dict) -> bool:
        """Whether a task (its spec) takes the streamed path: a model above ``stream_above_bytes``, not secure."""
        if spec.get("secure_aggregation"):
            return False
        return serialization.max_blob_bytes(spec["layout"]) > self.stream_above_bytes

    def checker(self, layout: str) -> tuple[Callable[[Path], None], list[list[TensorSpan]]]:
        """A ``check`` for the store (a blob file's header, layout and finite values) and where it leaves the spans."""
        found: list[list[TensorSpan]] = []

        def check(path: Path) -> None:
            found.append(safetensors_files.check_file(path, layout, serialization.max_blob_bytes(layout)))

        return check, found

    def check_stored(self, sha256: str, layout: str) -> list[TensorSpan]:
        """A stored blob's spans after checking its hash (chunk by chunk) and layout, unless checked before.

        Raises KeyError (missing), ValueError (corrupt on disk) or WeightsFormatError.
        """
        spans = self.checked.get(sha256)
        if spans is not None and not self.store.has(sha256):
            raise KeyError(sha256)  # checked once, pruned since
        if spans is None:
            path = self.store.verify(sha256)
            spans = safetensors_files.check_file(path, layout, serialization.max_blob_bytes(layout))
            self.checked.put(sha256, spans)
        return spans

    def _fetch_file(
        self, node_info: dict, sha256: str, layout: str, per_read_s: float, total_s: float
    ) -> tuple[int, list[TensorSpan]]:
        """Streams a peer's blob into the store, checked on the way (hash) and as a file (layout); size, spans."""
        check, found = self.checker(layout)
        size = self.peers.fetch_to_store(
            node_info["endpoint"],
            sha256,
            serialization.max_blob_bytes(layout),
            self.store,
            node_info["identity"],
            timeout_s=per_read_s,
            total_s=total_s,
            check=check,
        )
        self.checked.put(sha256, found[0])
        return size, found[0]

    # ------------------------------------------------------------------ ledger

    def _ledger(self, call: Callable[..., dict], deadline: float, *args: object, wait: WaitState | None = None) -> dict:
        """Runs ``call(*args)`` on the ledger, retrying with backoff while it is unreachable.

        An unreachable ledger (this site's peer down, its host cut off, too few organisations' peers
        up to endorse) is waited out until the sync's own deadline (``syncTimeoutSeconds``), not for
        a fixed time: a site cut off for a few minutes must carry on when it is back. The wait is not
        silent: logged at once and then every ``log_every_s``, and shown in ``wait`` (the callback's
        progress and ``/v1/status``) as "the ledger".
        """
        what = call.__name__
        delay = 0.05
        t0 = time.monotonic()
        last_log = -math.inf
        before = (wait.phase, wait.waiting_for) if wait is not None else None
        while True:
            try:
                result = call(*args)
            except LedgerUnavailable as exc:
                waited = time.monotonic() - t0
                if time.monotonic() + delay > deadline:
                    raise SyncFailed(
                        f"ledger unreachable during {what} for {waited:.0f} s, until the sync's deadline: {exc}"
                    ) from exc
                if wait is not None:
                    self._set_wait(
                        wait, "waiting for the ledger", f"unreachable during {what} for {waited:.0f} s: {exc}"
                    )
                if time.monotonic() - last_log >= self.log_every_s:
                    last_log = time.monotonic()
                    self.log.warning(
                        "ledger unreachable during %s for %.0f s (%s); retrying until the sync's deadline in %.0f s",
                        what,
                        waited,
                        exc,
                        deadline - time.monotonic(),
                    )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                if before is not None and wait is not None and wait.phase == "waiting for the ledger":
                    self._set_wait(wait, *before)
                if last_log > -math.inf:
                    self.log.info("ledger reachable again after %.0f s (%s)", time.monotonic() - t0, what)
                return result

    # ------------------------------------------------------------------ join

    def join(self, task: str, spec: dict, endpoint: str, timeout_s: float = 60.0) -> dict:
        """InitTask (or check the spec) and Register this site; returns the task record."""
        deadline = time.monotonic() + timeout_s
        try:
            self._ledger(self.ledger.init_task, deadline, task, spec)
        except ContractError as exc:
            if exc.code == "SPEC_MISMATCH":
                existing = self._ledger(self.ledger.get_task, deadline, task)["spec"]
                if existing["layout"] != spec["layout"]:
                    diff = serialization.describe_layout_difference(spec["layout"], existing["layout"])
                    raise ContractError(
                        "MODEL_MISMATCH",
                        f"this site's model does not match task {task!r}: {diff}. Every site must build "
                        "the same architecture (same layers, shapes and dtypes, in the same order).",
                    ) from exc
            raise
        record = self._ledger(self.ledger.register, deadline, task, self.site, endpoint, spec["fingerprint"])
        self.log.info(
            "joined task %s (round %d open, %d nodes: %s)",
            task,
            record["current_round"],
            len(record["nodes"]),
            ", ".join(sorted(record["nodes"])),
        )
        return record

    # ------------------------------------------------------------------ fetching

    def fetch_merged(
        self, task_rec: dict, sha256: str, publisher: str | None, deadline: float, wait: WaitState | None = None
    ) -> None:
        """Makes sure a merged blob is in our store: else from its publisher, else from any node."""
        if self.store.has(sha256) or self._handed_over_meanwhile(sha256, deadline):
            return
        layout = task_rec["spec"]["layout"]
        limit = serialization.max_blob_bytes(layout)
        nodes = task_rec["nodes"]
        order = ([publisher] if publisher in nodes else []) + sorted(n for n in nodes if n != publisher)
        errors = []
        while time.monotonic() < deadline:
            for node in order:
                if node == self.site:
                    continue
                if wait is not None:
                    # Said before the attempt: an unreachable peer can hold it for the whole timeout.
                    last = f"; last failure: {errors[-1]}" if errors else ""
                    self._set_wait(wait, "fetching the merged model", f"from {node}{last}")
                try:
                    timeout_s = min(self.peers.timeout_s, max(1.0, deadline - time.monotonic()))
                    if self.streamed(task_rec["spec"]):
                        total_s = min(self.peers.transfer_timeout_s(limit), max(1.0, deadline - time.monotonic()))
                        size, _ = self._fetch_file(nodes[node], sha256, layout, timeout_s, total_s)
                        self.metrics.bytes_received.inc(size)
                        return
                    data = self.peers.fetch(nodes[node]["endpoint"], sha256, limit, nodes[node]["identity"], timeout_s)
                    self.metrics.bytes_received.inc(len(data))
                    serialization.from_bytes(data, layout)
                    self.store.put(data, sha256)
                    return
                except (BlobFetchError, serialization.WeightsFormatError) as exc:
                    self._count_rejection(exc)
                    errors.append(f"{node}: {exc}")
                    self.log.warning("merged model %s... not had from %s: %s", sha256[:12], node, exc)
            if wait is not None and errors:
                self._set_wait(wait, "fetching the merged model", f"retrying in 1 s; last failure: {errors[-1]}")
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        raise SyncFailed(f"could not fetch merged model {sha256[:12]}...: " + "; ".join(errors[-len(order) :]))

    def latest(self, task: str, timeout_s: float = 120.0) -> SyncResult | None:
        """The task's latest merged model, or None before the first merge."""
        deadline = time.monotonic() + timeout_s
        rec = self._ledger(self.ledger.get_task, deadline, task)
        latest = rec["latest_merged"]
        if latest is None:
            return None
        self.fetch_merged(rec, latest["sha256"], latest["node"], deadline)
        return SyncResult(latest["round"], latest["sha256"], rec["status"], contributed=False)

    # ------------------------------------------------------------------ sync

    def sync(
        self,
        task: str,
        blob: bytes,
        weight: int,
        timeout_s: float,
        wait: WaitState | None = None,
        arrays: list[np.ndarray] | None = None,
        sha256: str | None = None,
    ) -> SyncResult:
        """Contributes ``blob`` to the open round and returns the round's merged model.

        ``blob`` None: the contribution is already in the store as ``sha256``, checked (the streamed
        path: a model too big to hold in memory).

        If the round closed before our submission arrived, our update is
        dropped and the merged model of that round is returned (logged).
        If the task is over, the latest merged model is returned.
        """
        wait = wait or WaitState()
        deadline = time.monotonic() + timeout_s
        if blob is None and sha256 is None:
            raise ValueError("sync needs the blob or the sha256 of a stored one")
        while True:
            with wait.timed("ledger reads"):
                rec = self._ledger(self.ledger.get_task, deadline, task, wait=wait)
            if contract.is_secure(rec):  # the plain model stays in memory; the ledger gets a round key
                if blob is None:
                    blob = self.store.get(sha256)  # type: ignore[arg-type]
                sha256 = self.secure.key_for(task, rec["current_round"], rec["spec"]["layout"], blob, arrays, weight)
            elif sha256 is None:
                with wait.timed("store"):
                    sha256 = self.store.put(blob)
                if arrays is not None:  # already parsed and checked against the layout by the caller
                    self.models.put(sha256, arrays)
            registered = rec["nodes"].get(self.site, {}).get("endpoint")
            if self.endpoint is not None and registered not in (None, self.endpoint):
                raise SyncFailed(
                    f"the ledger now has {self.site} at {registered}, not at this service ({self.endpoint}): another "
                    f"swarm-sn took the site over; stop one of them (one site is one service)"
                )
            if rec["status"] == "done":
                result = self.latest(task, max(1.0, deadline - time.monotonic()))
                if result is None:
                    raise SyncFailed(f"task {task} is over and has no merged model")
                return result
            round_no = rec["current_round"]
            contributed = True
            try:
                with wait.timed("submit"):
                    self._ledger(self.ledger.submit, deadline, task, round_no, self.site, sha256, weight, wait=wait)
                self.log.info("round %d: submitted %s... (weight %d)", round_no, sha256[:12], weight)
            except ContractError as exc:
                if exc.code == "WRONG_ROUND":
                    continue  # the round moved on between our read and our submit
                if exc.code in ("ROUND_CLOSED", "DUPLICATE_SUBMISSION"):
                    contributed = False
                    self.log.warning(
                        "round %d: our update is not part of it (%s); taking its merged model", round_no, exc.code
                    )
                elif exc.code == "TASK_DONE":
                    continue
                else:
                    raise
            try:
                result = self.follow(task, round_no, deadline, wait, contributed)
            except RoundAbandoned as exc:
                # Nobody merged it (a contributor cut off after Close held what the others needed): our
                # update is in no merged model yet, so it goes to the round opened in its place.
                self._abandoned(rec, exc.rnd)
                continue
            if contract.is_secure(rec) and result.task_status != "done":
                # While the trainer works towards the next sync: advertise our key of the next round, premask.
                self.secure.prepare(task, result.round + 1, rec["spec"]["layout"])
            return result

    def _abandoned(self, rec: dict, rnd: dict) -> None:
        """Logs and counts a round this sync followed that was abandoned; frees what a secure round held."""
        self.metrics.rounds_abandoned.inc()
        self.log.warning(
            "round %d: abandoned after %d failovers: none of its contributors (%s) could merge it; "
            "submitting to the next round again",
            rnd["round"],
            rnd["failovers"],
            ", ".join(rnd["contributors"]),
        )
        if contract.is_secure(rec):
            self.secure.abandon(rec["task"], rnd["round"])

    def follow(
        self, task: str, round_no: int, deadline: float, wait: WaitState, contributed: bool = True
    ) -> SyncResult:
        """Follows one round until its merged model is fetched; closes, leads or fails over as needed.

        Raises RoundAbandoned when the round is abandoned (nothing merged: submit again).
        """
        wait.round = round_no
        led_at: tuple[int, int] | None = None
        last_log = 0.0
        last_what = ""
        t0 = time.monotonic()
        wakeup = self._wakeup(task)
        quiet = 0  # reads in a row that found the round as before, with no wake-up in between
        last_seen: tuple | None = None
        while True:
            wakeup.clear()  # before reading: a wake-up after the read is not lost
            if time.monotonic() > deadline:
                raise SyncFailed(
                    f"round {round_no}: gave up after {time.monotonic() - t0:.0f} s {wait.phase}: {wait.waiting_for}"
                )
            with wait.timed("ledger reads"):
                rec = self._ledger(self.ledger.get_task, deadline, task, wait=wait)
                rnd = self._ledger(self.ledger.get_round, deadline, task, round_no, wait=wait)
            status = rnd["status"]
            seen = (rec["status"], rec["current_round"], status, len(rnd["submissions"]), rnd["leader_index"])
            quiet, last_seen = (quiet + 1, seen) if seen == last_seen else (0, seen)
            if status == "done":
                if rec["current_round"] <= round_no:
                    # The task was read before this round's publish, which opened the next round or, at
                    # max_rounds, ended the task: read it again, or the caller would not learn the task is over.
                    with wait.timed("ledger reads"):
                        rec = self._ledger(self.ledger.get_task, deadline, task, wait=wait)
                latest = rec["latest_merged"]
                if latest and latest["round"] > round_no:
                    # The swarm merged again since (this site was cut off, paused or slow): catch up with
                    # the newest model, which has this round in it; old rounds' blobs may be pruned.
                    self.log.info(
                        "round %d: merged long since; taking the latest merged model (round %d)",
                        round_no,
                        latest["round"],
                    )
                    round_no = wait.round = latest["round"]
                    merged, publisher = latest["sha256"], latest["node"]
                else:
                    merged, publisher = rnd["merged_sha256"], rnd["published_by"]
                with wait.timed("fetch merged"):
                    self.fetch_merged(rec, merged, publisher, deadline, wait)
                self.metrics.rounds_completed.inc()
                self.log.info("round %d: merged %s... by %s loaded", round_no, merged[:12], publisher)
                return SyncResult(round_no, merged, rec["status"], contributed)
            if status != "done" and rec["status"] == "done":
                # Every site finished while this round waited (e.g. a stand-in's round): nobody else will
                # submit and the task's final model must not change any more: the contract refuses to close
                # or publish a round of a task over (TASK_DONE), so the task's latest merged model is final.
                latest = rec["latest_merged"]
                if latest is None:
                    raise SyncFailed(f"task {task} is over and has no merged model")
                self.fetch_merged(rec, latest["sha256"], latest["node"], deadline, wait)
                return SyncResult(latest["round"], latest["sha256"], "done", False)
            if status == "abandoned":
                raise RoundAbandoned(rnd)
            if status == "open":
                # In the background, the masks of the keys submitted so far (not for the first merge: it takes the
                # leader's initial weights, unmasked; an open round's previous merged hash is set at Close).
                if contract.is_secure(rec) and rec["latest_merged"] is not None and contributed:
                    self.secure.premask(rec, rnd)
                ok, why = contract.closable(rec, rnd, now_ms())
                if ok:
                    try:
                        with wait.timed("close"):
                            closed = self._ledger(self.ledger.close_round, deadline, task, round_no, wait=wait)
                        # The leader has work to do now; in a secure round every contributor (it masks).
                        woken = closed["contributors"] if contract.is_secure(rec) else []
                        self._notify(rec, woken or [closed["contributors"][closed["leader_index"]]], round_no)
                        self.log.info("round %d: closed (%s)", round_no, why)
                    except ContractError as exc:
                        if exc.code not in ("ROUND_NOT_OPEN", "NOT_CLOSABLE", "TASK_DONE"):
                            raise
                    continue
                what = self._describe_wait(rec, rnd, why)
                self._set_wait(wait, "waiting for submissions", what)
            else:  # closed
                if contract.is_secure(rec) and rnd["previous_merged_sha256"] is not None and contributed:
                    self.secure.contribute(rec, rnd, deadline, wait)
                leader = rnd["contributors"][rnd["leader_index"]]
                key = (round_no, rnd["leader_index"])
                if leader == self.site and led_at != key:
                    led_at = key
                    with wait.timed("lead"):
                        self._lead(rec, rnd, deadline, wait)
                    continue
                if now_ms() >= rnd["leader_deadline_ms"]:
                    try:
                        after = self._ledger(self.ledger.failover, deadline, task, round_no, wait=wait)
                        self.metrics.failovers.inc()
                        if after["status"] == "abandoned":
                            self.log.warning(
                                "round %d: leader %s, the last of its contributors in leader order, missed its "
                                "deadline; the round is abandoned and round %d opens",
                                round_no,
                                leader,
                                round_no + 1,
                            )
                            self._notify(rec, list(rec["nodes"]), round_no)  # all of them: submit again
                        else:
                            self._notify(rec, [after["contributors"][after["leader_index"]]], round_no)
                            self.log.warning(
                                "round %d: leader %s missed its deadline; %s leads now",
                                round_no,
                                leader,
                                after["contributors"][after["leader_index"]],
                            )
                    except ContractError as exc:
                        if exc.code not in ("DEADLINE_NOT_PASSED", "ROUND_NOT_CLOSED", "TASK_DONE"):
                            raise
                    continue
                left_s = (rnd["leader_deadline_ms"] - now_ms()) / 1000
                after = "the round is abandoned" if contract.leads_last(rnd) else "failover"
                self._set_wait(
                    wait,
                    "waiting for the merge",
                    f"leader {leader} to merge {len(rnd['contributors'])} models ({after} in {left_s:.1f} s)",
                )
            # A new wait is logged at once, the same wait every log_every_s: a clock in the text (how long
            # ago a site was seen, when a deadline ends) changing is not a new wait.
            what_now = _without_clock(wait.waiting_for)
            changed = what_now != last_what or time.monotonic() - last_log > self.log_every_s
            if changed and time.monotonic() - t0 > 1.0:  # quiet for waits shorter than a second
                self.log.info(
                    "round %d: %s: %s (%.1f s)", round_no, wait.phase, wait.waiting_for, time.time() - wait.since
                )
                last_log = time.monotonic()
                last_what = what_now
            with wait.timed(f"wait: {wait.phase}"):
                if wakeup.wait(self.poll_wait_s(rec, rnd, quiet)):
                    quiet = 0  # a peer says the round changed: read it soon again, if it is not seen yet

    def poll_wait_s(self, rec: dict, rnd: dict, quiet: int) -> float:
        """How long a sync waits before it reads the round again, after ``quiet`` reads that found no change.

        ``poll_s``, doubling with each quiet read up to ``poll_max_s``: who changes a round in a way that
        others must act on wakes them (``_notify``), so reading every ``poll_s`` throughout only burns CPU
        (64 sites on one machine spent most of a round's CPU reading the ledger). Never past the next
        deadline this site acts on by itself: the end of the quorum wait of an open round (it may close the
        round then), the leader's deadline of a closed one (it fails the leader over).
        """
        wait_s = min(self.poll_max_s, self.poll_s * 2 ** min(quiet, 16))
        due_ms = None
        if rnd["status"] == "open" and rnd["first_submit_ms"] is not None:
            due_ms = rnd["first_submit_ms"] + rec["spec"]["quorum_wait_ms"]
        elif rnd["status"] == "closed":
            due_ms = rnd["leader_deadline_ms"]
        left_ms = None if due_ms is None else due_ms - now_ms()
        if left_ms is not None and left_ms > 0:  # (once it passed, what the site does is not timed)
            wait_s = min(wait_s, left_ms / 1000 + 0.002)
        return wait_s

    def leader_wait_s(self, rnd: dict, nbytes: int = 0) -> float:
        """How long a leader may wait on one peer: half its time left (at least 1 s, at most the peer timeout).

        ``nbytes``: the size of what goes to or comes from the peer; the peer timeout then grows with it
        (``PeerClient.transfer_timeout_s``), still within half the leader's time left.

        A site that stalls (paused, or its link cut: packets dropped, no refusal) must not hold the merge
        past the leader's deadline, and the other half is there to merge, store and publish (a ledger
        transaction, seconds on a loaded host). With 3/4, a short leader timeout left too little: every
        leader in turn timed out on the same unreachable site and then published too late, and the round
        passed from leader to leader for 40 s+.
        """
        return min(self.peers.transfer_timeout_s(nbytes), max(1.0, 0.5 * (rnd["leader_deadline_ms"] - now_ms()) / 1000))

    @contextlib.contextmanager
    def receiving(self, sha256: str) -> Iterator[Arriving]:
        """Marks a leader's hand-over of ``sha256`` as arriving, until it is taken or refused; the caller
        counts its bytes (``Arriving.add``) so that a wait on it can tell a stalled one."""
        arriving = Arriving()
        with self._receiving_lock:
            self._receiving.setdefault(sha256, []).append(arriving)
        try:
            yield arriving
        finally:
            arriving.done.set()
            with self._receiving_lock:
                now = self._receiving.get(sha256, [])
                if arriving in now:
                    now.remove(arriving)
                if not now:
                    self._receiving.pop(sha256, None)

    def _handed_over_meanwhile(self, sha256: str, deadline: float) -> bool:
        """Whether a hand-over of ``sha256`` arriving now brings it (waited for): then it need not be fetched.

        The leader publishes once one site took the model; the others' copies may still be on the way.
        Fetching it again from the leader would move the model twice and take longer. A hand-over that
        brings no byte for ``HANDOVER_STALL_S`` (its sender gone or cut off) is not waited for any longer.
        """
        with self._receiving_lock:
            arriving = list(self._receiving.get(sha256, []))
        for each in arriving:
            seen, since = each.bytes, time.monotonic()
            while not each.done.wait(0.1) and time.monotonic() < deadline:
                if each.bytes != seen:
                    seen, since = each.bytes, time.monotonic()
                elif time.monotonic() - since > HANDOVER_STALL_S:
                    return False
        return bool(arriving) and self.store.has(sha256)

    def store_later(self, blob: bytes | memoryview, sha256: str) -> Future:
        """Stores a merged model in the background (e.g. while it is handed over; see ``held_elsewhere``)."""
        return self._writes.submit(self.store.put, blob, sha256)

    def serve_then_store(self, blob: bytes | memoryview, sha256: str) -> None:
        """Makes ``blob`` fetchable by peers at once (from memory) and stores it in the background.

        For a blob whose hash goes on the ledger now and that a peer fetches at once (a secure round's
        masked model): its write is off the round's critical path. A write that fails is logged (the blob
        is then not served any more; the leader drops the contribution, as for a site it cannot reach).
        """
        with self._serving_lock:
            self._serving[sha256] = blob

        def write() -> None:
            try:
                self.store.put(blob, sha256)
            except OSError as exc:
                self.log.error("could not store blob %s...: %s", sha256[:12], exc)
            finally:
                with self._serving_lock:
                    self._serving.pop(sha256, None)

        try:
            self._writes.submit(write)
        except RuntimeError:  # shutting down: write it now
            write()

    def serving(self, sha256: str) -> bytes | memoryview | None:
        """A blob being stored by ``serve_then_store``, until it is in the store (then None: serve the file)."""
        with self._serving_lock:
            return self._serving.get(sha256)

    def held_elsewhere(
        self,
        rec: dict,
        rnd: dict,
        blob: bytes | memoryview | Path,
        sha256: str,
        wait: WaitState,
        skip: Collection[str] = (),
        stored: Future | None = None,
    ) -> bool:
        """Hands the merged model to the round's other contributors; whether one took it (or there are none).

        A merged model on the ledger must be had from someone: published while only its leader held it,
        a leader cut off or gone just after publishing would leave every site waiting for it (seen with a
        site host cut off the network). So the leader publishes only once another contributor holds it.
        The other hand-overs go on in the background; a site that gets the model this way need not fetch
        it after the publish either. ``skip``: contributors not to try (their blob could not be had).
        ``blob``: the bytes, or the stored file (sent from disk, a megabyte at a time). ``stored``: our own
        store's write of it (``store_later``), waited for after the hand-over (its error raised): the
        sites fetch the model from us once it is published.
        """
        # In leader order after this one: the first to get it is the one that would take the round over.
        li = rnd["leader_index"]
        order = rnd["contributors"][li + 1 :] + rnd["contributors"][: li + 1]
        others = [n for n in order if n != self.site and n not in skip]
        held = not others
        if others:
            with wait.timed("lead: hand over"):
                held = self._hand_over(rec, rnd, others, blob, sha256)
        if stored is not None:
            with wait.timed("lead: store"):
                stored.result()
        if held:
            return True
        self.log.error(
            "round %d: no other site took the merged model %s... (%s); not publishing a model only this "
            "site holds, a site that reaches more takes over after our deadline",
            rnd["round"],
            sha256[:12],
            ", ".join(others),
        )
        return False

    def _hand_over(self, rec: dict, rnd: dict, nodes: list[str], blob: bytes | memoryview | Path, sha256: str) -> bool:
        """Sends the merged model to ``nodes``; whether one of them took it.

        To the first alone at first (the next in leader order, who would take over the round): sent to all
        at once, the copies shared the host's CPU and the link, and the first to be taken, which the
        publish waits for, came later (three sites, 50 M parameters: two 190 MB transfers at once). The
        others get theirs once it is taken (in the background, the publish does not wait for them), or at
        once if it fails or has not answered after ``_first_handover_grace_s``.
        """
        task, round_no = rec["task"], rnd["round"]
        path = f"/v1/merged/{sha256}?task={task}&round={round_no}"
        size = blob.stat().st_size if isinstance(blob, Path) else len(blob)
        timeout_s = self.leader_wait_s(rnd, size if isinstance(blob, Path) else 0)

        def send(node: str) -> Future:
            info = rec["nodes"][node]
            if isinstance(blob, Path):
                return self._handovers.submit(
                    self.peers.post_file, info["endpoint"], path, blob, info["identity"], timeout_s
                )
            return self._handovers.submit(self.peers.post, info["endpoint"], path, info["identity"], timeout_s, blob)

        pending: dict[Future, str] = {send(nodes[0]): nodes[0]}
        rest = list(nodes[1:])

        def send_rest() -> None:
            for node in rest:
                pending[send(node)] = node
            rest.clear()

        give_up = time.monotonic() + timeout_s + 1.0
        grace_end = time.monotonic() + self._first_handover_grace_s(size)
        while pending and time.monotonic() < give_up:
            until = give_up if not rest else min(give_up, grace_end)
            done, _ = wait_futures(
                list(pending), timeout=max(0.0, until - time.monotonic()), return_when=FIRST_COMPLETED
            )
            if not done and rest:
                send_rest()  # the first has not answered in time: all at once
                continue
            for future in done:
                node = pending.pop(future)
                try:
                    status = future.result()
                except PeerRequestError as exc:
                    self.log.warning("round %d: could not hand the merged model to %s: %s", round_no, node, exc)
                    send_rest()
                    continue
                if status == 204:
                    send_rest()  # not waited for
                    return True
                self.log.warning("round %d: %s did not take the merged model: HTTP %d", round_no, node, status)
                send_rest()
        return False

    @staticmethod
    def _first_handover_grace_s(nbytes: int) -> float:
        """How long the first hand-over may take before the others start too: 0.2 s and 100 MB/s."""
        return 0.2 + nbytes / 100e6

    def accept_handover(
        self,
        task: str,
        round_no: int,
        sha256: str,
        data: bytes | memoryview,
        layout: str,
        sender: str | None,
        data_sha256: str | None = None,
    ) -> bool:
        """Takes the merged model a round's leader hands over before publishing it; False if already held.

        Only from the node that leads the round (closed) or published it (done), as the ledger says
        (``sender`` is the caller's identity over mutual TLS; None without TLS), only with the bytes of
        its hash, and only a model of the task's layout with finite values. Raises HandoverRefused.
        ``data_sha256``: the sha256 of ``data``, when it was hashed as it arrived (else hashed here).
        """
        if self.store.has(sha256):
            return False
        self._check_handover_sender(task, round_no, sha256, sender)
        if (data_sha256 or hashlib.sha256(data).hexdigest()) != sha256:
            raise HandoverRefused(400, "HASH_MISMATCH", f"the body's sha256 is not {sha256}")
        try:
            arrays = serialization.from_bytes(data, layout)
        except serialization.WeightsFormatError as exc:
            raise HandoverRefused(400, exc.code, str(exc)) from None
        self.store.put(data, sha256)
        self.models.put(sha256, arrays)
        if self.on_handover is not None:
            self.on_handover(task, round_no, sha256)
        return True

    def accept_handover_file(
        self, task: str, round_no: int, sha256: str, incoming: IncomingBlob, layout: str, sender: str | None
    ) -> bool:
        """``accept_handover`` for a body streamed to a temporary file (``incoming``, complete): the same
        checks in the same order, the layout and values checked from the file; nothing is stored on refusal."""
        if self.store.has(sha256):
            incoming.abort()
            return False
        try:
            self._check_handover_sender(task, round_no, sha256, sender)
        except HandoverRefused:
            incoming.abort()
            raise
        check, found = self.checker(layout)
        try:
            incoming.commit(check)
        except BlobRefused as exc:
            message = f"the body's sha256 is not {sha256}" if exc.code == "HASH_MISMATCH" else str(exc)
            raise HandoverRefused(400, exc.code, message) from None
        except serialization.WeightsFormatError as exc:
            raise HandoverRefused(400, exc.code, str(exc)) from None
        self.checked.put(sha256, found[0])
        if self.on_handover is not None:
            self.on_handover(task, round_no, sha256)
        return True

    def _check_handover_sender(self, task: str, round_no: int, sha256: str, sender: str | None) -> None:
        """Raises HandoverRefused unless the ledger lets ``sender`` hand ``sha256`` over as the round's merge.

        Our ledger may be a block behind the leader's (Fabric peers commit one after another): a round
        still open, or led by the previous leader, is read again for a moment before the refusal.
        """
        settle = time.monotonic() + self.handover_settle_s
        while True:
            refusal = self._handover_refusal(task, round_no, sha256, sender)
            if refusal is None:
                return
            if time.monotonic() >= settle:
                raise refusal
            time.sleep(0.05)

    def _handover_refusal(self, task: str, round_no: int, sha256: str, sender: str | None) -> HandoverRefused | None:
        """Why the ledger does not let ``sender`` hand over ``sha256`` as round ``round_no``'s merge (None: it does)."""
        rec = self._ledger(self.ledger.get_task, time.monotonic() + 10.0, task)
        try:
            rnd = self._ledger(self.ledger.get_round, time.monotonic() + 10.0, task, round_no)
        except ContractError as exc:
            return HandoverRefused(404, exc.code, str(exc))
        if rnd["status"] == "open":
            return HandoverRefused(409, "ROUND_NOT_CLOSED", f"round {round_no} of {task} is open: nothing merged yet")
        if rnd["status"] == "done":
            if rnd["merged_sha256"] != sha256:
                return HandoverRefused(
                    409, "NOT_THE_MERGED_MODEL", f"round {round_no} of {task} was merged into another model"
                )
            node = rnd["published_by"]
        else:
            node = rnd["contributors"][rnd["leader_index"]]
        expected = rec["nodes"].get(node, {}).get("identity")
        if sender is not None and sender != expected:
            return HandoverRefused(
                403, "NOT_LEADER", f"{sender} does not lead round {round_no} of {task}; {node} ({expected}) does"
            )
        return None

    @staticmethod
    def _set_wait(wait: WaitState, phase: str, what: str) -> None:
        if wait.phase != phase or wait.waiting_for != what:
            if wait.phase != phase:
                wait.since = time.time()
            wait.phase = phase
            wait.waiting_for = what

    @staticmethod
    def _describe_wait(rec: dict, rnd: dict, why: str) -> str:
        """Adds each awaited node's last-seen age to the contract's reason.

        When the sites still in the task are fewer than ``min_peers``, no
        round can close unless a new site joins: says so, who left and what
        to change, instead of the contract's "waiting for more nodes to join".
        """
        now = now_ms()
        need = rec["spec"]["min_peers"]
        remaining = sorted(n for n, i in rec["nodes"].items() if i["status"] != "left")
        if len(rnd["submissions"]) < need and len(remaining) < need:
            gone = sorted(n for n, i in rec["nodes"].items() if i["status"] == "left")
            return (
                f"min_peers {need} cannot be met: {len(remaining)} site(s) remain in task {rec['task']} "
                f"({', '.join(remaining) or 'none'}) and {', '.join(gone) or 'no site'} left. "
                f"Only a new site joining lets this round close; otherwise start a new task with "
                f"minPeers <= {max(len(remaining), 1)}, or keep finished sites in the swarm by checking in "
                f"with checkinModelOnTrainEnd 'snapshot', 'active' or 'inactive' (not leaving)"
            )
        seen = [
            f"{n} last seen {(now - i['last_seen_ms']) / 1000:.0f} s ago"
            for n, i in sorted(rec["nodes"].items())
            if i["status"] != "left" and n not in rnd["submissions"]
        ]
        return why + (f" ({'; '.join(seen)})" if seen else "")

    # ------------------------------------------------------------------ leading

    def _lead(self, rec: dict, rnd: dict, deadline: float, wait: WaitState) -> None:
        """As leader: fetch and verify every contribution, merge, store, publish."""
        if contract.is_secure(rec):
            self.secure.lead(rec, rnd, deadline, wait)
            return
        if self.streamed(rec["spec"]):
            self._lead_streamed(rec, rnd, deadline, wait)
            return
        round_no = rnd["round"]
        t0 = time.perf_counter()
        self._set_wait(wait, "merging", f"fetching {len(rnd['contributors'])} contributions")
        layout = rec["spec"]["layout"]
        limit = serialization.max_blob_bytes(layout)
        initial = rnd["previous_merged_sha256"] is None
        stack: StackedModels | RunningMean | None = None
        if initial:
            pass  # the first round aligns the starting point: everyone takes the leader's weights
        elif rec["spec"]["merge_method"] == "mean" and all(
            rnd["submissions"][n]["weight"] > 0 for n in rnd["contributors"]
        ):
            # Summed as they arrive, each dropped once added: one model in memory, not a matrix of all.
            stack = RunningMean(serialization.parse_layout(layout))
        else:
            stack = StackedModels(serialization.parse_layout(layout), len(rnd["contributors"]), self.stack_buffers)
        weights: list[int] = []
        failed: set[str] = set()  # contributors whose blob could not be had or was refused
        merged: list[np.ndarray] | None = None
        # Contributions we do not hold are fetched from their sites in parallel.
        remote = [
            n
            for n in rnd["contributors"]
            if self.models.get(rnd["submissions"][n]["sha256"]) is None
            and not self.store.has(rnd["submissions"][n]["sha256"])
        ]
        fetch_timeout_s = self.leader_wait_s(rnd)
        # Each contribution is checked and added in leader order as soon as it is in, while the others
        # are still being fetched.
        waited = 0.0  # of the time below, how long we waited for a fetch (the rest: check and stack)
        t_check = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(remote)))) as pool:
            fetches = {
                n: pool.submit(
                    self.peers.fetch,
                    rec["nodes"][n]["endpoint"],
                    rnd["submissions"][n]["sha256"],
                    limit,
                    rec["nodes"][n]["identity"],
                    fetch_timeout_s,
                )
                for n in remote
            }
            for node in rnd["contributors"]:
                sub = rnd["submissions"][node]
                try:
                    cached = self.models.get(sub["sha256"])
                    if cached is not None:
                        arrays = cached
                    elif node in fetches:
                        t_wait = time.perf_counter()
                        try:
                            data = fetches.pop(node).result()
                        finally:
                            waited += time.perf_counter() - t_wait
                        self.metrics.bytes_received.inc(len(data))
                        arrays = serialization.from_bytes(data, layout)
                        del data
                    else:
                        arrays = serialization.from_bytes(self.store.get(sub["sha256"]), layout)
                except (BlobFetchError, serialization.WeightsFormatError, ValueError) as exc:
                    failed.add(node)
                    self._reject_contribution(round_no, node, exc)
                    continue
                weights.append(sub["weight"])
                if isinstance(stack, RunningMean):
                    stack.add(arrays, sub["weight"])
                elif stack is not None:
                    stack.add(arrays)
                elif node == self.site or merged is None:
                    merged = arrays
                del arrays  # a fetched contribution's memory goes now (the stack holds what it needs)
        wait.add_time("lead: fetch", waited)
        wait.add_time("lead: check and stack", time.perf_counter() - t_check - waited)
        try:
            self._lead_merge(rec, rnd, deadline, wait, stack, merged, weights, failed, initial, t0)
        finally:
            if isinstance(stack, StackedModels):
                self.stack_buffers.give(stack.rows)  # for the next round's merge
            # The contributions fetched are not stored: each site holds its own, and no site leads a round
            # twice (Failover abandons a round after its last contributor), so none would be read again.

    def _store_quietly(self, data: bytes | memoryview, sha256: str) -> None:
        """Stores a copy of a blob its site holds too; a failure is logged, not raised (it is had elsewhere)."""
        try:
            self.store.put(data, sha256)
        except OSError as exc:
            self.log.warning("could not keep a copy of blob %s...: %s", sha256[:12], exc)

    def _lead_merge(
        self,
        rec: dict,
        rnd: dict,
        deadline: float,
        wait: WaitState,
        stack: StackedModels | RunningMean | None,
        merged: list[np.ndarray] | None,
        weights: list[int],
        failed: set[str],
        initial: bool,
        t0: float,
    ) -> None:
        """``_lead`` once the contributions are checked: merge, store, hand over, publish."""
        if not self._enough_verified(rec, rnd, len(weights), initial):
            return
        if stack is not None:
            with wait.timed("lead: merge"):
                merged = stack.merge(rec["spec"]["merge_method"], np.asarray(weights, dtype=np.float64))
            method = rec["spec"]["merge_method"]
        else:
            method = "leader's initial weights"
        assert merged is not None
        with wait.timed("lead: serialise"):
            blob, merged_sha = safetensors_files.to_buffer(merged)
        stored = self.store_later(blob, merged_sha)  # written while it is handed over
        self._publish(rec, rnd, deadline, wait, blob, merged_sha, failed, method, len(weights), t0, stored)

    def _publish(
        self,
        rec: dict,
        rnd: dict,
        deadline: float,
        wait: WaitState,
        blob: bytes | memoryview | Path,
        merged_sha: str,
        failed: set[str],
        method: str,
        merged_count: int,
        t0: float,
        stored: Future | None = None,
    ) -> None:
        """Hands the merged model over, then publishes it (see ``held_elsewhere``); logs and counts the merge.

        ``stored``: the merged model's store write, when it runs during the hand-over (see ``held_elsewhere``).
        """
        task, round_no = rec["task"], rnd["round"]
        if not self.held_elsewhere(rec, rnd, blob, merged_sha, wait, skip=failed, stored=stored):
            return
        try:
            with wait.timed("lead: publish"):
                self._ledger(self.ledger.publish, deadline, task, round_no, self.site, merged_sha, wait=wait)
            self._notify(rec, list(rec["nodes"]), round_no)
        except ContractError as exc:
            if exc.code in ("NOT_LEADER", "ROUND_NOT_CLOSED", "TASK_DONE"):
                self.log.warning("round %d: could not publish: %s", round_no, exc)
                return
            raise
        elapsed = time.perf_counter() - t0
        self.log.info(
            "round %d: led the merge of %d models (%s) in %.3f s -> %s...",
            round_no,
            merged_count,
            method,
            elapsed,
            merged_sha[:12],
        )
        self.metrics.rounds_led.inc()
        self.metrics.merge_seconds.observe(elapsed)

    def _lead_streamed(self, rec: dict, rnd: dict, deadline: float, wait: WaitState) -> None:
        """``_lead`` for models too big for memory: contributions streamed to the store, checked from their
        files, merged a column chunk at a time into a new file, handed over from that file."""
        round_no = rnd["round"]
        t0 = time.perf_counter()
        self._set_wait(wait, "merging", f"fetching {len(rnd['contributors'])} contributions (streamed)")
        layout = rec["spec"]["layout"]
        limit = serialization.max_blob_bytes(layout)
        initial = rnd["previous_merged_sha256"] is None
        remote = [n for n in rnd["contributors"] if not self.store.has(rnd["submissions"][n]["sha256"])]
        fetch_s = self.leader_wait_s(rnd, limit)
        per_read_s = min(self.peers.timeout_s, fetch_s)
        with wait.timed("lead: fetch"), ThreadPoolExecutor(max_workers=max(1, min(8, len(remote)))) as pool:
            fetches = {
                n: pool.submit(
                    self._fetch_file, rec["nodes"][n], rnd["submissions"][n]["sha256"], layout, per_read_s, fetch_s
                )
                for n in remote
            }
            wait_futures(list(fetches.values()))
        t_check = time.perf_counter()
        sources: list[tuple[Path, list[TensorSpan]]] = []
        weights: list[int] = []
        failed: set[str] = set()
        for node in rnd["contributors"]:
            sub = rnd["submissions"][node]
            try:
                if node in fetches:
                    size, spans = fetches[node].result()
                    self.metrics.bytes_received.inc(size)
                else:
                    spans = self.check_stored(sub["sha256"], layout)
            except (BlobFetchError, serialization.WeightsFormatError, ValueError, KeyError) as exc:
                failed.add(node)
                if isinstance(exc, KeyError):
                    exc = ValueError(f"blob {sub['sha256'][:12]}... is no longer in this site's store")
                self._reject_contribution(round_no, node, exc)
                continue
            sources.append((self.store.path(sub["sha256"]), spans))
            weights.append(sub["weight"])
        wait.add_time("lead: check and stack", time.perf_counter() - t_check)
        if not self._enough_verified(rec, rnd, len(weights), initial):
            return
        method = rec["spec"]["merge_method"] if not initial else "leader's initial weights"
        try:
            with wait.timed("lead: merge"), self.store.incoming(size_hint=limit) as out:
                if initial:
                    # The first round aligns the starting point: everyone takes the leader's weights.
                    verified = [n for n in rnd["contributors"] if n not in failed]
                    own = verified.index(self.site) if self.site in verified else 0
                    copy_model(layout, sources[own], out)
                else:
                    merge_files(method, layout, sources, np.asarray(weights, dtype=np.float64), out)
                merged_sha = out.commit()
        except MergeTooLarge as exc:
            self.log.error("round %d: cannot merge: %s", round_no, exc)
            self.rejected_blobs.append({"round": round_no, "node": self.site, "reason": str(exc)})
            return
        self.checked.put(merged_sha, self.check_stored(merged_sha, layout) if initial else self._spans_of(layout))
        self._publish(
            rec, rnd, deadline, wait, self.store.path(merged_sha), merged_sha, failed, method, len(weights), t0
        )

    @staticmethod
    def _spans_of(layout: str) -> list[TensorSpan]:
        """The spans of a blob this site wrote for ``layout`` (its canonical file, as ``to_bytes`` writes it)."""
        plan = safetensors_files.file_plan(serialization.parse_layout(layout))
        return safetensors_files.check_layout(plan.spans, layout)

    def _enough_verified(self, rec: dict, rnd: dict, verified: int, initial: bool) -> bool:
        """Whether a leader that verified ``verified`` contributions may merge and publish (logs why not)."""
        round_no = rnd["round"]
        if not verified:
            self.log.error("round %d: no contribution could be verified; waiting for failover", round_no)
            return False
        need = rec["spec"]["min_peers"]
        if not initial and verified < need:
            # Cut off from the others, we would publish a model of (nearly) our own weights that they
            # cannot even fetch from us. The next site in order may reach more: let it lead.
            self.log.error(
                "round %d: only %d of %d contributions could be verified (min_peers %d); not publishing, "
                "a site that reaches more takes over after our deadline",
                round_no,
                verified,
                len(rnd["contributors"]),
                need,
            )
            return False
        return True

    def _reject_contribution(self, round_no: int, node: str, exc: Exception) -> None:
        """A contribution the leader could not have or refused: counted, kept for /v1/status, logged."""
        self._count_rejection(exc)
        self.rejected_blobs.append({"round": round_no, "node": node, "reason": str(exc)})
        self.log.error("round %d: contribution of %s rejected: %s", round_no, node, exc)

    def _count_rejection(self, exc: Exception) -> None:
        if isinstance(exc, BlobFetchError):
            reason = "tampered" if exc.tampered else "unreachable"
        else:
            reason = getattr(exc, "code", "invalid").lower()
        self.metrics.rejected_blobs.labels(reason=reason).inc()
