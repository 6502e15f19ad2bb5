"""The callback's API: join, sync, fetch merged weights, check in. Localhost only."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import math
import time
from collections.abc import Callable

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from sn_service.blob_store import BlobRefused, IncomingBlob, StoreFull
from sn_service.http.blob_response import BlobResponse
from sn_service.http.errors import api_error, contract_http_error
from sn_service.http.schemas import ErrorBody, JoinRequest, JoinResponse, SyncStarted, SyncStatus
from sn_service.ledger.base import ContractError, LedgerUnavailable
from sn_service.round_protocol import SyncFailed
from sn_service.service import SiteInUse, SwarmNetworkService
from swarm_wire import serialization
from swarm_wire.names import MAX_METRICS, METRIC_NAME_RE, NAME_PATTERN

_ERRORS = {
    400: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    413: {"model": ErrorBody},
    503: {"model": ErrorBody},
    507: {"model": ErrorBody},
}


METRICS_HEADER = "X-Swarm-Metrics"
MAX_METRICS_CHARS = 8192


class MetricsError(ValueError):
    """A sync's metrics are not a small JSON object of finite numbers."""


def parse_metrics(text: str) -> dict[str, float]:
    """Validates a sync's metrics: a JSON object of at most 64 names to finite numbers.

    Names are 1-64 of ``[A-Za-z0-9_.:/-]``, as Keras logs them (``loss``,
    ``val_accuracy``). Raises MetricsError naming the offending entry.
    """
    if len(text) > MAX_METRICS_CHARS:
        raise MetricsError(f"{len(text)} characters; at most {MAX_METRICS_CHARS} are allowed")

    def no_constants(name: str) -> None:
        raise MetricsError(f"{name} is not a finite number; leave the metric out instead")

    try:
        value = json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise MetricsError(f"not JSON: {exc}") from None
    except RecursionError:
        raise MetricsError("nested too deeply; a flat object of names to numbers is needed") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise MetricsError(f"not a usable JSON value: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise MetricsError(f"a JSON object of metric names to numbers is needed, not a {type(value).__name__}")
    if len(value) > MAX_METRICS:
        raise MetricsError(f"{len(value)} metrics; at most {MAX_METRICS} are allowed")
    out = {}
    for name, number in value.items():
        if not METRIC_NAME_RE.fullmatch(name):
            raise MetricsError(f"metric name {name[:80]!r} is not 1-64 letters, digits or _ . : / -")
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise MetricsError(f"metric {name!r} is {json.dumps(number)[:40]}, not a number")
        try:
            out[name] = float(number)
        except OverflowError:
            out[name] = math.inf
        if not math.isfinite(out[name]):
            raise MetricsError(f"metric {name!r} is not a finite number")
    return out


def _service(request: Request) -> SwarmNetworkService:
    return request.app.state.service


def localhost_only(request: Request) -> None:
    """Refuses callers that are not on this machine's loopback."""
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in ("localhost", "testclient")
    if not loopback:
        raise api_error(403, "LOCAL_ONLY", "the callback API answers only on this machine's loopback")


router = APIRouter(prefix="/v1/local", tags=["local"], dependencies=[Depends(localhost_only)], responses=_ERRORS)


def _joined_spec(service: SwarmNetworkService, task: str) -> dict:
    spec = service.task_spec(task)
    if spec is None:
        raise api_error(409, "NOT_JOINED", f"this site has not joined task {task!r}; POST /v1/local/join first")
    return spec


async def read_body(
    request: Request,
    limit: int,
    on_chunk: Callable[[int], None] | None = None,
    digest: hashlib._Hash | None = None,
) -> bytes | memoryview:
    """Reads the request body, refusing it once it passes ``limit`` bytes; ``on_chunk(n)`` after each chunk.
    ``digest``: updated with each chunk as it arrives (while it is in the cache, and the rest on the way).

    A body that says its length (``serialization.BIG_BUFFER_BYTES`` or more) is read into one
    ``serialization.new_buffer`` of that length (a read-only view of it comes back), not joined into
    ``bytes`` from its chunks: one copy less, and no fresh ``bytes`` of the blob's size.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        request.app.state.service.metrics.rejected_blobs.labels(reason="too_large").inc()
        raise api_error(413, "TOO_LARGE", f"the body has {declared} bytes; this task's model allows {limit}")
    size = int(declared) if declared is not None and declared.isdigit() else -1
    buffer = serialization.new_buffer(size) if size >= serialization.BIG_BUFFER_BYTES else None
    chunks, total = [], 0
    async for chunk in request.stream():
        if total + len(chunk) > limit:
            request.app.state.service.metrics.rejected_blobs.labels(reason="too_large").inc()
            raise api_error(413, "TOO_LARGE", f"the body passed {limit} bytes, the most this task's model allows")
        if buffer is not None and total + len(chunk) > size:  # HTTP itself does not let this happen
            raise api_error(400, "INVALID_ARGUMENT", f"the body is longer than its Content-Length ({size})")
        if buffer is not None:
            buffer[total : total + len(chunk)] = chunk
        else:
            chunks.append(chunk)
        if digest is not None:
            digest.update(chunk)
        total += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    if buffer is not None:
        return buffer[:total].toreadonly()  # a body cut short ends in a disconnect before this
    return b"".join(chunks)


async def stream_body(
    request: Request, incoming: IncomingBlob, limit: int, on_chunk: Callable[[int], None] | None = None
) -> None:
    """Writes the request body into ``incoming`` as it arrives (never whole in memory); 413 past ``limit``.
    ``on_chunk(n)`` after each chunk.

    The caller commits or aborts ``incoming``; a refusal here aborts it.
    """
    declared = request.headers.get("content-length")
    service = request.app.state.service
    if declared is not None and declared.isdigit() and int(declared) > limit:
        incoming.abort()
        service.metrics.rejected_blobs.labels(reason="too_large").inc()
        raise api_error(413, "TOO_LARGE", f"the body has {declared} bytes; this task's model allows {limit}")
    with incoming:
        try:
            async for chunk in request.stream():
                incoming.write(chunk)
                if on_chunk is not None:
                    on_chunk(len(chunk))
        except BlobRefused:
            service.metrics.rejected_blobs.labels(reason="too_large").inc()
            raise api_error(
                413, "TOO_LARGE", f"the body passed {limit} bytes, the most this task's model allows"
            ) from None
        except StoreFull as exc:
            raise api_error(507, "STORE_FULL", exc.strerror) from None


async def _stored_blob(
    request: Request,
    service: SwarmNetworkService,
    task: str,
    timings: dict[str, float] | None = None,
    blob_file: str | None = None,
) -> str:
    """The streamed ``_validated_blob``: the weights (body or inbox file) go to the store chunk by chunk,
    checked there (same checks, same errors) before they are kept; returns their sha256."""
    spec = _joined_spec(service, task)
    limit = serialization.max_blob_bytes(spec["layout"])
    t0 = time.perf_counter()
    try:
        if blob_file is None:
            declared = request.headers.get("content-length")
            incoming = service.store.incoming(
                max_bytes=limit, size_hint=int(declared) if declared and declared.isdigit() else None
            )
            await stream_body(request, incoming, limit)
            check, found = service.driver.checker(spec["layout"])
            sha = await asyncio.to_thread(incoming.commit, check)
            service.driver.checked.put(sha, found[0])
            size = incoming.size
        else:
            try:
                sha, size = await asyncio.to_thread(service.store_from_inbox, blob_file, task)
            except serialization.WeightsFormatError:
                raise
            except ValueError as exc:
                service.metrics.rejected_blobs.labels(reason="bad_file").inc()
                raise api_error(400, "BAD_BLOB_FILE", str(exc)) from None
    except serialization.WeightsFormatError as exc:
        service.metrics.rejected_blobs.labels(reason=exc.code.lower()).inc()
        raise api_error(400 if exc.code != "TOO_LARGE" else 413, exc.code, str(exc)) from exc
    except StoreFull as exc:
        raise api_error(507, "STORE_FULL", exc.strerror) from None
    if timings is not None:
        timings.update({"receive, check and store": time.perf_counter() - t0})
    service.metrics.bytes_received.inc(size)
    return sha


async def _validated_blob(
    request: Request,
    service: SwarmNetworkService,
    task: str,
    timings: dict[str, float] | None = None,
    blob_file: str | None = None,
) -> tuple[bytes, list]:
    """The weights (the body, or ``blob_file`` in the inbox), checked against the task's layout, and parsed.

    ``timings``: seconds per part, filled in.
    """
    spec = _joined_spec(service, task)
    t0 = time.perf_counter()
    if blob_file is None:
        data = await read_body(request, service.max_blob_bytes(task))
    else:
        try:
            data = await asyncio.to_thread(service.take_from_inbox, blob_file, service.max_blob_bytes(task))
        except ValueError as exc:
            service.metrics.rejected_blobs.labels(reason="bad_file").inc()
            raise api_error(400, "BAD_BLOB_FILE", str(exc)) from None
    t1 = time.perf_counter()
    try:
        arrays = await asyncio.to_thread(serialization.from_bytes, data, spec["layout"])
        if timings is not None:
            timings.update({"receive": t1 - t0, "check": time.perf_counter() - t1})
    except serialization.WeightsFormatError as exc:
        service.metrics.rejected_blobs.labels(reason=exc.code.lower()).inc()
        raise api_error(400 if exc.code != "TOO_LARGE" else 413, exc.code, str(exc)) from exc
    service.metrics.bytes_received.inc(len(data))
    return data, arrays


@router.post("/join", response_model=JoinResponse)
async def join(body: JoinRequest, request: Request) -> JoinResponse:
    """Joins a task (creating it on the ledger if new) with this model's spec."""
    service = _service(request)
    spec = body.spec.model_dump(exclude_unset=True)  # optional fields only when given
    if serialization.fingerprint(spec["layout"]) != spec["fingerprint"]:
        raise api_error(400, "INVALID_ARGUMENT", "spec.fingerprint is not the sha256 of spec.layout")
    try:
        serialization.parse_layout(spec["layout"])
        record = await asyncio.to_thread(service.join, body.task, spec, body.trainer_pid)
    except ValueError as exc:
        raise api_error(400, "INVALID_ARGUMENT", str(exc)) from exc
    except ContractError as exc:
        raise contract_http_error(exc.code, exc.message) from exc
    except SiteInUse as exc:
        raise api_error(409, "SITE_IN_USE", str(exc)) from exc
    except (LedgerUnavailable, SyncFailed) as exc:
        raise api_error(503, "LEDGER_UNAVAILABLE", str(exc)) from exc
    return JoinResponse(
        task=record["task"],
        node=service.site,
        status=record["status"],
        current_round=record["current_round"],
        latest_merged=record["latest_merged"],
        nodes=sorted(record["nodes"]),
        local_inbox=str(service.inbox.resolve()),
        local_store=str(service.store.root.resolve()),
    )


@router.post("/syncs", response_model=SyncStarted, status_code=202)
async def start_sync(
    request: Request,
    task: str = Query(pattern=NAME_PATTERN),
    weight: int = Query(ge=0, le=(1 << 53) - 1),
    metrics: str | None = Header(
        default=None,
        alias=METRICS_HEADER,
        description='optional: this site\'s latest training metrics, e.g. {"loss": 0.31, "val_accuracy": 0.9}',
    ),
    blob_file: str | None = Query(
        default=None,
        max_length=64,
        description="instead of a body: the name of a weights file written to this service's inbox (local_inbox "
        "at join); it is read, checked like a body and deleted",
    ),
) -> SyncStarted:
    """Starts a sync with the weights in the body (safetensors); poll it with GET.

    The site's training metrics may ride along in the ``X-Swarm-Metrics``
    header; they are kept for the round this sync takes part in and shown
    on the dashboard.
    """
    service = _service(request)
    try:
        parsed = parse_metrics(metrics) if metrics is not None else None
    except MetricsError as exc:
        raise api_error(422, "INVALID_METRICS", f"{METRICS_HEADER} header: {exc}") from None
    timings: dict[str, float] = {}
    if service.task_spec(task) is not None and service.streams(task):
        sha = await _stored_blob(request, service, task, timings, blob_file)
        job = service.start_sync(task, None, weight, parsed, timings=timings, sha256=sha)
    else:
        data, arrays = await _validated_blob(request, service, task, timings, blob_file)
        job = service.start_sync(task, data, weight, parsed, arrays=arrays, timings=timings)
    return SyncStarted(sync_id=job.sync_id)


@router.get("/syncs/{sync_id}", response_model=SyncStatus)
async def sync_status(sync_id: str, request: Request, wait_s: float = Query(default=0.0, ge=0, le=30)) -> SyncStatus:
    """A sync's state; waits up to ``wait_s`` seconds for it to finish."""
    job = _service(request).jobs.get(sync_id)
    if job is None:
        raise api_error(404, "NO_SUCH_SYNC", f"no sync {sync_id!r} on this site")
    if wait_s > 0 and not job.done.is_set():
        await asyncio.to_thread(job.done.wait, wait_s)
    return SyncStatus(**job.as_dict())


@router.get("/latest")
async def latest(request: Request, task: str = Query(pattern=NAME_PATTERN)) -> Response:
    """The task's latest merged weights (safetensors), or 204 before the first merge."""
    service = _service(request)
    _joined_spec(service, task)
    try:
        result = await asyncio.to_thread(service.latest, task)
    except ContractError as exc:
        raise contract_http_error(exc.code, exc.message) from exc
    except (LedgerUnavailable, SyncFailed) as exc:
        raise api_error(503, "UNAVAILABLE", str(exc)) from exc
    if result is None:
        return Response(status_code=204)
    # Sent from the file as stored (never whole in memory); the callback checks it against the hash.
    return BlobResponse(
        service.store.path(result.merged_sha256),
        media_type="application/octet-stream",
        headers={"X-Swarm-Round": str(result.round), "X-Swarm-Sha256": result.merged_sha256},
    )


@router.get("/blobs/{sha256}")
async def local_blob(sha256: str, request: Request) -> Response:
    """A blob from this site's store, for the callback to load."""
    store = _service(request).store
    if not store.valid_sha(sha256):
        raise api_error(400, "INVALID_ARGUMENT", "the blob name must be 64 lowercase hex characters")
    path = store.path(sha256)
    if not path.is_file():
        raise api_error(404, "NO_SUCH_BLOB", f"this site holds no blob {sha256}")
    _service(request).metrics.bytes_sent.inc(path.stat().st_size)
    # Sent as stored: the callback checks the bytes against the hash it asked for.
    return BlobResponse(path, media_type="application/octet-stream")


@router.post("/checkin")
async def checkin(
    request: Request,
    task: str = Query(pattern=NAME_PATTERN),
    mode: str = Query(pattern="^(leave|finish)$"),
    weight: int = Query(default=1, ge=0, le=(1 << 53) - 1),
    contribute: str = Query(default="snapshot", pattern="^(snapshot|active|inactive)$"),
) -> dict:
    """Ends this site's training: ``leave``, or ``finish`` with the final weights in the body.

    After ``finish`` the service takes part in every round until the task is
    over, contributing per ``contribute`` (HPE's ``checkinModelOnTrainEnd``):
    the final weights (``snapshot``), each round's merged model (``active``)
    or nothing, with weight 0 (``inactive``).
    """
    service = _service(request)
    try:
        if mode == "finish" and service.task_spec(task) is not None and service.streams(task):
            sha = await _stored_blob(request, service, task)
            record = await asyncio.to_thread(service.finish, task, None, weight, contribute, sha)
        elif mode == "finish":
            data, _ = await _validated_blob(request, service, task)
            record = await asyncio.to_thread(service.finish, task, data, weight, contribute)
        else:
            _joined_spec(service, task)
            record = await asyncio.to_thread(service.leave, task)
    except ContractError as exc:
        raise contract_http_error(exc.code, exc.message) from exc
    except StoreFull as exc:
        raise api_error(507, "STORE_FULL", exc.strerror) from exc
    except LedgerUnavailable as exc:
        raise api_error(503, "LEDGER_UNAVAILABLE", str(exc)) from exc
    return {"task": task, "mode": mode, "task_status": record["status"]}
