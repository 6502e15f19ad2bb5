"""The callback's HTTP client for its site's swarm-network service."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np

from swarm_wire import safetensors_files, serialization
from swarm_wire.spare_files import INBOX_SPARE_FILES, INBOX_SPARES, SpareFiles

Weights = bytes | Sequence[np.ndarray]  # a safetensors blob, or the arrays, written chunk by chunk
# A merged model up to this size is read into memory once and checked there; a larger one is checked a
# chunk at a time and memory-mapped (the service's --stream-above-bytes default is the same size).
READ_WHOLE_BYTES = 256 << 20

# httpx logs every request at INFO; a sync makes several. Quiet unless the user chose a level.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)


class SwarmServiceError(RuntimeError):
    """The swarm-network service refused a request or could not be reached."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ServiceClient:
    """Talks to the local service's ``/v1/local`` API.

    Args:
        url: the service, e.g. ``http://127.0.0.1:30305``.
        logger: where waits and progress are logged.
        connect_timeout_s: how long to keep retrying a service that does not answer yet.
    """

    def __init__(self, url: str, logger: logging.Logger, connect_timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.log = logger
        self.connect_timeout_s = connect_timeout_s
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(120.0, connect=5.0))
        # Same machine (the service's callback API answers on loopback only): weights go to and come from
        # the service's folders as files when this process can use them, instead of over HTTP.
        self.inbox: Path | None = None
        self.inbox_spares: SpareFiles | None = None
        self.store: Path | None = None

    def _retry_after(self, exc: httpx.HTTPError, give_up: float, delay: float) -> float:
        """Waits ``delay`` before a refused or dropped request is tried again; returns the next delay.

        Past ``give_up`` it raises SwarmServiceError (UNREACHABLE) saying how to start the service.
        """
        if time.monotonic() > give_up:
            raise SwarmServiceError(
                f"the swarm-network service at {self.url} does not answer ({exc}); start it with "
                "`swarm-sn --site NAME --port PORT ...` or set SWARM_SN_URL / serviceUrl to where it runs",
                code="UNREACHABLE",
            ) from exc
        time.sleep(delay)
        return min(delay * 2, 2.0)

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        give_up = time.monotonic() + self.connect_timeout_s
        delay = 0.2
        while True:
            try:
                resp = self._http.request(method, path, **kwargs)  # type: ignore[arg-type]
                break
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                delay = self._retry_after(exc, give_up, delay)
        if resp.status_code >= 400:
            code, message = "", resp.text[:500]
            try:
                detail = resp.json().get("detail", {})
                if isinstance(detail, dict):
                    code, message = detail.get("error", ""), detail.get("message", message)
            except ValueError:
                pass
            raise SwarmServiceError(f"{method} {path}: {resp.status_code} {code}: {message}", code=code)
        return resp

    def join(self, task: str, spec: dict) -> dict:
        """Joins the task; returns the service's JoinResponse."""
        # The pid lets a service on this host notice a training process that ends without checking in.
        body = {"task": task, "spec": spec, "trainer_pid": os.getpid()}
        joined = self._request("POST", "/v1/local/join", json=body).json()
        inbox, store = joined.get("local_inbox"), joined.get("local_store")
        self.inbox = Path(inbox) if inbox and os.access(inbox, os.W_OK | os.X_OK) else None
        self.store = Path(store) if store and os.access(store, os.R_OK | os.X_OK) else None
        return joined

    def _hand_over(self, blob: Weights) -> str | None:
        """Writes the weights into the service's inbox; returns the file's name, or None (then upload them).

        Arrays are written tensor by tensor, as ``to_bytes`` would lay them out: no serialised copy.
        """
        if self.inbox is None:
            return None
        name = f"{uuid.uuid4().hex}.safetensors"
        try:
            if self.inbox_spares is None or self.inbox_spares.dir.parent != self.inbox:
                # Files the service read from the inbox and kept, written over (see swarm_wire.spare_files).
                self.inbox_spares = SpareFiles(self.inbox / INBOX_SPARES, INBOX_SPARE_FILES)
            self.inbox_spares.write_file(self.inbox / name, ".writing-", _chunks(blob), _size(blob))
        except OSError as exc:
            self.log.warning("cannot write to the service's inbox %s (%s); uploading weights instead", self.inbox, exc)
            self.inbox = None
            return None
        return name

    def sync(
        self,
        task: str,
        blob: Weights,
        weight: int,
        timeout_s: float,
        log_every_s: float = 10.0,
        metrics: dict[str, float] | None = None,
    ) -> dict:
        """Runs one sync to completion; logs what it waits for; returns the final status.

        ``metrics`` (names to finite numbers, e.g. the latest Keras logs) go
        with the sync and show on the swarm's dashboards for its round.
        ``blob``: the weights as safetensors bytes, or as arrays (written to the service chunk by chunk).
        """
        headers = {"content-type": "application/octet-stream"}
        if metrics:
            headers["x-swarm-metrics"] = json.dumps(metrics, separators=(",", ":"), allow_nan=False)
        name = self._hand_over(blob)
        if name is not None:
            try:
                started = self._request(
                    "POST", "/v1/local/syncs", params={"task": task, "weight": weight, "blob_file": name},
                    headers=headers,
                ).json()  # fmt: skip
            except SwarmServiceError as exc:
                if exc.code != "BAD_BLOB_FILE":
                    raise
                # The service does not see the file we wrote (another file system view): upload from now on.
                self.log.warning("the service could not take the weights as a file (%s); uploading instead", exc)
                self.inbox = None
                name = None
        if name is None:
            started = self._request(
                "POST",
                "/v1/local/syncs",
                params={"task": task, "weight": weight},
                content=_upload_body(blob),
                headers=headers | {"content-length": str(_size(blob))},
            ).json()
        sync_id = started["sync_id"]
        t0 = time.monotonic()
        last_log, last_what = t0, ""
        while True:
            status = self._request("GET", f"/v1/local/syncs/{sync_id}", params={"wait_s": 2.0}).json()
            if status["state"] == "done":
                return status
            if status["state"] == "failed":
                raise SwarmServiceError(f"sync failed: {status['error']}", code="SYNC_FAILED")
            now = time.monotonic()
            what = f"round {status['round']}: {status['phase']}: {status['waiting_for']}"
            if now - t0 > 2.0 and (what != last_what or now - last_log > log_every_s):
                # A wait that cannot end by itself (min_peers no longer reachable) shows at the default level.
                level = logging.WARNING if "cannot be met" in status["waiting_for"] else logging.INFO
                self.log.log(level, "%s (%.0f s)", what, status["waiting_s"])
                last_log, last_what = now, what
            if now - t0 > timeout_s:
                raise SwarmServiceError(f"sync did not finish in {timeout_s:.0f} s; last: {what}", code="TIMEOUT")

    def blob(self, sha256: str, layout: str) -> list:
        """A merged blob, read from the service's store or downloaded; checks its hash and layout; the arrays.

        The arrays are read-only (see ``_map_checked``): loading them into Keras copies them once, into
        the model.
        """
        if self.store is not None and serialization.is_sha256(sha256):
            path = self.store / sha256[:2] / sha256
            try:
                return self._map_checked(path, sha256, layout)
            except OSError:
                pass  # pruned meanwhile, or not readable: ask the service
        with self._download(f"/v1/local/blobs/{sha256}") as (path, _):
            return self._map_checked(path, sha256, layout)

    def latest(self, task: str, layout: str) -> tuple[int, list] | None:
        """The latest merged model (round, arrays as ``blob`` gives them), or None before the first merge."""
        with self._download("/v1/local/latest", params={"task": task}) as (path, headers):
            if headers is None:
                return None
            sha256 = headers["x-swarm-sha256"]
            return int(headers["x-swarm-round"]), self._map_checked(path, sha256, layout, what="latest blob")

    @staticmethod
    def _map_checked(path: Path, sha256: str, layout: str, what: str = "blob") -> list:
        """The tensors of the blob file at ``path``, after checking its hash, layout and values.

        A file of up to READ_WHOLE_BYTES is read once, into one buffer, hashed as it is read and checked
        there: the arrays are views of it. A larger one is hashed and checked a chunk at a time and its arrays are
        memory maps of the file: a model of gigabytes is never whole in this process's memory.
        """
        limit = serialization.max_blob_bytes(layout)
        digest = hashlib.sha256()  # of what is read, as it is read
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = safetensors_files.read_whole(fh, size, digest) if size <= READ_WHOLE_BYTES else None
        if data is not None:
            if len(data) != size or digest.hexdigest() != sha256:
                raise SwarmServiceError(f"{what} {sha256[:12]}... from the service does not match its hash")
            return serialization.from_bytes(data, layout, limit)
        if safetensors_files.file_sha256(path) != sha256:
            raise SwarmServiceError(f"{what} {sha256[:12]}... from the service does not match its hash")
        spans = safetensors_files.check_file(path, layout, limit)
        return safetensors_files.memmap_arrays(path, spans)

    @contextlib.contextmanager
    def _download(self, path: str, **kwargs: object) -> Iterator[tuple[Path, httpx.Headers | None]]:
        """Streams a GET's body into a temporary file (deleted after; memory maps of it stay valid).

        Yields (file, headers), or (None, None) for a 204.
        """
        fd, tmp = tempfile.mkstemp(prefix="swarm-blob-")
        give_up = time.monotonic() + self.connect_timeout_s
        delay = 0.2
        try:
            with os.fdopen(fd, "wb") as fh:
                while True:  # a service restarting or a dropped connection is retried, as _request does
                    fh.seek(0)
                    fh.truncate()
                    try:
                        with self._http.stream("GET", path, **kwargs) as resp:  # type: ignore[arg-type]
                            if resp.status_code >= 400:
                                resp.read()
                                raise SwarmServiceError(f"GET {path}: {resp.status_code}: {resp.text[:300]}")
                            if resp.status_code == 204:
                                headers = None
                                break
                            for chunk in resp.iter_bytes(safetensors_files.CHUNK_BYTES):
                                fh.write(chunk)
                            headers = resp.headers
                            break
                    except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                        delay = self._retry_after(exc, give_up, delay)
            yield (None, None) if headers is None else (Path(tmp), headers)  # type: ignore[misc]
        except httpx.HTTPError as exc:
            raise SwarmServiceError(f"GET {path} from {self.url}: {exc}", code="UNREACHABLE") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def task(self, task: str) -> dict:
        """The ledger's record of the task (status, nodes, latest merged model), through the service."""
        return self.task_and_round(task)[0]

    def task_and_round(self, task: str) -> tuple[dict, dict]:
        """The ledger's record of the task and of its current round, through the service."""
        answer = self._request("GET", f"/v1/tasks/{task}", params={"recent": 0}).json()
        return answer["task"], answer["round"]

    def checkin(
        self, task: str, mode: str, blob: Weights | None = None, weight: int = 1, contribute: str = "snapshot"
    ) -> dict:
        """Leaves the task, or finishes: the service then contributes per ``contribute`` until the task ends.

        ``blob``: the final weights (bytes, or arrays sent chunk by chunk).
        """
        params: dict = {"task": task, "mode": mode, "weight": weight}
        if mode == "finish":
            params["contribute"] = contribute
        return self._request(
            "POST",
            "/v1/local/checkin",
            params=params,
            content=_upload_body(blob) if blob is not None else b"",
            headers={
                "content-type": "application/octet-stream",
                "content-length": str(_size(blob) if blob is not None else 0),
            },
        ).json()

    def close(self) -> None:
        """Closes the HTTP connection pool."""
        self._http.close()


def _chunks(blob: Weights) -> Iterator[bytes | memoryview]:
    """The weights' bytes, in pieces: the blob itself, or each tensor's memory in to_bytes' layout."""
    if isinstance(blob, (bytes, bytearray, memoryview)):
        yield blob
    else:
        yield from safetensors_files.blob_chunks(blob)


def _upload_body(blob: Weights) -> bytes | Iterator[bytes]:
    """An HTTP body of the weights: the bytes, or a stream of chunks (never one joined copy)."""
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return bytes(blob)
    return (bytes(chunk) for chunk in safetensors_files.blob_chunks(blob, chunk_bytes=4 << 20))


def _size(blob: Weights) -> int:
    return len(blob) if isinstance(blob, (bytes, bytearray, memoryview)) else safetensors_files.blob_size(blob)
