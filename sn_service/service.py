"""One site's swarm-network service: its tasks, sync jobs and check-ins.

The HTTP routers are thin; this class holds the state and runs each sync in
a worker thread, so the event loop keeps serving blobs to peers while this
site waits or merges.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sn_service.blob_store import BlobStore, StoreFull, file_chunks
from sn_service.ledger.base import ContractError, Ledger
from sn_service.metrics import ServiceMetrics
from sn_service.peer_client import PeerClient, PeerRequestError
from sn_service.retention import BlobRetention
from sn_service.round_protocol import RoundDriver, SyncFailed, SyncResult, WaitState
from sn_service.streamed_merge import in_memory_merge_problem
from sn_service.tls.identity import PeerTLS
from swarm_wire import safetensors_files, serialization
from swarm_wire.spare_files import INBOX_SPARE_FILES, INBOX_SPARES, SpareFiles

log = logging.getLogger("sn_service.service")


INBOX_NAME = re.compile(r"[0-9a-f]{32}\.safetensors")


class SiteInUse(Exception):
    """Another live service already acts as this site in a task: two processes must never be one site."""


@dataclass
class SyncJob:
    """One sync in progress or finished."""

    sync_id: str
    task: str
    wait: WaitState = field(default_factory=WaitState)
    state: str = "running"
    result: SyncResult | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    metrics: dict[str, float] | None = None

    def as_dict(self) -> dict:
        """The job's public status."""
        out = {"sync_id": self.sync_id, "task": self.task, "state": self.state, **self.wait.as_dict()}
        if self.result is not None:
            out.update(
                round=self.result.round,
                merged_sha256=self.result.merged_sha256,
                contributed=self.result.contributed,
                task_status=self.result.task_status,
            )
        out["error"] = self.error
        return out


@dataclass
class TaskState:
    """What this site holds for a task it joined."""

    spec: dict
    joined_at: float = field(default_factory=time.time)
    syncs_done: int = 0
    last_sync_s: float | None = None
    standing: threading.Thread | None = None
    # The training process (pid, start time) seen at join, while it has not checked in or left.
    trainer: tuple[int, str] | None = None


def process_start(pid: int) -> str | None:
    """A token of the process ``pid``'s identity (its start time), or None if no such process is visible.

    The start time tells a process from a later one given the same pid. Without ``/proc`` the pid's
    existence is all there is.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat_line = fh.read()
        fields = stat_line[stat_line.rindex(b")") + 2 :].split()  # from field 3, the state
        return None if fields[0] == b"Z" else fields[19].decode()  # a zombie has ended; field 22: starttime
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it runs, as another user
    return ""


HUGE_PAGES_ABOVE_BYTES = 128 << 20  # "auto": huge pages for a task whose blobs may be this large or larger


def huge_pages_wanted(mode: str, layouts: list[str]) -> bool:
    """Whether this service's large arrays should be backed by huge pages, for the tasks of ``layouts``.

    ``mode`` "on" or "off" says so; "auto" says yes when a task's blob may be HUGE_PAGES_ABOVE_BYTES or
    more. Measured on the 2-core VM of docs/benchmarks.md, where a new huge page is often a fault the
    host has to serve: for a 6.9 MB or 38 MB model, syncs were 10-30 % faster without them; for a 200 MB
    one, 1.8x slower (each of its buffers is then 50,000 small faults instead of 100 large ones).
    """
    if mode != "auto":
        return mode == "on"
    return any(serialization.max_blob_bytes(layout) >= HUGE_PAGES_ABOVE_BYTES for layout in layouts)


def set_huge_pages(on: bool) -> bool:
    """Tells numpy whether to advise the kernel to back new arrays of 4 MB and more with huge pages (the
    switch its NUMPY_MADVISE_HUGEPAGE variable sets at import); returns whether numpy has that switch."""
    switch = getattr(getattr(getattr(np, "_core", None), "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        return False
    switch(on)
    return True


class SwarmNetworkService:
    """A site's service: joins tasks, runs syncs, serves blobs.

    Args:
        site: the node name.
        ledger: the ledger, acting as this site.
        store: the blob store.
        peers: the client for other sites' blob APIs.
        endpoint: the URL other sites reach this site's peer API at.
        sync_timeout_s: the deadline of one sync.
        keep_rounds: blobs of rounds more than this many behind a task's newest
            round are deleted after each sync (``BlobRetention``); 0 keeps all.
        prune_grace_s: a blob stored this recently is never deleted.
        body_timeout_s: a request body that stalls this long is answered with 408 (``RequestLimits``).
        stream_above_bytes: tasks whose model's blobs may be larger than this take the streamed path
            (``RoundDriver``): never a whole blob in memory.
        huge_pages: "auto", "on" or "off": whether numpy advises the kernel to back this process's large
            arrays with huge pages (``huge_pages_wanted``); None leaves numpy's setting alone.
    """

    MAX_JOBS = 256
    MAX_METRIC_ROUNDS = 5000  # per task; older rounds' training metrics are dropped

    def __init__(
        self,
        site: str,
        ledger: Ledger,
        store: BlobStore,
        peers: PeerClient,
        endpoint: str,
        sync_timeout_s: float = 600.0,
        poll_s: float = 0.02,
        tls: PeerTLS | None = None,
        state_file: Path | None = None,
        keep_rounds: int = 20,
        prune_grace_s: float = 10.0,
        body_timeout_s: float = 30.0,
        stream_above_bytes: int = 256 << 20,
        huge_pages: str | None = "auto",
    ) -> None:
        self.site = site
        self.huge_pages = huge_pages
        if huge_pages is not None:
            set_huge_pages(huge_pages_wanted(huge_pages, []))  # until a task says otherwise (join)
        self.ledger = ledger
        self.store = store
        self.peers = peers
        self.endpoint = endpoint
        # Tells this process from another service claiming the same site (see _refuse_if_served_elsewhere).
        self.instance = uuid.uuid4().hex
        self.sync_timeout_s = sync_timeout_s
        self.body_timeout_s = body_timeout_s
        self.tls = tls
        self.state_file = state_file
        # Where the training process on this machine may hand its weights over as a file (no HTTP copy).
        self.inbox = store.root.parent / "inbox"
        self.inbox.mkdir(mode=0o700, exist_ok=True)
        # Inbox files once read, kept for the callback to write its next weights over (swarm_wire.spare_files).
        self.inbox_spares = SpareFiles(self.inbox / INBOX_SPARES, max_files=INBOX_SPARE_FILES)
        self._identities: tuple[float, set[str]] = (0.0, set())
        self.metrics = ServiceMetrics(site)
        self.driver = RoundDriver(
            site,
            ledger,
            store,
            peers,
            poll_s=poll_s,
            metrics=self.metrics,
            endpoint=endpoint,
            stream_above_bytes=stream_above_bytes,
        )
        self.tasks: dict[str, TaskState] = {}
        self.jobs: dict[str, SyncJob] = {}
        # task -> round -> {"metrics": {...}, "ts_ms": ...}: what this site's callback sent with each sync.
        self.training_metrics: dict[str, dict[int, dict]] = {}
        self.started = time.time()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.log = logging.LoggerAdapter(log, {"site": site})
        self.retention = BlobRetention(
            store, ledger, keep_rounds, grace_s=prune_grace_s, tasks=lambda: list(self.tasks), logger=self.log
        )
        store.on_full = self._free_space
        self.driver.on_handover = self.retention.remember
        threading.Thread(target=self._watch_trainers, name="watch-trainers", daemon=True).start()

    def _free_space(self) -> None:
        """The disk is full: delete every joined task's blobs but the last round's, before a write gives up."""
        self.log.warning(
            "blob store %s is full (%d bytes free); deleting old rounds' blobs",
            self.store.root,
            self.store.free_bytes(),
        )
        for task in list(self.tasks):
            try:
                self.retention.prune(task, keep_rounds=1)
            except Exception as exc:  # the ledger may be unreachable too: the write is still retried
                self.log.warning("could not prune task %s: %s", task, exc)

    # ------------------------------------------------------------------ tasks

    def join(self, task: str, spec: dict, trainer_pid: int | None = None) -> dict:
        """Joins (and if need be creates) a task; raises ContractError, or SiteInUse.

        A model too big for memory whose merge method needs every contribution in memory (krum,
        multikrum, geomedian) is refused here (ValueError naming the method and the sizes), not
        at its first merge.

        ``trainer_pid``: the training process; if it ends without checking in or leaving, this
        service leaves the task for it (``_watch_trainers``).
        """
        self._refuse_if_served_elsewhere(task)
        if self.driver.streamed(spec):
            problem = in_memory_merge_problem(
                spec["merge_method"], serialization.expected_nbytes(spec["layout"]), int(spec["min_peers"])
            )
            if problem is not None:
                raise ValueError(f"task {task!r} cannot be merged on this site: {problem}")
        record = self.driver.join(task, spec, self.endpoint)
        self._warn_if_leader_timeout_short(task, spec)
        trainer = None
        if trainer_pid is not None:
            started = process_start(trainer_pid)
            if started is None:
                self.log.info(
                    "task %s: the training process (pid %d) is not visible from this service (another host or "
                    "container): if it crashes, the others wait for this site until it leaves or returns",
                    task,
                    trainer_pid,
                )
            else:
                trainer = (trainer_pid, started)
        with self._lock:
            self.tasks[task] = TaskState(spec=record["spec"], trainer=trainer)
            self._save_tasks()
            layouts = [state.spec["layout"] for state in self.tasks.values()]
        if self.huge_pages is not None:
            set_huge_pages(huge_pages_wanted(self.huge_pages, layouts))
        return record

    def _warn_if_leader_timeout_short(self, task: str, spec: dict) -> None:
        """Logs when a big model's leader timeout leaves less than two transfers' time at the minimum rate.

        The leader of a streamed task fetches the contributions and hands the merge over (each
        transfer may take ``PeerClient.transfer_timeout_s`` of the blob's size); too short a leader
        timeout fails leaders over one after another before any publishes.
        """
        if not self.driver.streamed(spec):
            return
        need_s = 2 * self.peers.transfer_timeout_s(serialization.max_blob_bytes(spec["layout"]))
        if spec["leader_timeout_ms"] / 1000 < need_s:
            self.log.warning(
                "task %s: leader timeout %.0f s is short for a model of %.2f GB: one transfer of it may take up "
                "to %.0f s at --min-transfer-rate, and a leader fetches the contributions and hands the merge "
                "over; if rounds keep failing over, give leaderTimeoutSeconds >= %.0f",
                task,
                spec["leader_timeout_ms"] / 1000,
                serialization.expected_nbytes(spec["layout"]) / 1e9,
                need_s / 2,
                need_s,
            )

    def _watch_trainers(self) -> None:
        """Every 2 s: a task's training process gone without checking in makes this site leave the task.

        Without this, a crashed trainer's site stays active on the ledger and every round waits the
        whole quorum wait for it, for the rest of the task. A trainer restarted later joins again
        (the node is re-activated).
        """
        while not self._stop.wait(2.0):
            for task, state in list(self.tasks.items()):
                trainer = state.trainer
                if trainer is None or process_start(trainer[0]) == trainer[1]:
                    continue
                state.trainer = None
                try:
                    rec = self.ledger.get_task(task)
                    node = rec["nodes"].get(self.site)
                    if rec["status"] == "done" or node is None or node["status"] != "active":
                        continue
                    self.leave(task)
                except Exception as exc:  # the ledger unreachable: try again at the next look
                    state.trainer = trainer
                    self.log.warning("task %s: could not leave for the ended training process: %s", task, exc)
                    continue
                self.log.warning(
                    "task %s: the training process (pid %d) ended without checking in (crashed or killed); "
                    "left the task so that the other sites stop waiting for this one. Start training again "
                    "to rejoin.",
                    task,
                    trainer[0],
                )

    def _refuse_if_served_elsewhere(self, task: str) -> None:
        """Raises SiteInUse if the ledger names another endpoint for this site and a live service of it answers there.

        A service that restarted on another port takes its site over (the old
        endpoint no longer answers as this site); a second process started with
        the same ``--site`` while the first runs is refused, naming the first.
        """
        try:
            record = self.ledger.get_task(task)
        except ContractError:
            return  # no such task yet: we create it
        info = record["nodes"].get(self.site)
        if info is None or info["endpoint"] == self.endpoint:
            return
        try:
            health = self.peers.get_json(info["endpoint"], "/v1/health", info["identity"], timeout_s=3.0)
        except PeerRequestError as exc:
            self.log.info(
                "task %s: %s was registered at %s, which does not answer as it (%s); taking it over",
                task,
                self.site,
                info["endpoint"],
                exc.reason,
            )
            return
        if isinstance(health, dict) and health.get("site") == self.site and health.get("instance") != self.instance:
            raise SiteInUse(
                f"{self.site} is already taking part in task {task!r} through a live swarm-sn at {info['endpoint']}"
                f" (pid {health.get('pid', '?')} on its host); one site is one service: stop that one first, "
                f"or start this one with another --site name"
            )

    def _save_tasks(self) -> None:
        """Remembers the joined tasks' specs, so a restarted service can rejoin them."""
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({name: state.spec for name, state in self.tasks.items()}))
        os.replace(tmp, self.state_file)

    def recover(self) -> list[str]:
        """After a restart: rejoins every remembered task that is not over; returns their names.

        The ledger holds the rounds and the blob store the blobs, so nothing
        merged is lost; the site registers again (same identity, perhaps a new
        endpoint) and its callback carries on with the next sync.
        """
        if self.state_file is None or not self.state_file.is_file():
            return []
        rejoined = []
        for task, spec in json.loads(self.state_file.read_text()).items():
            try:
                record = self.ledger.get_task(task)
                if record["status"] == "done" or record["nodes"].get(self.site, {}).get("status") == "left":
                    continue
                self.join(task, spec)
                rejoined.append(task)
                latest = record["latest_merged"]
                self.log.info(
                    "recovered task %s: round %d open, latest merged %s",
                    task,
                    record["current_round"],
                    f"round {latest['round']} {latest['sha256'][:12]}..." if latest else "none yet",
                )
            except Exception as exc:  # one bad task must not keep the service down
                self.log.error("could not recover task %s: %s", task, exc)
        return rejoined

    def is_registered_identity(self, identity: str, max_age_s: float = 2.0) -> bool:
        """Whether ``identity`` is a node of a task this site joined (ledger read, cached briefly)."""
        fetched_at, known = self._identities
        if identity in known and time.monotonic() - fetched_at < max_age_s:
            return True
        known = set()
        for task in list(self.tasks):
            try:
                known |= {info["identity"] for info in self.ledger.get_task(task)["nodes"].values()}
            except Exception as exc:  # an unreachable ledger must not open the door
                self.log.warning("could not read task %s to check a peer: %s", task, exc)
        self._identities = (time.monotonic(), known)
        return identity in known

    def task_spec(self, task: str) -> dict | None:
        """The spec of a task this site joined, or None."""
        state = self.tasks.get(task)
        return state.spec if state else None

    def streams(self, task: str) -> bool:
        """Whether a joined task's blobs take the streamed path (see ``RoundDriver.streamed``)."""
        return self.driver.streamed(self.tasks[task].spec)

    def _open_inbox_file(self, name: str, limit: int) -> tuple[int, Path]:
        """An open descriptor of a weights file in the inbox, and its path, after the checks of ``take_from_inbox``."""
        if not INBOX_NAME.fullmatch(name):
            raise ValueError(f"blob_file {name[:80]!r} is not a name like <32 hex digits>.safetensors in the inbox")
        path = self.inbox / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ValueError(
                f"no file {name} in this service's inbox {self.inbox}; upload the weights instead"
            ) from None
        except OSError as exc:
            raise ValueError(f"cannot open {path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{path} is not a plain file")
            if info.st_size > limit:
                raise ValueError(f"{path} has {info.st_size} bytes; this task's model allows {limit}")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return fd, path

    def store_from_inbox(self, name: str, task: str) -> tuple[str, int]:
        """Copies a weights file the callback left in the inbox into the store, chunk by chunk (deleted once read).

        The streamed ``take_from_inbox``: hashed while copied, its header, layout and values checked on
        the store's own copy (so the writer cannot change it after the check), nothing stored if a check
        fails. Returns (sha256, size). Raises ValueError (the file) or WeightsFormatError (the weights).
        """
        layout = self.tasks[task].spec["layout"]
        limit = serialization.max_blob_bytes(layout)
        fd, path = self._open_inbox_file(name, limit)
        check, found = self.driver.checker(layout)
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh, self.store.incoming(max_bytes=limit) as blob:
                for chunk in file_chunks(fh):
                    blob.write(chunk)
                sha = blob.commit(check)
        except Exception as exc:
            if getattr(exc, "code", None) == "TOO_LARGE" and not isinstance(exc, serialization.WeightsFormatError):
                raise ValueError(f"{path} grew past {limit} bytes while read") from None
            raise
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
        self.driver.checked.put(sha, found[0])
        return sha, blob.size

    def take_from_inbox(self, name: str, limit: int) -> memoryview:
        """The bytes of a weights file the callback left in the inbox (deleted once read), read-only.

        Raises ValueError naming what is wrong: only plain files directly in the inbox, named
        ``<32 hex>.safetensors``, of at most ``limit`` bytes. The bytes are then checked like an upload.
        Read into one buffer of the file's size (``safetensors_files.read_whole``; no fresh ``bytes`` of it).
        """
        fd, path = self._open_inbox_file(name, limit)
        data: memoryview | None = None
        try:
            size = os.fstat(fd).st_size
            with os.fdopen(fd, "rb", closefd=False) as fh:
                read = safetensors_files.read_whole(fh, size)
            if len(read) <= size:
                data = read
        finally:
            os.close(fd)
            # Read whole: kept for the callback to write over (see swarm_wire.spare_files); else deleted.
            if data is None or not self.inbox_spares.keep(path):
                with contextlib.suppress(OSError):
                    path.unlink()
        if data is None:
            raise ValueError(f"{path} grew while read (it had {size} bytes); is a writer still at it?")
        return data

    def max_blob_bytes(self, task: str) -> int:
        """The largest blob a task's model can produce."""
        spec = self.tasks[task].spec
        return serialization.max_blob_bytes(spec["layout"])

    # ------------------------------------------------------------------ syncs

    def start_sync(
        self,
        task: str,
        blob: bytes | None,
        weight: int,
        metrics: dict[str, float] | None = None,
        arrays: list | None = None,
        timings: dict[str, float] | None = None,
        sha256: str | None = None,
    ) -> SyncJob:
        """Starts a sync in a worker thread and returns its job.

        ``metrics`` (validated by the caller) are the site's latest training
        metrics; they are recorded under the round the sync takes part in.
        ``arrays``: the blob's tensors, when the caller has already parsed and
        checked them (the leader then need not parse its own blob again).
        ``blob`` None: the weights are in the store as ``sha256``, checked (the streamed path).
        """
        job = SyncJob(sync_id=uuid.uuid4().hex, task=task, metrics=metrics or None)
        job.wait.timings.update(timings or {})
        with self._lock:
            self._forget_old_jobs()
            self.jobs[job.sync_id] = job
        thread = threading.Thread(
            target=self._run_sync,
            args=(job, blob, weight, arrays, sha256),
            name=f"sync-{job.sync_id[:8]}",
            daemon=True,
        )
        thread.start()
        return job

    def _run_sync(
        self, job: SyncJob, blob: bytes | None, weight: int, arrays: list | None, sha256: str | None = None
    ) -> None:
        t0 = time.perf_counter()
        try:
            job.result = self.driver.sync(job.task, blob, weight, self.sync_timeout_s, job.wait, arrays, sha256)
            job.state = "done"
            self.metrics.syncs.labels(outcome="done").inc()
            self.metrics.sync_seconds.observe(time.perf_counter() - t0)
            state = self.tasks.get(job.task)
            if state is not None:
                state.syncs_done += 1
                state.last_sync_s = time.perf_counter() - t0
        except (SyncFailed, ContractError, StoreFull) as exc:
            job.state = "failed"
            job.error = exc.strerror if isinstance(exc, StoreFull) else str(exc)
            self.metrics.syncs.labels(outcome="failed").inc()
            self.log.error("sync %s failed: %s", job.sync_id[:8], job.error)
        except Exception as exc:  # a bug must still end the job, loudly
            job.state = "failed"
            job.error = f"internal error: {type(exc).__name__}: {exc}"
            self.metrics.syncs.labels(outcome="failed").inc()
            self.log.exception("sync %s crashed", job.sync_id[:8])
        finally:
            round_no = job.result.round if job.result is not None else job.wait.round
            if job.metrics and round_no is not None:
                self._record_training_metrics(job.task, round_no, job.metrics, job.started)
            job.finished_at = time.time()
            job.done.set()
        self._prune(job.task)  # also after a failure: a full disk must not wait for a sync to succeed

    def _prune(self, task: str) -> None:
        """Deletes the blobs of long-merged rounds (after the callback has its result)."""
        try:
            self.retention.prune(task)
        except Exception as exc:  # a full store is better than a failed sync
            self.log.warning("could not prune old blobs of task %s: %s", task, exc)

    def _record_training_metrics(self, task: str, round_no: int, metrics: dict[str, float], at: float) -> None:
        with self._lock:
            rounds = self.training_metrics.setdefault(task, {})
            rounds[round_no] = {"metrics": dict(metrics), "ts_ms": int(at * 1000)}
            while len(rounds) > self.MAX_METRIC_ROUNDS:
                del rounds[min(rounds)]
        if "dp_epsilon" in metrics:  # the site trains with differential privacy (swarm_keras.privacy)
            self.metrics.dp_epsilon.labels(task=task, site=self.site).set(metrics["dp_epsilon"])
            if "dp_delta" in metrics:
                self.metrics.dp_delta.labels(task=task, site=self.site).set(metrics["dp_delta"])

    def privacy_spent(self, task: str) -> dict[str, float] | None:
        """The differential-privacy metrics (``dp_*``) of this site's latest sync in ``task`` that had them."""
        with self._lock:
            rounds = self.training_metrics.get(task, {})
            for r in sorted(rounds, reverse=True):
                dp = {k: v for k, v in rounds[r]["metrics"].items() if k.startswith("dp_")}
                if dp:
                    return {"round": r, **dp}
        return None

    def training_metrics_history(self, task: str, last: int = 500) -> dict:
        """This site's training metrics of its last ``last`` rounds of ``task``, oldest first.

        Each entry is what the callback sent with its sync of that round (its
        latest Keras logs when it submitted). A sync still running whose round
        is known is included, so a stuck round's metrics show too.
        """
        with self._lock:
            rounds = dict(self.training_metrics.get(task, {}))
            for job in self.jobs.values():
                if job.task == task and job.metrics and not job.done.is_set() and job.wait.round is not None:
                    rounds.setdefault(job.wait.round, {"metrics": dict(job.metrics), "ts_ms": int(job.started * 1000)})
        chosen = sorted(rounds)[-last:] if last > 0 else []
        return {"site": self.site, "task": task, "rounds": [{"round": r, **rounds[r]} for r in chosen]}

    def _forget_old_jobs(self) -> None:
        if len(self.jobs) < self.MAX_JOBS:
            return
        finished = sorted((j for j in self.jobs.values() if j.done.is_set()), key=lambda j: j.started)
        for job in finished[: len(self.jobs) - self.MAX_JOBS + 1]:
            del self.jobs[job.sync_id]

    def latest(self, task: str) -> SyncResult | None:
        """The task's latest merged model (fetched into our store), or None."""
        return self.driver.latest(task, timeout_s=self.sync_timeout_s)

    # ------------------------------------------------------------------ check-in at train end

    def leave(self, task: str) -> dict:
        """Leaves the task: rounds stop waiting for this site."""
        if task in self.tasks:
            self.tasks[task].trainer = None
        record = self.ledger.leave(task, self.site)
        self.driver.notify_all(record)  # the others' open round may close without us now
        self.driver.secure.forget(task)  # a secure round prepared for the next sync will not come
        self.log.info("left task %s", task)
        return record

    STAND_IN_KINDS = ("snapshot", "active", "inactive")

    def finish(
        self, task: str, blob: bytes | None, weight: int, contribute: str = "snapshot", sha256: str | None = None
    ) -> dict:
        """Training ended; this service takes the site's part in every round until no site trains.

        ``contribute`` (HPE's ``checkinModelOnTrainEnd``): ``snapshot`` submits
        ``blob``, the final weights, to every round; ``active`` submits ``blob``
        once, then each round's merged model; ``inactive`` submits with weight 0
        (a peer that counts towards min_peers but is left out of the merge).
        ``blob`` None: the final weights are in the store as ``sha256`` (the streamed path).
        """
        if contribute not in self.STAND_IN_KINDS:
            raise ValueError(f"contribute={contribute!r} is not allowed: use one of {list(self.STAND_IN_KINDS)}")
        if task in self.tasks:
            self.tasks[task].trainer = None  # its end is expected now
        record = self.ledger.finish(task, self.site)
        sha = self.store.put(blob) if blob is not None else sha256
        assert sha is not None, "finish needs the blob or the sha256 of a stored one"
        weight = 0 if contribute == "inactive" else weight
        state = self.tasks[task]
        if state.standing is None or not state.standing.is_alive():
            state.standing = threading.Thread(
                target=self._stand_in,
                args=(task, blob, weight, contribute, sha),
                name=f"standing-{task}",
                daemon=True,
            )
            state.standing.start()
        self.log.info(
            "finished training in task %s; taking part in its rounds until it ends (%s: %s)",
            task,
            contribute,
            {
                "snapshot": f"final model {sha[:12]}... every round",
                "active": "each round's merged model",
                "inactive": "weight 0, not merged",
            }[contribute],
        )
        return record

    def _stand_in(
        self, task: str, blob: bytes | None, weight: int, contribute: str = "snapshot", sha256: str | None = None
    ) -> None:
        """Contributes to each new round (see ``finish``) while any site still trains.

        ``blob`` None: the contribution is the stored blob ``sha256`` (the streamed path).
        """
        while not self._stop.is_set():
            try:
                rec = self.ledger.get_task(task)
                if rec["status"] == "done" or rec["nodes"].get(self.site, {}).get("status") != "finished":
                    self.log.info("task %s: no site trains any more; standing contribution ends", task)
                    return
                result = self.driver.sync(task, blob, weight, self.sync_timeout_s, sha256=sha256)
                if contribute == "active":
                    sha256 = result.merged_sha256
                    blob = None if blob is None else self.store.get(sha256)
                self._prune(task)
                if result.task_status == "done":
                    return
            except (SyncFailed, ContractError, StoreFull) as exc:
                self.log.warning("standing contribution to %s: %s", task, exc)
                self._stop.wait(1.0)

    def shutdown(self) -> None:
        """Stops background work: wake-ups and hand-overs still queued are dropped, running ones finish."""
        self._stop.set()
        self.driver.close()

    # ------------------------------------------------------------------ status

    def problems(self) -> list[str]:
        """What keeps this service from doing its job now (empty when healthy)."""
        out = []
        if self.store.full is not None:
            out.append(
                f"disk full since {time.strftime('%H:%M:%S', time.localtime(self.store.full_since))}: {self.store.full}"
            )
        return out

    def health(self) -> dict:
        """Liveness and readiness: who answers (site, instance, pid) and any problem."""
        problems = self.problems()
        return {
            "ok": not problems,
            "site": self.site,
            "instance": self.instance,
            "pid": os.getpid(),
            "problems": problems,
        }

    def status(self) -> dict:
        """What this site knows: its tasks on the ledger, its syncs, its counters."""
        tasks = {}
        for name, state in list(self.tasks.items()):
            entry: dict = {"syncs_done": state.syncs_done, "last_sync_s": state.last_sync_s}
            try:
                rec = self.ledger.get_task(name)
                rnd = self.ledger.get_round(name, rec["current_round"])
                entry.update(
                    status=rec["status"],
                    current_round=rec["current_round"],
                    latest_merged=rec["latest_merged"],
                    nodes={
                        n: {"status": i["status"], "last_seen_ms": i["last_seen_ms"]} for n, i in rec["nodes"].items()
                    },
                    round={
                        "status": rnd["status"],
                        "submitted": sorted(rnd["submissions"]),
                        "contributors": rnd["contributors"],
                        "leader": rnd["contributors"][rnd["leader_index"]] if rnd["contributors"] else None,
                        "leader_deadline_ms": rnd["leader_deadline_ms"],
                    },
                )
            except Exception as exc:  # the status page must answer even when the ledger does not
                entry["ledger_error"] = str(exc)
            running = [j.as_dict() for j in self.jobs.values() if j.task == name and j.state == "running"]
            entry["running_syncs"] = running
            privacy = self.privacy_spent(name)
            if privacy is not None:
                entry["privacy"] = privacy
            tasks[name] = entry
        return {
            "site": self.site,
            "endpoint": self.endpoint,
            "uptime_s": round(time.time() - self.started, 1),
            "problems": self.problems(),
            "counters": self.metrics.snapshot(),
            "rejected_blobs": list(self.driver.rejected_blobs)[-20:],
            "tasks": tasks,
        }
